"""Per-request recommendations: the model, the visitor's live session and the business rules.

A request combines what the model knows of the customer (if the visitor is one) with the
session's events folded into the latent space at request time, applies the rules, and falls
back to trending and popular items where it knows too little. CPU only and synchronous: the
API calls it after fetching the profile, so nothing here waits on I/O.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from engine.candidates import PROBE_SHARE, CandidateIndex
from engine.kernels import (
    closest_rows,
    distinct,
    first_allowed,
    row_entries,
    row_members,
    top_allowed,
)
from engine.model import Model
from engine.models.repeat_aware import session_strength
from engine.profiles import Profile, RecentEvent
from engine.session import FoldIn, session_weights

COLLABORATIVE_REASON = "customers who buy what you buy chose it"
ROW_CACHE = 8192  # item rows kept as Python objects per loaded model (about 2.5 MB)
PRIOR_CANDIDATES = 256  # the head of the visitor's prior ranking is always a candidate


def bought_reason(times: float) -> str:
    """Why a customer's own past purchase is offered again (the serving and batch wording)."""
    return f"you bought it {int(times)} time{'s' if times != 1 else ''} before"


def trending_reason(customers: int) -> str:
    """Why an item leads a list for a visitor the model knows nothing of."""
    return f"trending: {customers} customer{'' if customers == 1 else 's'} bought it recently"


@dataclass(frozen=True)
class Query:
    """What the storefront asks for; every field is optional but ``k``."""

    k: int = 10
    offset: int = 0  # pagination: skip this many items of the full ranking
    customer_id: str | None = None  # overrides the customer linked to the visitor's profile
    context_item: str | None = None  # the product page being shown
    include_categories: frozenset[str] = frozenset()  # empty: every category
    exclude_categories: frozenset[str] = frozenset()
    min_price: float | None = None
    max_price: float | None = None
    boost: Mapping[str, float] = field(default_factory=dict)  # item id -> score multiplier
    pin: tuple[str, ...] = ()  # items placed first, in this order (if they pass the filters)
    max_per_category: int | None = None  # diversity cap (relaxed only to fill k)
    # Items seen this session are left out ("recently viewed" shows those); a click stream where
    # visitors come back to what they viewed (measured on the Taobao replay) may keep them.
    include_seen: bool = False
    explain: bool = True  # say why each item was chosen (else reasons are empty)
    # Boosts and pins apply only to customers in these value segments (empty: to everyone).
    target_segments: frozenset[str] = frozenset()


class Recommended(NamedTuple):
    """One item of a list (a named tuple: built a few thousand times a second per worker, where
    a frozen dataclass's ``__init__`` costs three times as much)."""

    item_id: str
    score: float
    reason: str
    description: str
    category: str
    price: float | None


@dataclass(frozen=True)
class Recommendations:
    items: list[Recommended]
    strategy: str  # "customer", "customer+session", "session", "trending", "non-personalized"
    model_version: str
    segment: str | None = None  # the customer's value segment, if the customer is known


