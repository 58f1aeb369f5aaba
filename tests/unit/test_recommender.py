"""The Recommender's rules, strategies and reasons on a model trained from a generated shop.

The shop (training.synthetic) is trained once per module through the real pipeline: generated
log -> Parquet -> log reader -> trainer -> artifact -> load_model. Expected lists are derived
from the model's own arrays (trending counts, kNN rows, basket pairs, purchase history), so each
test fails if its rule is broken rather than if the shop changes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from shops import trained_shop

from engine.artifacts import load_artifact, write_artifact
from engine.matrix import SECONDS_PER_DAY
from engine.model import Model, load_model
from engine.models.repeat_aware import FEATURES
from engine.profiles import Profile, RecentEvent
from engine.recommender import (
    Query,
    Recommendations,
    Recommended,
    Recommender,
    trending_reason,
)
from training.synthetic import ShopSpec, generate_shop

SPEC = ShopSpec(customers=300, items=200, days=120, seed=1)
DAY = SECONDS_PER_DAY
MINUTE = 60


# --- the shop and its model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated() -> pa.Table:
    return generate_shop(SPEC)


@pytest.fixture(scope="module")
def models_dir(generated: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_shop(tmp_path_factory.mktemp("shop"), generated)


@pytest.fixture(scope="module")
def model(models_dir: Path) -> Model:
    return load_model(models_dir)


@pytest.fixture(scope="module")
def rec(model: Model) -> Recommender:
    return Recommender(model)


@pytest.fixture(scope="module")
def now(model: Model) -> float:
    return float(model.as_of)


@pytest.fixture(scope="module")
def n_items(model: Model) -> int:
    return len(model.items)


@pytest.fixture(scope="module")
def customer(model: Model) -> str:
    """A regular: several items due again at the end of the log, more bought and not due."""
    history = model.scorer.history

    def due(row: int) -> int:
        return len(history.due(row, model.as_of))

    rows = [
        row
        for row in range(len(model.users))
        if due(row) >= 2 and len(history.items_of(row)) - due(row) >= 5
    ]
    return str(model.users.ids[max(rows, key=due)])


# --- the request's scorer against the batch scorer ---------------------------------------------


@pytest.mark.parametrize("weights", ["fitted", "every feature"])
def test_a_customer_is_scored_per_request_as_in_batch(model: Model, weights: str) -> None:
    """The request path (one compiled kernel) gives a known customer without a session the
    scores of the batch path (e-mails, evaluation): the features are the same, on any weights."""
    scorer = model.scorer
    if weights == "every feature":
        scorer = scorer.with_weights(dict.fromkeys(FEATURES, 1.0))
    as_of = int(model.as_of)
    rows = np.flatnonzero(np.diff(scorer.history.counts.indptr) > 0)[:25]
    no_session = np.zeros(scorer.factors.item_factors.shape[1], np.float32)
    batch = scorer.score(rows, as_of)
    for row, expected in zip(rows.tolist(), batch, strict=True):
        got = scorer.score_visitor(
            row, no_session, np.empty(0, np.int64), np.empty(0, np.float32), as_of
        )
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_loading_a_model_compiles_every_kernel_a_request_calls(models_dir: Path) -> None:
    """Compiled at load, not by the first request of each kind (a first known customer's
    request took 1.4 s when only an anonymous session was warmed up). A fresh process: the
    test run's own calls must not have compiled them already."""
    kernels = [
        "top_allowed",
        "first_allowed",
        "add_session_term",
        "add_customer_terms",
        "fold_in",
        "hide_not_due",
        "closest_rows",
        "row_entries",
    ]
    script = f"""
import pathlib
from engine import kernels
from engine.model import load_model
from engine.recommender import Recommender
Recommender(load_model(pathlib.Path({str(models_dir)!r})))
print([name for name in {kernels!r} if not getattr(kernels, name).signatures])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


# --- helpers -----------------------------------------------------------------------------------

VISITOR = Profile(visitor_id="visitor")


def _ids(items: Iterable[Recommended]) -> list[str]:
    return [item.item_id for item in items]


def _run(
    rec: Recommender,
    now: float,
    profile: Profile = VISITOR,
    unavailable: Iterable[str] = (),
    /,
    **query: Any,
) -> Recommendations:
    return rec.recommend(Query(**query), profile, frozenset(unavailable), now=now)


def _everything(
    rec: Recommender,
    now: float,
    profile: Profile = VISITOR,
    unavailable: Iterable[str] = (),
    /,
    **query: Any,
) -> Recommendations:
    """The whole ranking: k as large as the catalog."""
    return _run(rec, now, profile, unavailable, k=len(rec.model.items), **query)


def _session(now: float, *items: str, customer_id: str | None = None) -> Profile:
    """A visitor who clicked ``items``, the first one most recently."""
    recent = tuple(
        RecentEvent(item, "click", now - (i + 1) * MINUTE) for i, item in enumerate(items)
    )
    return Profile(visitor_id="visitor", customer_id=customer_id, recent=recent)


def _row(model: Model, customer: str) -> int:
    row = model.users.index(customer)
    assert row is not None
    return row


def _bought(model: Model, customer: str) -> set[str]:
    return set(model.items.ids[model.scorer.history.items_of(_row(model, customer))].tolist())


def _due(model: Model, customer: str, now: float) -> set[str]:
    return set(model.items.ids[model.scorer.history.due(_row(model, customer), now)].tolist())


def _neighbours(model: Model, item: str, n: int) -> list[str]:
    """The ``n`` items most similar to ``item`` by its row of the kNN similarity matrix."""
    index = model.items.index(item)
    assert index is not None
    similarity = model.scorer.knn.similarity
    lo, hi = similarity.indptr[index], similarity.indptr[index + 1]
    order = np.argsort(-similarity.data[lo:hi], kind="stable")
    partners = [int(j) for j in similarity.indices[lo:hi][order] if j != index]
    return [str(model.items.ids[j]) for j in partners[:n]]


def _similarity(model: Model, a: str, b: str) -> float:
    return float(model.scorer.knn.similarity[model.items.index(a), model.items.index(b)])


def _partners(model: Model, item: str) -> list[str]:
    index = model.items.index(item)
    assert index is not None
    lo, hi = model.together.indptr[index], model.together.indptr[index + 1]
    return model.items.ids[model.together.indices[lo:hi]].tolist()


def _trending_order(model: Model) -> list[str]:
    """Most customers in the trend window first, ties by customers overall, then by index."""
    trending, popularity = model.scorer.trending, model.scorer.popularity
    order = np.lexsort((np.arange(len(trending)), -popularity, -trending))
    return model.items.ids[order].tolist()


def _rank(ids: list[str]) -> dict[str, int]:
    return {item: position for position, item in enumerate(ids)}


# --- strategies and the live session -----------------------------------------------------------


def test_an_empty_profile_gets_the_trending_list(
    rec: Recommender, model: Model, now: float
) -> None:
    result = _everything(rec, now)
    assert result.strategy == "trending"
    assert result.model_version == rec.version == model.version
    assert _ids(result.items) == _trending_order(model)
    assert all(rec.knows(item) for item in _ids(result.items))
    assert not rec.knows("not-in-the-model")
    reasons: Counter[bool] = Counter()
    for item in result.items:
        recent = int(model.scorer.trending[model.items.index(item.item_id)])
        expected = trending_reason(recent) if recent else "popular"
        assert item.reason == expected, item
        reasons[expected == "popular"] += 1
    assert reasons[True] and reasons[False]  # both reasons occur in this shop


@pytest.mark.parametrize("position", [0, 25, 90, 160])
def test_a_click_changes_the_next_recommendation(
    rec: Recommender, model: Model, now: float, position: int
) -> None:
    clicked = _trending_order(model)[position]
    before = _everything(rec, now)
    after = _everything(rec, now, _session(now, clicked))
    assert before.strategy == "trending"
    assert after.strategy == "session"
    assert _ids(after.items)[:10] != _ids(before.items)[:10]
    assert clicked not in _ids(after.items)
    # Everything but the clicked item is still offered: the click re-ranks, it does not filter.
    assert set(_ids(after.items)) == set(_ids(before.items)) - {clicked}
    # Ranks among the items both lists can show (the clicked one is gone after the click).
    ranked_before = _rank([i for i in _ids(before.items) if i != clicked])
    ranked_after = _rank(_ids(after.items))
    neighbours = _neighbours(model, clicked, 5)
    for neighbour in neighbours:
        assert ranked_after[neighbour] <= ranked_before[neighbour], neighbour
    nearest = neighbours[0]
    assert ranked_after[nearest] < ranked_before[nearest] or ranked_before[nearest] == 0
    assert sum(ranked_after[n] for n in neighbours) < sum(ranked_before[n] for n in neighbours)
    # Strong enough to show on the first page: more of the clicked item's ten nearest, and a
    # page closer to it in the latent space.
    page_before, page_after = _ids(before.items)[:10], _ids(after.items)[:10]
    ten = set(_neighbours(model, clicked, 10))
    assert len(ten & set(page_after)) > len(ten & set(page_before))
    cosine = {r.item_id: r.score for r in rec.similar(clicked, len(model.items))}
    assert np.mean([cosine[i] for i in page_after]) > np.mean(
        [cosine[i] for i in page_before if i != clicked]
    )


def test_session_items_are_never_recommended_back(
    rec: Recommender, model: Model, now: float, customer: str
) -> None:
    top = _ids(_everything(rec, now).items)[:4]
    recent = (
        RecentEvent(top[0], "view", now - 2 * DAY),
        RecentEvent(top[1], "click", now - DAY),
        RecentEvent(top[2], "add_to_cart", now - 60 * DAY),  # long ago: still this session
        RecentEvent(top[3], "purchase", now),
        RecentEvent("not-in-the-model", "click", now),
    )
    for customer_id in (None, customer):
        profile = Profile(visitor_id="visitor", customer_id=customer_id, recent=recent)
        result = _everything(rec, now, profile)
        assert result.strategy == ("session" if customer_id is None else "customer+session")
        assert not set(top) & set(_ids(result.items))
    anonymous = _everything(rec, now, Profile(visitor_id="visitor", recent=recent))
    assert len(anonymous.items) == len(model.items) - 4


def test_a_known_customer_gets_their_own_list(rec: Recommender, now: float, customer: str) -> None:
    linked = _run(rec, now, Profile(visitor_id="visitor", customer_id=customer), k=10)
    assert linked.strategy == "customer"
    asked = _run(rec, now, customer_id=customer, k=10)
    assert asked == linked  # Query.customer_id or the profile's link: the same list
    overridden = _run(
        rec, now, Profile(visitor_id="visitor", customer_id="someone-else"), customer_id=customer
    )
    assert overridden == linked
    assert _ids(linked.items) != _ids(_run(rec, now, k=10).items)  # not the trending list
    clicked = _ids(linked.items)[5]
    with_session = _run(rec, now, _session(now, clicked, customer_id=customer), k=10)
    assert with_session.strategy == "customer+session"
    assert _ids(with_session.items) != _ids(linked.items)
    assert clicked not in _ids(with_session.items)


def test_an_unknown_customer_is_treated_as_anonymous(rec: Recommender, now: float) -> None:
    result = _run(rec, now, customer_id="never-bought-anything", k=10)
    assert result == _run(rec, now, k=10)
    assert result.strategy == "trending"


# --- hard rules --------------------------------------------------------------------------------


def test_unavailable_items_never_appear(
    rec: Recommender, model: Model, now: float, customer: str
) -> None:
    due = sorted(_due(model, customer, now))
    for profile in (
        VISITOR,
        _session(now, _trending_order(model)[3]),
        Profile(visitor_id="visitor", customer_id=customer),
    ):
        full = _ids(_everything(rec, now, profile).items)
        gone = {*full[:5], full[40], due[0], "not-in-the-model"}
        result = _ids(_everything(rec, now, profile, gone).items)
        assert not gone & set(result)
        assert result == [i for i in full if i not in gone]  # nothing else moves


def test_purchased_items_return_only_when_due(
    rec: Recommender, model: Model, now: float, customer: str
) -> None:
    bought = _bought(model, customer)
    counts = model.scorer.history.counts[_row(model, customer)]
    times = dict(zip(model.items.ids[counts.indices].tolist(), counts.data.tolist(), strict=True))
    for later in (0, 30, 365):
        due = _due(model, customer, now + later * DAY)
        assert due and bought - due
        profile = Profile(visitor_id="visitor", customer_id=customer)
        result = _everything(rec, now + later * DAY, profile).items
        assert set(_ids(result)) & bought == due  # not-due items never; due ones all (k = all)
        for item in result:
            if item.item_id in due:
                assert item.reason == f"you bought it {int(times[item.item_id])} times before"
            else:
                assert not item.reason.startswith("you bought it")


def test_items_bought_this_session_never_appear(
    rec: Recommender, model: Model, now: float, customer: str
) -> None:
    top = _trending_order(model)[:3]
    result = _everything(rec, now, Profile(visitor_id="visitor", bought=frozenset(top)))
    assert result.strategy == "trending"
    assert _ids(result.items) == _trending_order(model)[3:]
    due = sorted(_due(model, customer, now))
    linked = Profile(visitor_id="visitor", customer_id=customer)
    shown = _ids(_everything(rec, now, linked).items)
    assert due[0] in shown
    bought = frozenset({due[0], shown[-1]})
    result = _everything(rec, now, Profile(visitor_id="v", customer_id=customer, bought=bought))
    assert _ids(result.items) == [i for i in shown if i not in bought]


def _categories(model: Model) -> list[str]:
    """Categories by size, smallest first (ties by name)."""
    counts = Counter(model.category.tolist())
    return sorted(counts, key=lambda c: (counts[c], c))


def test_include_and_exclude_categories(rec: Recommender, model: Model, now: float) -> None:
    small, other, *_, big = _categories(model)
    full = _ids(_everything(rec, now).items)
    category = dict(zip(model.items.ids.tolist(), model.category.tolist(), strict=True))

    def only(keep: set[str]) -> list[str]:
        return [i for i in full if category[i] in keep]

    result = _everything(rec, now, include_categories=frozenset({small, big}))
    assert _ids(result.items) == only({small, big})
    assert {item.category for item in result.items} == {small, big}
    result = _everything(rec, now, exclude_categories=frozenset({small, other}))
    assert _ids(result.items) == only(set(category.values()) - {small, other})
    result = _everything(
        rec, now, include_categories=frozenset({small, big}), exclude_categories={big}
    )
    assert _ids(result.items) == only({small})
    assert _everything(rec, now, include_categories=frozenset({"no such category"})).items == []


def test_min_and_max_price(rec: Recommender, model: Model, now: float) -> None:
    prices = np.sort(model.price)
    low, high = float(prices[len(prices) // 4]), float(prices[3 * len(prices) // 4])
    full = _everything(rec, now).items
    bounds: dict[str, float]
    for bounds in ({"min_price": low}, {"max_price": high}, {"min_price": low, "max_price": high}):
        lo, hi = bounds.get("min_price", -np.inf), bounds.get("max_price", np.inf)
        result = _everything(rec, now, **bounds).items
        assert result == [item for item in full if item.price and lo <= item.price <= hi]
        assert 0 < len(result) < len(full)
        assert {low, high} & {item.price for item in result}  # the bounds are inclusive


def _copy_with_prices(models_dir: Path, folder: Path, price: np.ndarray) -> Model:
    source = load_artifact(models_dir)
    arrays = {name: np.asarray(values) for name, values in source.arrays.items()}
    arrays["item_price"] = price.astype(np.float32)
    reserved = {"format_version", "version", "created", "files"}
    manifest = {k: v for k, v in source.manifest.items() if k not in reserved}
    return load_model(write_artifact(folder, arrays, manifest))


def test_items_without_a_price_fail_every_price_filter(
    models_dir: Path, model: Model, now: float, tmp_path: Path
) -> None:
    price = np.array(model.price, dtype=np.float64)
    unpriced = _trending_order(model)[:3]
    price[model.items.indices(unpriced)] = np.nan
    rec = Recommender(_copy_with_prices(models_dir, tmp_path, price))
    result = _everything(rec, now).items
    assert [i.price for i in result[:3]] == [None, None, None]  # shown when nobody filters
    assert _ids(result[:3]) == unpriced
    everything_priced = _ids(result[3:])
    assert _ids(_everything(rec, now, min_price=0.0).items) == everything_priced
    assert _ids(_everything(rec, now, max_price=1e9).items) == everything_priced


# --- boost and pins ----------------------------------------------------------------------------


def test_boost_lifts_an_item_and_ignores_non_positive_factors(
    rec: Recommender, model: Model, now: float, customer: str
) -> None:
    for profile in (VISITOR, Profile(visitor_id="visitor", customer_id=customer)):
        full = _ids(_everything(rec, now, profile).items)
        item = full[20]

        def position(factor: float, item: str = item, profile: Profile = profile) -> int:
            return _ids(_everything(rec, now, profile, boost={item: factor}).items).index(item)

        assert position(1.0) == 20
        assert position(2.0) < 20
        assert position(1e6) == 0
        assert position(0.5) > 20
        for ignored in ({item: 0.0}, {item: -3.0}, {"not-in-the-model": 5.0}):
            assert _ids(_everything(rec, now, profile, boost=ignored).items) == full


def test_pins_come_first_in_their_order(rec: Recommender, model: Model, now: float) -> None:
    full = _ids(_everything(rec, now).items)
    pins = (full[30], full[10], full[50])
    result = _run(rec, now, k=10, pin=(*pins, "not-in-the-model", full[30]))
    assert _ids(result.items) == [*pins, *[i for i in full if i not in pins][:7]]
    assert [item.reason for item in result.items[:3]] == ["featured"] * 3
    assert all(item.reason != "featured" for item in result.items[3:])


def test_a_pinned_item_that_may_not_be_shown_is_not_shown(
    rec: Recommender, model: Model, now: float
) -> None:
    full = _ids(_everything(rec, now).items)
    category = dict(zip(model.items.ids.tolist(), model.category.tolist(), strict=True))
    unavailable, clicked, excluded, shown = full[40], full[41], full[42], full[43]
    assert category[excluded] not in {category[unavailable], category[clicked], category[shown]}
    result = _everything(
        rec,
        now,
        _session(now, clicked),
        {unavailable},
        pin=(unavailable, clicked, excluded, shown),
        exclude_categories=frozenset({category[excluded]}),
    )
    assert _ids(result.items)[0] == shown
    assert not {unavailable, clicked, excluded} & set(_ids(result.items))


# --- diversity ---------------------------------------------------------------------------------


def test_diversity_cap_spreads_the_first_items_over_categories(
    rec: Recommender, model: Model, now: float, customer: str
) -> None:
    n_categories = len(set(model.category.tolist()))
    for profile in (
        VISITOR,
        _session(now, _trending_order(model)[7]),
        Profile(visitor_id="visitor", customer_id=customer),
    ):
        capped = _run(rec, now, profile, k=n_categories, max_per_category=1).items
        assert len({item.category for item in capped}) == n_categories
        twice = _run(rec, now, profile, k=2 * n_categories, max_per_category=2).items
        assert max(Counter(item.category for item in twice).values()) == 2
        assert len(twice) == 2 * n_categories


def test_diversity_cap_looks_past_the_best_candidates(
    rec: Recommender, model: Model, now: float
) -> None:
    # One category boosted far ahead of the rest: the best few times k candidates all belong to
    # it, yet the catalog has other categories to show.
    big = _categories(model)[-1]
    boost = {item: 1e6 for item in model.items.ids[model.category == big].tolist()}
    ranked = _everything(rec, now, boost=boost).items
    assert {item.category for item in ranked[:20]} == {big}
    best_of_each: list[Recommended] = []
    for item in ranked:
        if item.category not in {other.category for other in best_of_each}:
            best_of_each.append(item)
    capped = _run(rec, now, k=5, boost=boost, max_per_category=1).items
    assert capped == best_of_each[:5]


def test_diversity_cap_is_relaxed_only_to_fill_k(
    rec: Recommender, model: Model, now: float
) -> None:
    small, other, *_ = _categories(model)
    two = frozenset({small, other})
    ranked = _everything(rec, now, include_categories=two).items
    assert len(ranked) >= 10
    result = _run(rec, now, k=10, include_categories=two, max_per_category=1).items
    # The best of each category first, then the rest in rank order: still k items.
    firsts = [item for item in ranked if item.category == small][:1] + [
        item for item in ranked if item.category == other
    ][:1]
    firsts.sort(key=ranked.index)
    assert result == [*firsts, *[item for item in ranked if item not in firsts]][:10]


# --- pagination and page size ------------------------------------------------------------------


@pytest.mark.parametrize(
    "scenario", ["anonymous", "session", "customer", "customer+session+cap", "pins+cap"]
)
def test_pages_follow_one_ranking(
    rec: Recommender, model: Model, now: float, customer: str, scenario: str
) -> None:
    clicked = _trending_order(model)[12]
    cases: dict[str, tuple[Profile, dict[str, Any]]] = {
        "anonymous": (VISITOR, {}),
        "session": (_session(now, clicked), {}),
        "customer": (Profile(visitor_id="visitor", customer_id=customer), {}),
        "customer+session+cap": (
            _session(now, clicked, customer_id=customer),
            {"max_per_category": 1},
        ),
        "pins+cap": (VISITOR, {"pin": tuple(_trending_order(model)[50:53]), "max_per_category": 2}),
    }
    profile, query = cases[scenario]
    k = 10
    full = _ids(_everything(rec, now, profile, **query).items)
    page1 = _ids(_run(rec, now, profile, k=k, offset=0, **query).items)
    page2 = _ids(_run(rec, now, profile, k=k, offset=k, **query).items)
    assert len(page1) == len(page2) == k
    assert not set(page1) & set(page2)
    assert page1 + page2 == _ids(_run(rec, now, profile, k=2 * k, **query).items)
    pages = [
        _ids(_run(rec, now, profile, k=k, offset=offset, **query).items)
        for offset in range(0, len(full) + k, k)
    ]
    assert list(chain.from_iterable(pages)) == full
    assert pages[-1] == []  # past the end: an empty page


def test_never_fewer_than_k_while_the_catalog_has_them(
    rec: Recommender, model: Model, now: float, customer: str
) -> None:
    clicked = _trending_order(model)[:2]
    profile = _session(now, *clicked, customer_id=customer)
    unavailable = set(_trending_order(model)[2:6])
    small, other, *_ = _categories(model)
    max_price = float(np.quantile(model.price, 0.9))

    def allowed(categories: set[str]) -> set[str]:
        """The items the rules leave, worked out from the model's arrays."""
        not_due = _bought(model, customer) - _due(model, customer, now)
        return (
            {
                str(item)
                for item, category, price in zip(
                    model.items.ids, model.category, model.price, strict=True
                )
                if category in categories and price <= max_price
            }
            - not_due
            - unavailable
            - set(clicked)
        )

    every = set(model.category.tolist())
    query = {"exclude_categories": frozenset({small, other}), "max_price": max_price}
    assert len(allowed(every - {small, other})) >= 50
    for cap in (None, 1):
        result = _run(rec, now, profile, unavailable, k=50, max_per_category=cap, **query)
        assert len(result.items) == 50
        assert set(_ids(result.items)) <= allowed(every - {small, other})
    few = allowed({small})
    assert 0 < len(few) < 50
    for cap in (None, 1):
        result = _run(
            rec, now, profile, unavailable, k=50, max_per_category=cap,
            include_categories=frozenset({small}), max_price=max_price,
        )  # fmt: skip
        assert set(_ids(result.items)) == few
        assert len(result.items) == len(few)


