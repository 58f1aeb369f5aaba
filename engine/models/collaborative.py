"""Collaborative signals: latent factors (ALS/BPR) and item-item neighbourhoods (kNN)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from engine.block_kernels import product_rows


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

    @property
    def product_dtype(self) -> np.dtype:
        """The dtype scipy's ``user_items @ similarity`` has: what its sums are rounded to."""
        return np.result_type(self.user_items.dtype, self.similarity.dtype)

    def score(self, users: np.ndarray, as_of: int) -> np.ndarray:
        """The users' rows of ``user_items @ similarity``, dense: summed into the block directly
        (:func:`~engine.block_kernels.product_rows`), the same values. 1,024 customers, against
        scipy's product then densified: 39.5 -> 11.4 ms on Online Retail, 21.3 -> 10.7 ms on the
        1.17M-line shop."""
        out = np.zeros((len(users), self.n_items), dtype=self.product_dtype)
        a, b = self.user_items, self.similarity
        product_rows(
            a.indptr, a.indices, a.data, np.asarray(users, dtype=np.int64),
            b.indptr, b.indices, b.data, out,
        )  # fmt: skip
        return out.astype(np.float32, copy=False)