class Recommender:
    """Ranks items for one request; one instance per loaded model (swapped on reload).

    Everything that does not depend on the request (the fold-in's Gram matrix, category codes,
    unit-length item factors) is computed here, once, at load time.
    """

    def __init__(
        self,
        model: Model,
        candidates: bool = True,
        probe_share: float = PROBE_SHARE,
    ) -> None:
        """``candidates``: rank plain pages among candidates when the model has candidate lists
        (a large catalog's; else every item is ranked), probing ``probe_share`` of them."""
        self.model = model
        model.users.build_index()
        model.items.build_index()
        items = model.scorer.factors.item_factors
        self._foldin = FoldIn(items, model.regularization, model.confidence_scale)
        # Norms, not unit-length copies of the factors: a copy would be private to each worker,
        # while the memory-mapped factors are shared between them.
        norms = np.linalg.norm(items, axis=1)
        self._inverse_norms = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        self._category_names, self._category_codes = np.unique(model.category, return_inverse=True)
        self.segment_names = frozenset(str(name) for name in np.unique(model.segments))
        self._trending_rank = np.log1p(model.trending_scores)
        # Its ranking (equal scores by index, as every selection orders them), sorted once: a
        # visitor the model knows nothing of gets its first allowed items, not a catalog pass.
        rank = np.nan_to_num(self._trending_rank, nan=-np.inf)  # NaN last, as selections rank it
        self._trending_order = np.argsort(-rank, kind="stable")
        self._session_strength = session_strength(self._trending_rank)
        self._candidates: CandidateIndex | None = None
        if candidates and model.has_candidate_lists:
            self._candidates = CandidateIndex(model.artifact.arrays, probe_share)
            self._prior_head = np.argsort(-model.scorer.item_prior, kind="stable")[
                :PRIOR_CANDIDATES
            ]
        # The item columns as plain arrays over the memory-mapped pages every worker shares; a
        # row is read when it is returned (``.item()`` on a plain array: under a microsecond
        # per item, np.memmap's own indexing costs 3x that). Python objects for every item,
        # built here, would cost each worker about 300 B per item: 29 MB at 100k items, half
        # the model's size on disk (``python -m benchmarks.memory``).
        self._ids, self._descriptions, self._categories, self._prices = (
            np.asarray(column).view(np.ndarray)
            for column in (model.items.ids, model.description, model.category, model.price)
        )
        # The rows of the items actually shown, as Python objects: pages draw on a small,
        # popular part of the catalog, so a bounded cache spares four array reads per item (a
        # page of ten: 15.5 -> 12.5 us, one timing) without every worker holding the catalog's.
        # Over the arrays, not a bound method: the cache would hold the Recommender and make
        # a reference cycle, which only a full collection frees (api.state: _freeze_heap).
        self._row = functools.lru_cache(maxsize=ROW_CACHE)(
            functools.partial(
                _read_row, self._ids, self._descriptions, self._categories, self._prices
            )
        )
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile the kernels for this model's arrays, and page those in, before any request."""
        item = str(self.model.items.ids[int(np.argmax(self.model.scorer.popularity))])
        visitor = Profile(visitor_id="warm-up", recent=(RecentEvent(item, "view", 0.0),))
        queries = [Query(k=1)]
        if self._candidates is not None:  # a capped page still ranks every item: warm it up too
            queries.append(Query(k=1, max_per_category=1))
        for query in queries:
            self.recommend(query, visitor, now=0.0)
            if len(self.model.users):  # a known customer's kernels (1.4 s on a first request)
                customer = str(self.model.users.ids[0])
                self.recommend(replace(query, customer_id=customer), visitor, now=0.0)
        self.similar(item, 1)
        self.trending(1)

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def candidate_index(self) -> CandidateIndex | None:
        """The index plain pages are ranked from (None: every item is ranked)."""
        return self._candidates

    def catalog(self, offset: int, k: int) -> list[tuple[str, str, str, float | None]]:
        """One page of (item id, description, category, price), best-selling first."""
        return [self._row(i) for i in self._best_selling[offset : offset + k].tolist()]

    @functools.cached_property
    def _best_selling(self) -> np.ndarray:
        # Sorted once per loaded model, on the first catalog page: units sold, best first,
        # equal sales by row (so pages never overlap).
        return np.argsort(-self.model.scorer.popularity, kind="stable")

    def customers_in(self, segment: str) -> np.ndarray:
        """Ids of the customers in a value segment, in the model's order."""
        model = self.model
        return model.users.ids[model.segments == segment]

    def knows(self, item_id: str) -> bool:
        return item_id in self.model.items

    def recommend(
        self,
        query: Query,
        profile: Profile,
        unavailable: frozenset[str] = frozenset(),
        now: float | None = None,
        *,
        personalized: bool = True,
    ) -> Recommendations:
        """The page of items for a visitor (``profile`` may be empty).

        Without ``personalized`` (the visitor withheld consent) neither the session nor the
        customer's history is used: the list is what is trending, under the same rules.
        """
        now = time.time() if now is None else now
        model = self.model
        if not personalized:
            profile = Profile(visitor_id=profile.visitor_id)
        customer = (query.customer_id or profile.customer_id) if personalized else None
        row = None if customer is None else model.users.index(customer)
        segment = None if row is None else str(model.segments[row])
        if query.target_segments and segment not in query.target_segments:
            query = replace(query, boost={}, pin=())  # the campaign is not for this visitor
        events = list(profile.recent)
        context = None if query.context_item is None else model.items.index(query.context_item)
        if query.context_item is not None:
            events.append(RecentEvent(query.context_item, "add_to_cart", now))
        session_items, session_w = session_weights(events, model.items, now)
        ranking = None  # the scores' precomputed ranking, while the request leaves them as is
        rows = None  # the candidates scored, if not every item
        allowed = self._allowed(query, profile, unavailable, row, context, now)
        if not query.include_seen:
            allowed[session_items] = False
        if row is None and len(session_items) == 0:
            scores, ranking = self._trending_rank, self._trending_order
            strategy = "trending" if personalized else "non-personalized"
        else:
            vector = self._foldin.user_vector(session_items, session_w)
            plain = not (query.boost or query.pin or query.max_per_category is not None)
            if plain and self._candidates is not None:
                rows = self._candidate_rows(row, vector, session_items)
                scores = self._score(row, vector, session_items, session_w, now, rows)
                picked = self._select(scores, allowed, query, None, rows)
                if len(picked) < query.k:  # the rules left too few candidates: rank them all
                    rows = None
            if rows is None:
                scores = self._score(row, vector, session_items, session_w, now, rows)
            strategy = "session" if row is None else "customer"
            if row is not None and len(session_items):
                strategy = "customer+session"
        boosts = [(model.items.index(item_id), factor) for item_id, factor in query.boost.items()]
        boosts = [(index, factor) for index, factor in boosts if index is not None and factor > 0]
        if boosts and ranking is not None:
            scores, ranking = scores.copy(), None  # the shared prior stays as it is
        for index, factor in boosts:
            scores[index] += np.log(factor)  # scores are log-odds-like: x factor on the odds
        if rows is None:
            picked = self._select(scores, allowed, query, ranking)
        if query.explain:
            pinned = set(self._pins(query, allowed))
            explained = _Explainer(self, row, session_items, context).reasons(picked)
            reasons = [
                "featured" if i in pinned else r for i, r in zip(picked, explained, strict=True)
            ]
        else:
            reasons = [""] * len(picked)
        return Recommendations(
            items=self._items(picked, scores[picked].tolist(), reasons),
            strategy=strategy,
            model_version=model.version,
            segment=segment,
        )

    def _score(
        self,
        row: int | None,
        vector: np.ndarray,
        session_items: np.ndarray,
        session_w: np.ndarray,
        now: float,
        rows: np.ndarray | None,
    ) -> np.ndarray:
        """The visitor's scores (of ``rows`` only, if given). An anonymous visitor's session
        re-ranks the list they had without it."""
        return self.model.scorer.score_visitor(
            row,
            vector,
            session_items,
            session_w,
            int(now),
            prior=self._trending_rank,
            strength=self._session_strength,
            rows=rows,
        )

    def _candidate_rows(
        self, row: int | None, vector: np.ndarray, session_items: np.ndarray
    ) -> np.ndarray:
        """The items a plain page is ranked among: those of the index's lists nearest the
        customer's and the session's vectors (and, for the session term's range, farthest
        from the session's), the head of the visitor's prior ranking, and every item the
        customer's purchases and the session's items reach (their kNN rows, the history)."""
        assert self._candidates is not None
        scorer = self.model.scorer
        index = self._candidates
        parts = []
        seeds = session_items
        if row is None:
            parts.append(self._trending_order[:PRIOR_CANDIDATES])
        else:
            parts.append(self._prior_head)
            factor_weight = scorer.weights.get("factor_score", 0.0)
            if factor_weight:
                user_vector = scorer.factors.user_factors[row]
                positive = factor_weight > 0
                parts.append(index.probe_items(user_vector, highest=positive, lowest=not positive))
            counts = scorer.history.counts
            seeds = np.concatenate(
                [counts.indices[counts.indptr[row] : counts.indptr[row + 1]], seeds]
            )
        if len(session_items):
            parts.append(index.probe_items(vector, lowest=True))
        similarity = scorer.knn.similarity
        parts += [seeds, row_members(similarity.indptr, similarity.indices, seeds)]
        return distinct(np.concatenate(parts), len(self.model.items))

    def similar(
        self, item_id: str, k: int, unavailable: frozenset[str] = frozenset()
    ) -> list[Recommended]:
        """Items most like ``item_id`` in the model's latent space; KeyError if unknown."""
        index = self._index(item_id)
        factors = self.model.scorer.factors.item_factors
        scores = (factors @ factors[index]) * (self._inverse_norms * self._inverse_norms[index])
        allowed = self._available(unavailable)
        allowed[index] = False
        picked = _top(scores, allowed, k)
        name = self.name(index)
        return [self._item(i, float(scores[i]), f"similar to {name}") for i in picked]

    def bought_together(
        self, item_id: str, k: int, unavailable: frozenset[str] = frozenset()
    ) -> list[Recommended]:
        """Items bought in the same baskets as ``item_id``, by confidence P(other | this)."""
        index = self._index(item_id)
        model = self.model
        lo, hi = model.together.indptr[index], model.together.indptr[index + 1]
        partners = model.together.indices[lo:hi]
        support = model.together.data[lo:hi]
        confidence = support / max(float(model.item_baskets[index]), 1.0)
        keep = self._available(unavailable)[partners]
        order = np.argsort(-confidence[keep], kind="stable")[:k]
        out = []
        for j, sup, conf in zip(
            partners[keep][order], support[keep][order], confidence[keep][order], strict=True
        ):
            reason = f"bought together in {int(sup)} baskets, lift {self._lift(index, j):.1f}"
            out.append(self._item(int(j), float(conf), reason))
        return out

    def trending(
        self,
        k: int,
        live: Sequence[tuple[str, float]] = (),
        unavailable: frozenset[str] = frozenset(),
    ) -> list[Recommended]:
        """Live trending counts from the store first, then the model's trending and popular."""
        allowed = self._available(unavailable)
        out: list[Recommended] = []
        for item_id, count in live:
            index = self.model.items.index(item_id)
            if index is None or not allowed[index] or len(out) == k:
                continue
            allowed[index] = False
            events = int(count)
            reason = f"trending: {events} recent event{'' if events == 1 else 's'}"
            out.append(self._item(index, float(count), reason))
        top = _top(self._trending_rank, allowed, k - len(out), self._trending_order)
        explained = _Explainer(self, None, np.empty(0, np.int64), None).reasons(top)
        for index, reason in zip(top, explained, strict=True):
            out.append(self._item(index, float(self._trending_rank[index]), reason))
        return out

    def _allowed(
        self,
        query: Query,
        profile: Profile,
        unavailable: frozenset[str],
        row: int | None,
        context: int | None,
        now: float,
    ) -> np.ndarray:
        """Hard rules as a mask: what may be shown at all."""
        model = self.model
        allowed = self._available(unavailable)
        if row is not None:
            # Past purchases are left out until due again (buy-again).
            model.scorer.history.hide_not_due(allowed, row, now)
        if profile.bought:
            allowed[_known(model, profile.bought)] = False
        if context is not None:
            allowed[context] = False
        if query.include_categories:
            allowed &= np.isin(self._category_codes, self._codes(query.include_categories))
        if query.exclude_categories:
            allowed &= ~np.isin(self._category_codes, self._codes(query.exclude_categories))
        if query.min_price is not None:
            allowed &= model.price >= query.min_price  # NaN prices fail both comparisons
        if query.max_price is not None:
            allowed &= model.price <= query.max_price
        return allowed

    def _select(
        self,
        scores: np.ndarray,
        allowed: np.ndarray,
        query: Query,
        order: np.ndarray | None,
        rows: np.ndarray | None = None,
    ) -> list[int]:
        """Pins, then the best allowed items under the diversity cap, then one page of them.

        ``order``: the ranking of ``scores`` in full, when it is known beforehand; ``rows``:
        the only items scored (a plain page's candidates).
        """
        need = query.offset + query.k
        if rows is not None:
            return top_allowed(scores, allowed, need, rows).tolist()[query.offset :]
        if not query.pin and query.max_per_category is None:
            return _top(scores, allowed, need, order)[query.offset :]
        pins = self._pins(query, allowed)
        taken = np.zeros(len(scores), dtype=bool)
        taken[pins] = True
        cap = query.max_per_category
        # A few times the page is plenty of candidates unless the cap bites; then rank all.
        free = allowed & ~taken
        candidates = _top(scores, free, need * (4 if cap else 1), order)
        ranking = _diversify(candidates, self._category_codes, cap, need - len(pins))
        # Ranking everything can only help when the catalog has enough categories for the cap.
        reachable = cap is not None and len(self._category_names) * cap >= len(ranking)
        over_cap = reachable and np.bincount(self._category_codes[ranking]).max(initial=0) > cap
        if over_cap and len(candidates) < free.sum():
            # The cap was relaxed to fill the page from these candidates only; items further
            # down may still fit under it (and the next page must agree): rank them all.
            ranking = _diversify(
                _top(scores, free, int(free.sum()), order),
                self._category_codes,
                cap,
                need - len(pins),
            )
        return [*pins, *ranking][query.offset : need]

    def _pins(self, query: Query, allowed: np.ndarray) -> list[int]:
        pins: list[int] = []
        for item_id in query.pin:
            index = self.model.items.index(item_id)
            if index is not None and allowed[index] and index not in pins:
                pins.append(index)
        return pins

    def _available(self, unavailable: frozenset[str]) -> np.ndarray:
        allowed = np.ones(len(self.model.items), dtype=bool)
        if unavailable:
            allowed[_known(self.model, unavailable)] = False
        return allowed

    def _codes(self, categories: frozenset[str]) -> np.ndarray:
        return np.flatnonzero(np.isin(self._category_names, list(categories)))

    def _index(self, item_id: str) -> int:
        index = self.model.items.index(item_id)
        if index is None:
            raise KeyError(item_id)
        return index

    def _lift(self, a: int, b: int) -> float:
        model = self.model
        lo, hi = model.together.indptr[a], model.together.indptr[a + 1]
        where = np.searchsorted(model.together.indices[lo:hi], b)
        if where == hi - lo or model.together.indices[lo + where] != b:
            return 0.0
        support = float(model.together.data[lo + where])
        return support * model.baskets / float(model.item_baskets[a] * model.item_baskets[b])

    def name(self, index: int) -> str:
        """What an item is called in a reason: its description, else its id (from the row
        cache: the items reasons name are a page's, read again on the next)."""
        item_id, description, _, _ = self._row(index)
        return description or item_id

    def _item(self, index: int, score: float, reason: str) -> Recommended:
        item_id, description, category, price = self._row(index)
        return Recommended(item_id, score, reason, description, category, price)

    def _items(
        self, indices: list[int], scores: list[float], reasons: list[str]
    ) -> list[Recommended]:
        row = self._row
        return [
            Recommended(item_id, score, reason, description, category, price)
            for (item_id, description, category, price), score, reason in zip(
                map(row, indices), scores, reasons, strict=True
            )
        ]


