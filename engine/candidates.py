"""Candidate retrieval for large catalogs: an inverted-file index over the item factors.

Ranking a visitor against every item reads every item's factors: past the caches (100k items of
64 factors) that pass alone is about half a millisecond. The index groups the items into lists
by k-means over their factors; a request scores the lists' centroids (a few hundred dot
products), keeps the items of the lists whose centroids score highest, and the recommender
ranks those, with the items the request's other signals point at, exactly. Approximate: an item
of a list not probed is not offered. ``python -m benchmarks.recommend_compute`` measures the
recall of the lists it serves against exact ranking.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.cluster import MiniBatchKMeans

from engine.kernels import item_dots

PROBE_SHARE = 0.05  # share of the lists probed per vector


class CandidateIndex:
    """The items grouped into lists by the k-means cluster of their factors."""

    def __init__(self, item_factors: np.ndarray, probe_share: float = PROBE_SHARE, seed: int = 0):
        """About sqrt(items) lists (k-means on mini-batches: 0.9 s at 71k items, once per model
        load); ``probe_share`` of them are probed per vector."""
        n = item_factors.shape[0]
        lists = max(1, min(n, round(math.sqrt(n))))
        kmeans = MiniBatchKMeans(n_clusters=lists, random_state=seed, n_init=1, batch_size=4096)
        labels = kmeans.fit_predict(item_factors)
        self.centroids = np.ascontiguousarray(kmeans.cluster_centers_, dtype=np.float32)
        self.items = np.argsort(labels, kind="stable").astype(np.int64)  # grouped by list
        self.indptr = np.searchsorted(labels[self.items], np.arange(lists + 1))
        self.probe = max(1, math.ceil(probe_share * lists))

    @property
    def lists(self) -> int:
        return self.centroids.shape[0]

    def probe_items(self, vector: np.ndarray, *, lowest: bool = False) -> np.ndarray:
        """The items of the lists whose centroids score highest against ``vector`` (with
        ``lowest``, the lowest: where the vector's smallest scores lie)."""
        scores = item_dots(self.centroids, vector.astype(np.float32, copy=False))
        if lowest:
            scores = -scores
        if self.probe < self.lists:
            picked = np.argpartition(-scores, self.probe - 1)[: self.probe]
        else:
            picked = np.arange(self.lists)
        return np.concatenate(
            [self.items[self.indptr[i] : self.indptr[i + 1]] for i in picked.tolist()]
        )
