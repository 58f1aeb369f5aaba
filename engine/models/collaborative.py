"""Collaborative signals: latent factors (ALS/BPR) and item-item neighbourhoods (kNN)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class FactorScorer:
    """Dot product of a user's latent vector with every item's (ALS or BPR factors)."""

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray) -> None:
        if user_factors.shape[1] != item_factors.shape[1]:
            raise ValueError(
                f"user factors have {user_factors.shape[1]} dimensions, "
                f"item factors {item_factors.shape[1]}"
            )
        self.user_factors = user_factors
        self.item_factors = item_factors

    @property
    def n_items(self) -> int:
        return self.item_factors.shape[0]

    def score(self, users: np.ndarray, as_of: int) -> np.ndarray:
        return np.asarray(self.user_factors[users] @ self.item_factors.T, dtype=np.float32)


class ItemKnnScorer:
    """Sum of item-item similarities from everything the user interacted with."""

    def __init__(self, user_items: sp.csr_matrix, similarity: sp.csr_matrix) -> None:
        n_items = similarity.shape[0]
        if similarity.shape != (n_items, n_items) or user_items.shape[1] != n_items:
            raise ValueError(
                f"similarity {similarity.shape} does not fit {user_items.shape[1]} items"
            )
        self.user_items = user_items
        self.similarity = similarity

    @property
    def n_items(self) -> int:
        return self.similarity.shape[0]

    def score(self, users: np.ndarray, as_of: int) -> np.ndarray:
        return np.asarray((self.user_items[users] @ self.similarity).todense(), dtype=np.float32)