class _Explainer:
    """Says why an item was chosen, for the few items of one page."""

    def __init__(
        self,
        recommender: Recommender,
        row: int | None,
        session_items: np.ndarray,
        context: int | None,
    ) -> None:
        self._rec = recommender
        self._model = recommender.model
        self._row = row
        self._session = session_items
        self._context = context
        self._history: tuple[np.ndarray, np.ndarray] | None = None  # the customer's row
        if row is not None:
            counts = self._model.scorer.history.counts
            lo, hi = counts.indptr[row], counts.indptr[row + 1]
            self._history = counts.indices[lo:hi], counts.data[lo:hi]

    def reasons(self, items: list[int]) -> list[str]:
        """Why each of a page's ``items`` was chosen."""
        page = np.asarray(items, np.int64)
        sources = [-1] * len(items)
        if len(self._session) and items:
            similarity = self._model.scorer.knn.similarity
            sources = closest_rows(
                similarity.indptr, similarity.indices, similarity.data, self._session, page
            ).tolist()
        bought = [0.0] * len(items)
        if self._history is not None and items:
            bought = row_entries(*self._history, page).tolist()
        return [
            self._reason(item, source, times)
            for item, source, times in zip(items, sources, bought, strict=True)
        ]

    def _reason(self, item: int, source: int, times: float) -> str:
        """``source``: the session item most similar to ``item`` (-1: none is); ``times``: how
        often the customer bought it (0: never)."""
        model = self._model
        if times:
            return bought_reason(times)
        if self._context is not None and self._rec._lift(self._context, item) > 0:
            return f"often bought together with {self._rec.name(self._context)}"
        if source >= 0:
            return f"because you viewed {self._rec.name(source)}"
        if self._row is None:  # nothing known of this visitor but the session
            recent = int(model.scorer.trending[item])
            if recent:
                return trending_reason(recent)
            return "popular"
        return COLLABORATIVE_REASON