# --- product page and reasons ------------------------------------------------------------------


def test_product_page_shows_what_is_bought_with_the_item(
    rec: Recommender, model: Model, now: float, customer: str
) -> None:
    page = max(model.items.ids.tolist(), key=lambda item: len(_partners(model, item)))
    partners = set(_partners(model, page))
    assert len(partners) >= 5
    name = model.description[model.items.index(page)]
    result = _everything(rec, now, context_item=page)
    assert result.strategy == "session"  # the page itself is the visitor's signal
    assert page not in _ids(result.items)
    assert partners <= set(_ids(result.items))
    for item in result.items:
        together = item.reason == f"often bought together with {name}"
        assert together == (item.item_id in partners), item
    linked = Profile(visitor_id="visitor", customer_id=customer)
    assert page not in _ids(_everything(rec, now, linked, context_item=page).items)
    unknown = _everything(rec, now, context_item="not-in-the-model")
    assert unknown == _everything(rec, now)


def test_session_neighbours_are_explained_by_the_closest_viewed_item(
    rec: Recommender, model: Model, now: float
) -> None:
    viewed = _trending_order(model)[5], _trending_order(model)[60]
    result = _everything(rec, now, _session(now, *viewed))
    description = {str(i): str(d) for i, d in zip(model.items.ids, model.description, strict=True)}
    because = 0
    for item in result.items:
        closeness = [_similarity(model, source, item.item_id) for source in viewed]
        if max(closeness) > 0:
            source = viewed[int(np.argmax(closeness))]
            assert item.reason == f"because you viewed {description[source]}", item
            because += 1
        else:
            assert not item.reason.startswith("because you viewed"), item
    assert 0 < because < len(result.items)
    assert result.items[0].reason.startswith("because you viewed")


