"""Candidate retrieval for large catalogs: an inverted-file index over the item factors.

Ranking a visitor against every item reads every item's factors: past the caches (100k items of
64 factors) that pass alone is about half a millisecond. The trainer groups a large catalog's
items into lists by k-means over their factors (``training.candidate_lists``, stored in the
artifact and memory-mapped like the factors); a request scores the lists' centroids (a few
hundred dot products), keeps the items of the lists whose centroids score highest, and the
recommender ranks those, with the items the request's other signals point at, exactly.
Approximate: an item of a list not probed is not offered. ``python -m
benchmarks.recommend_compute --large`` measures the overlap of its pages with exact ranking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from engine.kernels import item_dots, row_members

PROBE_SHARE = 0.05  # share of the lists probed per vector
ARRAYS = ("candidate_centroids", "candidate_items", "candidate_indptr")


def check_lists(arrays: Mapping[str, np.ndarray], n_items: int, n_factors: int) -> bool:
    """Whether the artifact has candidate lists; ValueError if they do not fit its catalog (a
    list naming an item twice, or none, would serve some items twice and others never)."""
    present = [name for name in ARRAYS if name in arrays]
    if not present:
        return False
    if len(present) < len(ARRAYS):
        raise ValueError(f"candidate lists incomplete: only {present}")
    centroids, items, indptr = (arrays[name] for name in ARRAYS)
    lists = centroids.shape[0]
    if centroids.ndim != 2 or centroids.shape[1] != n_factors or lists < 1:
        raise ValueError(f"candidate_centroids is {centroids.shape}, expected (lists, {n_factors})")
    if indptr.shape != (lists + 1,) or indptr[0] != 0 or indptr[-1] != n_items:
        raise ValueError(f"candidate_indptr does not bound {lists} lists of {n_items} items")
    if np.any(np.diff(indptr) < 0):
        raise ValueError("candidate_indptr decreases")
    if items.shape != (n_items,) or np.any(np.bincount(items, minlength=n_items) != 1):
        raise ValueError("candidate_items does not hold every item exactly once")
    return True


class CandidateIndex:
    """The lists of a model's artifact, and how many of them a request probes."""

    def __init__(self, arrays: Mapping[str, np.ndarray], probe_share: float = PROBE_SHARE):
        """``arrays``: the artifact's, checked by :func:`check_lists`."""
        self.centroids, self.items, self.indptr = (
            np.asarray(arrays[name]).view(np.ndarray) for name in ARRAYS
        )
        self.probe = max(1, math.ceil(probe_share * self.lists))

    @property
    def lists(self) -> int:
        return self.centroids.shape[0]

    def probe_items(
        self, vector: np.ndarray, *, highest: bool = True, lowest: bool = False
    ) -> np.ndarray:
        """The items of the lists whose centroids score highest against ``vector`` and, with
        ``lowest``, of those that score lowest (where the vector's smallest scores lie), from
        one scoring of the centroids."""
        scores = item_dots(self.centroids, vector.astype(np.float32, copy=False))
        ends = [signed for signed, wanted in ((scores, highest), (-scores, lowest)) if wanted]
        picked = [self._best(signed) for signed in ends]
        return row_members(self.indptr, self.items, np.concatenate(picked))

    def _best(self, scores: np.ndarray) -> np.ndarray:
        if self.probe >= self.lists:
            return np.arange(self.lists)
        return np.argpartition(-scores, self.probe - 1)[: self.probe]