def _read_row(
    ids: np.ndarray,
    descriptions: np.ndarray,
    categories: np.ndarray,
    prices: np.ndarray,
    index: int,
) -> tuple[str, str, str, float | None]:
    """An item's id, description, category and price as Python objects (None: no price)."""
    # .item() of a unicode array is a str, of a float array a float: no conversions.
    price = prices.item(index)
    return (
        ids.item(index),
        descriptions.item(index),
        categories.item(index),
        None if math.isnan(price) else price,
    )


def _top(
    scores: np.ndarray, allowed: np.ndarray, n: int, ranking: np.ndarray | None = None
) -> list[int]:
    """Indices of the ``n`` best allowed scores, best first, equal scores by index: the top
    ``n`` is always the start of the top ``n + m``, so the pages of one ranking agree.
    ``ranking``: the scores' order in full, if known (then no pass over them is needed)."""
    if ranking is not None:
        return first_allowed(ranking, allowed, n).tolist()
    return top_allowed(scores, allowed, n).tolist()


def _diversify(ranked: list[int], categories: np.ndarray, cap: int | None, n: int) -> list[int]:
    """At most ``cap`` items per category, in rank order; if that leaves fewer than ``n``,
    the skipped items fill the rest in rank order (never fewer items than the catalog has)."""
    if cap is None:
        return ranked[:n]
    kept: list[int] = []
    skipped: list[int] = []
    per_category: dict[int, int] = {}
    for item in ranked:
        category = int(categories[item])
        if per_category.get(category, 0) < cap:
            per_category[category] = per_category.get(category, 0) + 1
            kept.append(item)
            if len(kept) == n:
                return kept
        else:
            skipped.append(item)
    return [*kept, *skipped][:n]


def _known(model: Model, item_ids: frozenset[str]) -> np.ndarray:
    indices = model.items.indices(item_ids)
    return indices[indices >= 0]
