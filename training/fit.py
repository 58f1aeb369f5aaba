"""Fit the signals a model is made of: factors and neighbours through implicit, counts in numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight, normalize
from threadpoolctl import threadpool_limits

from engine.matrix import (
    SECONDS_PER_DAY,
    InteractionMatrix,
    Interactions,
    PurchaseHistory,
)
from engine.models import FactorScorer, ItemKnnScorer, RepeatAwareScorer
from training.device import Device, resolve_device
from training.params import FactorParams, KnnParams, ModelParams

# ALS sweeps from warm-started factors: the added weeks move the factors little (measured on
# Online Retail: see fit_repeat_aware).
WARM_START_ITERATIONS = 5


@dataclass(frozen=True)
class Signals:
    """Everything fitted from one stretch of history, as of one moment."""

    as_of: int
    history: PurchaseHistory
    popularity: np.ndarray  # float32 distinct customers per item
    trending: np.ndarray  # float32 distinct customers per item in the trend window
    factors: FactorScorer
    knn: ItemKnnScorer
    confidence_scale: float  # median confidence of one (customer, item) cell: fold-in's unit

    def scorer(self, weights: dict[str, float] | None = None) -> RepeatAwareScorer:
        return RepeatAwareScorer(
            self.history, self.popularity, self.trending, self.factors, self.knn, weights
        )


def fit_signals(
    events: Interactions,
    params: ModelParams,
    *,
    as_of: int,
    threads: int = 0,
    progress: bool = False,
    warm_start: FactorScorer | None = None,
    device: Device = "auto",
) -> Signals:
    """Fit every signal on ``events`` (which must all precede ``as_of``).

    ``warm_start``: factors fitted on a prefix of the same log (same vocabularies) to start ALS
    from; see :func:`fit_factors`.
    """
    history = PurchaseHistory.from_interactions(events)
    popularity = _distinct_customers(history.counts)
    trend_start = as_of - params.fusion.trend_days * SECONDS_PER_DAY
    trending = _distinct_customers(
        PurchaseHistory.from_interactions(events.between(trend_start, as_of)).counts
    )
    matrix = InteractionMatrix.from_interactions(events, params.factors.weighting, as_of=as_of)
    factors = fit_factors(
        matrix,
        params.factors,
        seed=params.seed,
        threads=threads,
        progress=progress,
        warm_start=warm_start,
        device=device,
    )
    knn = fit_item_knn(
        InteractionMatrix(events.users, events.items, history.counts), params.knn, threads=threads
    )
    scale = float(np.median(matrix.user_items.data)) if matrix.user_items.nnz else 1.0
    return Signals(as_of, history, popularity, trending, factors, knn, scale)


def fit_factors(
    matrix: InteractionMatrix,
    params: FactorParams,
    *,
    seed: int = 0,
    threads: int = 0,
    progress: bool = False,
    warm_start: FactorScorer | None = None,
    device: Device = "auto",
) -> FactorScorer:
    """ALS or BPR on the users x items matrix (the orientation implicit >= 0.5 expects).

    ALS started from ``warm_start`` (factors of the same users and items, fitted on a prefix of
    this log) needs only :data:`WARM_START_ITERATIONS` sweeps: the final refit after the
    validation fit starts from that fit's factors instead of from noise. BPR ignores it.
    On ``device`` gpu (see :mod:`training.device`) the model is fitted by implicit's CUDA
    build and copied back, so the factors are the same float32 arrays either way.
    """
    gpu = resolve_device(device) == "gpu"
    model: AlternatingLeastSquares | BayesianPersonalizedRanking
    # implicit parallelises itself; BLAS threads on top of that only oversubscribe the cores
    # (implicit checks this when the model is built, so the limit covers construction too).
    with threadpool_limits(1, "blas"):
        if params.algorithm == "als":
            model = AlternatingLeastSquares(
                factors=params.factors,
                regularization=params.regularization,
                iterations=params.iterations
                if warm_start is None
                else min(params.iterations, WARM_START_ITERATIONS),
                random_state=seed,
                num_threads=threads,
            )
            if warm_start is not None:
                if warm_start.user_factors.shape != (matrix.shape[0], params.factors) or (
                    warm_start.item_factors.shape != (matrix.shape[1], params.factors)
                ):
                    raise ValueError("warm-start factors do not fit the matrix and parameters")
                # implicit solves in place and initialises only factors that are still None.
                model.user_factors = warm_start.user_factors.copy()
                model.item_factors = warm_start.item_factors.copy()
        else:
            model = BayesianPersonalizedRanking(
                factors=params.factors,
                learning_rate=params.learning_rate,
                regularization=params.regularization,
                iterations=params.iterations,
                random_state=seed,
                num_threads=threads,
            )
        # to_gpu copies warm-start factors to the device; to_cpu brings numpy arrays back.
        fitted = model.to_gpu() if gpu else model
        fitted.fit(matrix.user_items, show_progress=progress)
        if gpu:
            model = fitted.to_cpu()
    return FactorScorer(
        np.ascontiguousarray(model.user_factors, dtype=np.float32),
        np.ascontiguousarray(model.item_factors, dtype=np.float32),
    )


def fit_item_knn(
    matrix: InteractionMatrix, params: KnnParams, *, threads: int = 0
) -> ItemKnnScorer:
    """Item-item similarities (top ``neighbours`` per item) with implicit."""
    counts = matrix.user_items
    # The same weighting implicit's BM25/Cosine recommenders apply, done here so the kernel gets
    # CSR (implicit hands it COO and warns about its own conversion).
    if params.similarity == "bm25":
        weighted = bm25_weight(counts.T, K1=1.2, B=0.75).T
    else:
        weighted = normalize(counts.T).T
    model = ItemItemRecommender(K=params.neighbours, num_threads=threads)
    model.fit(sp.csr_matrix(weighted), show_progress=False)
    similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
    return ItemKnnScorer(matrix.user_items, similarity)


def _distinct_customers(counts: sp.csr_matrix) -> np.ndarray:
    return np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float32)
