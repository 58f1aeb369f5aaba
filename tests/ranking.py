"""The reference every top-k selection is tested against: a full sort of each row."""

from __future__ import annotations

import numpy as np


def full_sort_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Sort each whole row: score descending, index ascending; -1 for excluded (-inf)."""
    out = np.full((len(scores), min(k, scores.shape[1])), -1)
    for r, row in enumerate(scores):
        order = np.lexsort((np.arange(len(row)), -row))[: out.shape[1]]
        out[r] = np.where(row[order] == -np.inf, -1, order)
    return out
