"""Purchase events and the users x items matrices built from them.

The orientation is fixed by name: an :class:`InteractionMatrix` is always users x items, which is
also what implicit >= 0.5 expects for ``fit``. The same weighting code turns events into model input
offline (training) and online (session fold-in), so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight

from engine.kernels import due_flags
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
    """Purchase events as parallel columns of codes into two vocabularies, sorted by time."""

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

    def where(self, mask: np.ndarray) -> Interactions:
        """The events selected by a boolean mask, keeping both vocabularies whole."""
        return Interactions(
            self.users, self.items, self.user[mask], self.item[mask], self.time[mask],
            self.quantity[mask],
        )  # fmt: skip

    def before(self, t: int) -> Interactions:
        return self.where(self.time < t)

    def between(self, start: int, end: int) -> Interactions:
        return self.where((self.time >= start) & (self.time < end))

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
    ) -> InteractionMatrix:
        return cls(
            events.users,
            events.items,
            weigh(events, weighting, as_of=as_of, half_life_days=half_life_days),
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.user_items.shape


def weigh(
    events: Interactions,
    weighting: Weighting,
    *,
    as_of: int | None = None,
    half_life_days: float = HALF_LIFE_DAYS,
) -> sp.csr_matrix:
    """Sum events into a users x items confidence matrix under one weighting scheme."""
    shape = (len(events.users), len(events.items))
    if weighting is Weighting.LOG_QUANTITY:
        units = _sum(events, events.quantity.astype(np.float32), shape)
        units.data = np.log1p(units.data)
        return units
    if weighting is Weighting.TIME_DECAY:
        ref = int(events.time.max()) if as_of is None and len(events) else as_of or 0
        age_days = (ref - events.time) / SECONDS_PER_DAY
        return _sum(events, np.exp2(-age_days / half_life_days).astype(np.float32), shape)
    counts = _sum(events, np.ones(len(events), dtype=np.float32), shape)
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
        # Sorted by (user, item) key, then time: each run of one key is one entry, its first
        # event the earliest purchase, its last the latest, its length the count. Events come
        # sorted by time (as Interactions promises), so a stable sort of the key alone gives
        # that order: half of a lexsort's cost, kept for events that are not.
        key = events.user.astype(np.int64) * shape[1] + events.item
        in_time_order = bool(np.all(events.time[1:] >= events.time[:-1]))
        order = np.argsort(key, kind="stable") if in_time_order else np.lexsort((events.time, key))
        key_sorted = key[order]
        time_sorted = events.time[order].astype(np.float64)
        first = np.ones(len(key_sorted), dtype=bool)
        first[1:] = key_sorted[1:] != key_sorted[:-1]
        starts = np.flatnonzero(first)
        lengths = np.diff(np.append(starts, len(key_sorted)))
        rows, cols = np.divmod(key_sorted[starts], shape[1])
        # Keys come out sorted: the CSR is canonical as built, no conversion or sort needed.
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])

        def matrix(values: np.ndarray) -> sp.csr_matrix:
            return sp.csr_matrix((values, cols, indptr), shape=shape)

        return cls(
            matrix(lengths.astype(np.float32)),
            matrix(time_sorted[starts + lengths - 1]),
            matrix(time_sorted[starts]),
        )

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

    def _due_mask(self, user: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.counts.indptr[user], self.counts.indptr[user + 1]
        due = due_flags(
            self.counts.data[lo:hi], self.last_time.data[lo:hi], self.first_time.data[lo:hi], now
        )
        return self.counts.indices[lo:hi], due
