"""A visitor's live session as model input: event weights and the ALS fold-in.

The fold-in is the closed-form ALS user solve that implicit's ``recalculate_user`` performs:
with item factors Y, regularisation lambda and per-item confidences c over the session's items S,

    x = (Y^T Y + lambda I + sum_{i in S} (c_i - 1) y_i y_i^T)^{-1} sum_{i in S} c_i y_i

(Y^T Y + lambda I)^-1 is computed once per model; a request adds |S| rank-one terms through the
Woodbury identity and solves one |S| x |S| system.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

import numpy as np

from engine.kernels import fold_in
from engine.matrix import SECONDS_PER_DAY
from engine.profiles import RecentEvent
from engine.vocab import Vocabulary

# How strongly each event type says "interested", relative to a purchase.
EVENT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"view": 0.125, "click": 0.25, "add_to_cart": 0.5, "purchase": 1.0}
)
SESSION_HALF_LIFE_DAYS = 7.0  # a click from last week counts half as much as one from now


def session_weights(
    events: Iterable[RecentEvent], items: Vocabulary, now: float
) -> tuple[np.ndarray, np.ndarray]:
    """Known items of the session and their summed, recency-decayed event weights.

    Items the model does not know are skipped: the catalog moves faster than the model.
    """
    weight: dict[int, float] = {}
    for event in events:
        index = items.index(event.item_id)
        if index is None:
            continue
        age_days = max(now - event.timestamp, 0.0) / SECONDS_PER_DAY
        decay = 2.0 ** (-age_days / SESSION_HALF_LIFE_DAYS)
        weight[index] = weight.get(index, 0.0) + EVENT_WEIGHTS[event.type] * decay
    indices = np.fromiter(weight.keys(), dtype=np.int64, count=len(weight))
    values = np.fromiter(weight.values(), dtype=np.float64, count=len(weight))
    return indices, values


class FoldIn:
    """Solves a session's latent vector against fixed item factors."""

    def __init__(self, item_factors: np.ndarray, regularization: float, scale: float) -> None:
        """``scale`` is the confidence of a typical purchase in the training matrix, so that one
        session purchase weighs what one purchase weighed when the factors were fitted."""
        # Keep the (memory-mapped, shared) float32 factors; only a request's own rows are cast.
        # A float64 copy of the catalog would be private to every worker.
        self._factors = item_factors
        f = item_factors.shape[1]
        gram = item_factors.T.astype(np.float64) @ item_factors.astype(np.float64)
        # (Y^T Y + lambda I)^-1, once per model: a request then solves only a |S| x |S| system.
        self._inverse = np.linalg.inv(gram + regularization * np.eye(f))
        self._scale = scale

    def user_vector(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The latent vector of a user who interacted with ``items`` at these event weights.

        With G = Y^T Y + lambda I and the session's rank-one terms U^T D U (U the rows of the
        items whose confidence exceeds 1, D their c_i - 1), the Woodbury identity gives
        (G + U^T D U)^-1 = G^-1 - H^T (D^-1 + H U^T)^-1 H with H = U G^-1: a session of s items
        costs one s x s solve instead of an f x f one.
        """
        if len(items) == 0:
            return np.zeros(self._factors.shape[1], dtype=np.float32)
        confidence = self._scale * np.asarray(weights, dtype=np.float64)
        return fold_in(self._factors, self._inverse, np.asarray(items, np.int64), confidence)