# --- similar, bought together, trending --------------------------------------------------------


def test_similar_items_by_cosine(rec: Recommender, model: Model) -> None:
    item = _trending_order(model)[0]
    index = model.items.index(item)
    factors = model.scorer.factors.item_factors.astype(np.float64)
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    cosine = unit @ unit[index]
    expected = [str(model.items.ids[j]) for j in np.argsort(-cosine) if j != index]
    result = rec.similar(item, 10)
    assert _ids(result) == expected[:10]
    assert [r.score for r in result] == pytest.approx(
        [cosine[model.items.index(i)] for i in expected[:10]], rel=1e-5
    )
    assert {r.reason for r in result} == {f"similar to {model.description[index]}"}
    unavailable = frozenset(expected[:3])
    assert _ids(rec.similar(item, 10, unavailable)) == expected[3:13]
    assert item not in _ids(rec.similar(item, len(model.items)))
    assert len(rec.similar(item, len(model.items))) == len(model.items) - 1
    with pytest.raises(KeyError):
        rec.similar("not-in-the-model", 10)


_TOGETHER = re.compile(r"bought together in (\d+) baskets, lift (\d+\.\d)")


def test_bought_together_by_confidence_with_support_and_lift(
    rec: Recommender, model: Model, generated: pa.Table
) -> None:
    # Count the baskets by hand from the generated log.
    pairs = {
        (b, i)
        for b, i in zip(
            generated["basket_id"].to_pylist(), generated["item_id"].to_pylist(), strict=True
        )
    }
    baskets_with: dict[str, set[str]] = {}
    for basket, item in pairs:
        baskets_with.setdefault(item, set()).add(basket)
    n_baskets = len({basket for basket, _ in pairs})

    item = max(model.items.ids.tolist(), key=lambda i: len(_partners(model, i)))
    result = rec.bought_together(item, 10)
    assert len(result) == 10
    assert [r.score for r in result] == sorted((r.score for r in result), reverse=True)
    assert item not in _ids(result)
    for partner in result[:3]:
        support = len(baskets_with[item] & baskets_with[partner.item_id])
        lift = support * n_baskets / (len(baskets_with[item]) * len(baskets_with[partner.item_id]))
        match = _TOGETHER.fullmatch(partner.reason)
        assert match, partner.reason
        assert int(match[1]) == support
        assert match[2] == f"{lift:.1f}"
        assert partner.score == pytest.approx(support / len(baskets_with[item]))
    # Every partner with more support than the last one shown is shown.
    supports = {p: len(baskets_with[item] & baskets_with[p]) for p in _partners(model, item)}
    shown = set(_ids(result))
    assert all(p in shown for p, s in supports.items() if s > min(supports[i] for i in shown))
    gone = frozenset(_ids(result)[:2])
    assert _ids(rec.bought_together(item, 8, gone)) == _ids(result)[2:]
    with pytest.raises(KeyError):
        rec.bought_together("not-in-the-model", 10)


