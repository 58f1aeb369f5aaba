"""Baselines every model must beat: what sells, and what this customer already buys."""

from __future__ import annotations

import numpy as np

from engine.matrix import SECONDS_PER_DAY, PurchaseHistory


class PopularityScorer:
    """The same list for everyone: items by number of distinct customers."""

    def __init__(self, popularity: np.ndarray) -> None:
        self._popularity = np.asarray(popularity, dtype=np.float32)

    @property
    def n_items(self) -> int:
        return len(self._popularity)

    def score(self, users: np.ndarray, as_of: int) -> np.ndarray:
        return np.tile(self._popularity, (len(users), 1))


class BuyAgainScorer:
    """The customer's own past items: most often bought first, then most widely bought, then most
    recently bought. Items the customer never bought follow in popularity order.

    Breaking count ties by popularity before recency is measured, not guessed: on Online Retail
    (30-day hold-out) it scores NDCG@10 0.338 against 0.320 for recency first, because lines of
    one invoice share a timestamp and popular items are the ones people re-order.
    """

    def __init__(
        self, history: PurchaseHistory, popularity: np.ndarray, half_life_days: float = 365.0
    ) -> None:
        self._history = history
        top = max(float(np.max(popularity, initial=0.0)), 1.0)
        self._popularity = np.asarray(popularity, dtype=np.float64) / top  # in [0, 1]
        # Half of one customer's worth of popularity: recency can never outweigh a popularity
        # difference, however large the catalog's top seller (float64 keeps this exact enough).
        self._recency_scale = 0.25 / top
        self._half_life_days = half_life_days

    @property
    def n_items(self) -> int:
        return self._history.shape[1]

    def score(self, users: np.ndarray, as_of: int) -> np.ndarray:
        # Bought: count + popularity/2 (< 1) + recency x _recency_scale, so each term only breaks
        # the ties of the one before; unbought items score below every bought one, in [-1, 0).
        scores = np.tile(self._popularity - 1.0, (len(users), 1))
        counts = self._history.counts[users]
        last = self._history.last_time[users]
        age_days = np.maximum(as_of - last.data, 0.0) / SECONDS_PER_DAY
        recency = np.exp2(-age_days / self._half_life_days)
        rows = np.repeat(np.arange(len(users)), np.diff(counts.indptr))
        cols = counts.indices
        scores[rows, cols] = (
            counts.data + 0.5 * self._popularity[cols] + self._recency_scale * recency
        )
        return scores
