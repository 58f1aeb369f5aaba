"""The candidate lists of a large catalog, for the artifact (``engine.candidates`` serves them).

Fitted here, once per model, so that serving workers share them memory-mapped like the other
arrays: k-means in each worker at load cost about a second and, with scikit-learn imported,
about 57 MiB of private memory per worker.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.cluster import MiniBatchKMeans

from training.params import CandidateParams


def candidate_lists(
    item_factors: np.ndarray, params: CandidateParams, seed: int
) -> dict[str, np.ndarray]:
    """The items grouped into about sqrt(items) lists by k-means over their factors (on
    mini-batches: about 1 s at 100k items), as the artifact's ``candidate_*`` arrays; none
    below ``params.from_items`` items, where ranking every item is cheap."""
    n = item_factors.shape[0]
    if n < params.from_items:
        return {}
    lists = max(1, min(n, round(math.sqrt(n))))
    kmeans = MiniBatchKMeans(n_clusters=lists, random_state=seed, n_init=1, batch_size=4096)
    labels = kmeans.fit_predict(item_factors)
    items = np.argsort(labels, kind="stable").astype(np.int64)  # grouped by list, ascending
    return {
        "candidate_centroids": np.ascontiguousarray(kmeans.cluster_centers_, dtype=np.float32),
        "candidate_items": items,
        "candidate_indptr": np.searchsorted(labels[items], np.arange(lists + 1)).astype(np.int64),
    }
