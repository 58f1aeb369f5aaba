"""Purchase events and the users x items matrices built from them.

The orientation is fixed by name: an :class:`InteractionMatrix` is always users x items, which is
also what implicit >= 0.5 expects for ``fit``. The same weighting code turns events into model input
offline (training) and online (session fold-in), so the two cannot drift.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum

import numba
import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight

from engine.kernels import due_flags, hide_not_due
from engine.vocab import Vocabulary

SECONDS_PER_DAY = 86_400
# The weighting constants, named so a trainer that weighs elsewhere (Spark) uses the same ones.
BM25_K1 = 100.0
BM25_B = 0.8
HALF_LIFE_DAYS = 90.0


class Weighting(StrEnum):
    """How repeated purchases of one item by one customer become a confidence value."""

    COUNT = "count"  # number of purchase lines (baskets containing the item)
    BINARY = "binary"  # bought at all
    LOG_QUANTITY = "log-quantity"  # log(1 + units bought)
    BM25 = "bm25"  # counts, BM25-damped against very popular items and very active users
    TIME_DECAY = "time-decay"  # counts, each halved every ``half_life_days`` before ``as_of``


@dataclass(frozen=True)
class Interactions:
    """Purchase events as parallel columns of codes into two vocabularies, sorted by time
    (those a log gives; the purchase history takes them in any order)."""

    users: Vocabulary
    items: Vocabulary
    user: np.ndarray  # int32 row index per event
    item: np.ndarray  # int32 column index per event
    time: np.ndarray  # int64 epoch seconds per event
    quantity: np.ndarray  # float32 units per event

    def __post_init__(self) -> None:
        n = len(self.user)
        if not (len(self.item) == len(self.time) == len(self.quantity) == n):
            raise ValueError("interaction columns must have equal length")

    def __len__(self) -> int:
        return len(self.user)

    def where(self, mask: np.ndarray | slice) -> Interactions:
        """The events selected by a boolean mask (or a slice: views, no copy), keeping both
        vocabularies whole."""
        return Interactions(
            self.users, self.items, self.user[mask], self.item[mask], self.time[mask],
            self.quantity[mask],
        )  # fmt: skip

    def before(self, t: int) -> Interactions:
        return self.between(None, t)

    def between(self, start: int | None, end: int | None) -> Interactions:
        """The events from ``start`` until before ``end`` (None: no bound on that side); events
        in time order, as the trainer's are, are one slice of them (no copy: the validation
        split took 0.47 s at 10M lines as a masked copy)."""
        if self._in_time_order:
            return self.where(slice(self._position(start), self._position(end)))
        selected = np.ones(len(self), dtype=bool)
        if start is not None:
            selected &= self.time >= start
        if end is not None:
            selected &= self.time < end
        return self.where(selected)

    def _position(self, t: int | None) -> int | None:
        return None if t is None else int(np.searchsorted(self.time, t, "left"))

    @functools.cached_property
    def _in_time_order(self) -> bool:
        return not np.any(self.time[1:] < self.time[:-1])

    def active_users(self) -> np.ndarray:
        """Sorted row indices of users with at least one event.

        Counted, not ``np.unique``d: numpy 2.4's hash-based unique took 3.3 s on 10M ids of a
        million users.
        """
        return np.flatnonzero(np.bincount(self.user, minlength=len(self.users)))


@dataclass(frozen=True)
class InteractionMatrix:
    """Confidence that a user likes an item: users x items, float32 CSR."""

    users: Vocabulary
    items: Vocabulary
    user_items: sp.csr_matrix

    def __post_init__(self) -> None:
        if self.user_items.shape != (len(self.users), len(self.items)):
            raise ValueError(
                f"matrix shape {self.user_items.shape} does not match "
                f"{len(self.users)} users x {len(self.items)} items"
            )

    @classmethod
    def from_interactions(
        cls,
        events: Interactions,
        weighting: Weighting = Weighting.COUNT,
        *,
        as_of: int | None = None,
        half_life_days: float = HALF_LIFE_DAYS,
        counts: sp.csr_matrix | None = None,
    ) -> InteractionMatrix:
        """``counts``: see :func:`weigh`."""
        weights = weigh(
            events, weighting, as_of=as_of, half_life_days=half_life_days, counts=counts
        )
        return cls(events.users, events.items, weights)

    @property
    def shape(self) -> tuple[int, int]:
        return self.user_items.shape


def weigh(
    events: Interactions,
    weighting: Weighting,
    *,
    as_of: int | None = None,
    half_life_days: float = HALF_LIFE_DAYS,
    counts: sp.csr_matrix | None = None,
) -> sp.csr_matrix:
    """Sum events into a users x items confidence matrix under one weighting scheme.

    ``counts``: the events' lines per (user, item), canonical, when already built (a purchase
    history's ``counts``): the count-based schemes start from a copy of it instead of summing
    the events again (BM25 at 10M lines: 0.52 -> 0.17 s a fit, two fits a training).
    """
    shape = (len(events.users), len(events.items))
    if weighting is Weighting.LOG_QUANTITY:
        units = _sum(events, events.quantity.astype(np.float32), shape)
        units.data = np.log1p(units.data)
        return units
    if weighting is Weighting.TIME_DECAY:
        ref = int(events.time.max()) if as_of is None and len(events) else as_of or 0
        age_days = (ref - events.time) / SECONDS_PER_DAY
        return _sum(events, np.exp2(-age_days / half_life_days).astype(np.float32), shape)
    if counts is None:
        counts = _sum(events, np.ones(len(events), dtype=np.float32), shape)
    else:
        counts = counts.astype(np.float32)  # a copy: the schemes below change it in place
    if weighting is Weighting.BINARY:
        counts.data[:] = 1.0
    elif weighting is Weighting.BM25:
        counts = bm25_weight(counts, K1=BM25_K1, B=BM25_B).tocsr().astype(np.float32)
    return counts


def _sum(events: Interactions, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((values, (events.user, events.item)), shape=shape, dtype=np.float32)
    m.sum_duplicates()
    return m


@dataclass(frozen=True)
class PurchaseHistory:
    """What each customer bought: purchase-line counts, first and last purchase time per item.

    The three matrices share one sparsity pattern (all canonical CSR), so frequency, recency and
    the usual interval between re-purchases of one entry are read without a join.
    """

    counts: sp.csr_matrix  # float32 number of purchase lines
    last_time: sp.csr_matrix  # float64 epoch seconds of the latest purchase
    first_time: sp.csr_matrix  # float64 epoch seconds of the earliest purchase

    @classmethod
    def from_interactions(cls, events: Interactions) -> PurchaseHistory:
        shape = (len(events.users), len(events.items))
        indptr, columns, counts, first, last = _history_entries(
            events.user, events.item, events.time, shape[0], shape[1]
        )

        def matrix(values: np.ndarray) -> sp.csr_matrix:
            return sp.csr_matrix((values, columns, indptr), shape=shape)

        return cls(matrix(counts), matrix(last), matrix(first))

    @property
    def shape(self) -> tuple[int, int]:
        return self.counts.shape

    def items_of(self, user: int) -> np.ndarray:
        """Column indices of everything one user bought."""
        return self.counts.indices[self.counts.indptr[user] : self.counts.indptr[user + 1]]

    def due(self, user: int, now: float) -> np.ndarray:
        """Items of ``user`` due for re-purchase: bought at least twice, and the usual interval
        between their purchases has passed since the last one.

        Two lines of one basket (one moment) are one purchase: such an item is not repeated.
        """
        items, due = self._due_mask(user, now)
        return items[due]

    def not_due(self, user: int, now: float) -> np.ndarray:
        """Items of ``user`` bought and not (yet) due again: what serving leaves out."""
        items, due = self._due_mask(user, now)
        return items[~due]

    def hide_not_due(self, allowed: np.ndarray, user: int, now: float) -> None:
        """Clear ``allowed`` (one flag per item) at the items of :meth:`not_due`, in place."""
        counts = self.counts
        hide_not_due(
            allowed,
            counts.indptr,
            counts.indices,
            counts.data,
            self.last_time.data,
            self.first_time.data,
            user,
            now,
        )

    def _due_mask(self, user: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.counts.indptr[user], self.counts.indptr[user + 1]
        due = due_flags(
            self.counts.data[lo:hi], self.last_time.data[lo:hi], self.first_time.data[lo:hi], now
        )
        return self.counts.indices[lo:hi], due


@numba.njit(cache=True, nogil=True)
def _history_entries(
    user: np.ndarray, item: np.ndarray, time: np.ndarray, n_users: int, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The purchase history's canonical CSR (indptr, columns, then per entry the number of
    events, the first and the last time), events in any order.

    The events' items and times are bucketed by user (a counting sort), then each user's are
    gathered by item in a reused catalog-wide slot row and the user's few entries sorted by
    column: linear in the events but for those small sorts. A stable argsort of (user, item)
    keys and numpy passes over them did the same in 1.97 s at 10M events, this in 0.67 s (1M:
    0.106 -> 0.048 s; second calls in one process, a first call loads the kernel).
    """
    n = user.shape[0]
    starts = np.zeros(n_users + 1, np.int64)
    for e in range(n):
        starts[user[e] + 1] += 1
    for u in range(n_users):
        starts[u + 1] += starts[u]
    fill = starts[:-1].copy()
    items = np.empty(n, item.dtype)
    times = np.empty(n, np.float64)
    for e in range(n):
        p = fill[user[e]]
        items[p] = item[e]
        times[p] = time[e]
        fill[user[e]] = p + 1
    slot = np.full(n_items, -1, np.int64)
    indptr = np.zeros(n_users + 1, np.int64)
    columns = np.empty(n, np.int64)
    counts = np.empty(n, np.float32)
    first = np.empty(n, np.float64)
    last = np.empty(n, np.float64)
    size = 0
    for u in range(n_users):
        begin = size
        for p in range(starts[u], starts[u + 1]):
            i = items[p]
            t = times[p]
            s = slot[i]
            if s < 0:
                slot[i] = size
                columns[size] = i
                counts[size] = 1.0
                first[size] = t
                last[size] = t
                size += 1
            else:
                counts[s] += 1.0
                first[s] = min(first[s], t)
                last[s] = max(last[s], t)
        if size - begin > 1:
            # The columns sorted, then each one's entry found through its slot: not
            # np.argsort, whose compiled quicksort takes the same arguments as the plain sort
            # other cached kernels use; symbols numbered apart in two processes can collide
            # once both caches are loaded in a third, and the call then runs the wrong sort
            # (a segfault seen in the test suite; numba issues 6061 and 10128).
            ordered = np.sort(columns[begin:size])
            order = slot[ordered]
            columns[begin:size] = ordered
            counts[begin:size] = counts[order]
            first[begin:size] = first[order]
            last[begin:size] = last[order]
        for p in range(begin, size):
            slot[columns[p]] = -1
        indptr[u + 1] = size
    return (
        indptr, columns[:size].copy(), counts[:size].copy(), first[:size].copy(),
        last[:size].copy(),
    )  # fmt: skip
