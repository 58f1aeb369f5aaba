"""Top-k selection over dense score rows."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def top_k(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> np.ndarray:
    """Indices of the ``k`` best items per row, best first.

    Args:
        scores: (n_rows, n_items) scores, higher is better. Modified in place when ``exclude``
            is given (callers pass a fresh score block, so no copy is made on the hot path).
        k: how many items per row; capped at the number of items.
        exclude: optional (n_rows, n_items) sparse mask of items that must not be returned.

    Returns:
        (n_rows, min(k, n_items)) item indices; a slot is -1 where fewer than k items remain
        after exclusion, so an excluded item is never returned.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if exclude is not None and exclude.nnz:
        rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
        scores[rows, exclude.indices] = -np.inf
    n_items = scores.shape[1]
    k = min(k, n_items)
    if k == n_items:
        part = np.broadcast_to(np.arange(n_items), scores.shape)
    else:
        # argpartition is O(n) per row; only the k survivors are sorted.
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    picked = np.take_along_axis(part, order, axis=1)
    picked[np.take_along_axis(scores, picked, axis=1) == -np.inf] = -1
    return picked
