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
from training.params import FactorParams, KnnParams, ModelParams


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
) -> Signals:
    """Fit every signal on ``events`` (which must all precede ``as_of``)."""
    history = PurchaseHistory.from_interactions(events)
    popularity = _distinct_customers(history.counts)
    trend_start = as_of - params.fusion.trend_days * SECONDS_PER_DAY
    trending = _distinct_customers(
        PurchaseHistory.from_interactions(events.between(trend_start, as_of)).counts
    )
    matrix = InteractionMatrix.from_interactions(events, params.factors.weighting, as_of=as_of)
    factors = fit_factors(
        matrix, params.factors, seed=params.seed, threads=threads, progress=progress
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
) -> FactorScorer:
    """ALS or BPR on the users x items matrix (the orientation implicit >= 0.5 expects)."""
    model: AlternatingLeastSquares | BayesianPersonalizedRanking
    # implicit parallelises itself; BLAS threads on top of that only oversubscribe the cores
    # (implicit checks this when the model is built, so the limit covers construction too).
    with threadpool_limits(1, "blas"):
        if params.algorithm == "als":
            model = AlternatingLeastSquares(
                factors=params.factors,
                regularization=params.regularization,
                iterations=params.iterations,
                random_state=seed,
                num_threads=threads,
            )
        else:
            model = BayesianPersonalizedRanking(
                factors=params.factors,
                learning_rate=params.learning_rate,
                regularization=params.regularization,
                iterations=params.iterations,
                random_state=seed,
                num_threads=threads,
            )
        model.fit(matrix.user_items, show_progress=progress)
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