def test_trending_puts_live_counts_first_then_fills_from_the_model(
    rec: Recommender, model: Model
) -> None:
    order = _trending_order(model)
    a, b, c = order[40], order[41], order[42]
    live = [("not-in-the-model", 99.0), (a, 50.0), (b, 40.0), (c, 30.0), (a, 20.0)]
    result = rec.trending(10, live, unavailable=frozenset({b, order[0]}))
    assert _ids(result) == [a, c, *[i for i in order if i not in {a, b, c, order[0]}][:8]]
    assert [r.reason for r in result[:2]] == [
        "trending: 50 recent events",
        "trending: 30 recent events",
    ]
    assert [r.score for r in result[:2]] == [50.0, 30.0]
    for r in result[2:]:
        recent = int(model.scorer.trending[model.items.index(r.item_id)])
        assert r.reason == trending_reason(recent)
    assert rec.trending(1, [(a, 1.0)])[0].reason == "trending: 1 recent event"
    assert (trending_reason(1), trending_reason(3)) == (
        "trending: 1 customer bought it recently",
        "trending: 3 customers bought it recently",
    )
    assert _ids(rec.trending(1, live)) == [a]
    assert _ids(rec.trending(5)) == order[:5]


# --- determinism -------------------------------------------------------------------------------


def test_the_same_request_gets_the_same_answer(
    rec: Recommender, model: Model, now: float, customer: str
) -> None:
    profile = _session(now, *_trending_order(model)[3:6], customer_id=customer)
    query: dict[str, Any] = {
        "k": 20,
        "max_per_category": 2,
        "boost": {_trending_order(model)[30]: 3.0},
    }
    first = _run(rec, now, profile, **query)
    assert _run(rec, now, profile, **query) == first
    assert _run(Recommender(model), now, profile, **query) == first
