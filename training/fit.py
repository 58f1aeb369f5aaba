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
    Weighting,
    weigh,
)
from engine.models import FactorScorer, ItemKnnScorer, RepeatAwareScorer
from training.device import Device, resolve_device
from training.events.feedback import Feedback
from training.params import FactorParams, KnnParams, ModelParams

# ALS sweeps from warm-started factors: the added weeks move the factors little. Measured on
# Online Retail (ndcg@10 of the default model, mean over seeds 0-3): 0.3780 after 5 sweeps,
# 0.3776 after 3, 0.3770 after 2; seeds alone move it by 0.002. The validation fit runs the
# model's other sweeps (training.fusion): 0.3771 with 12 + 3 against 0.3776 with 15 + 3.
WARM_START_ITERATIONS = 3


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
    feedback: Feedback | None = None,
    device: Device = "auto",
) -> Signals:
    """Fit every signal on ``events`` (which must all precede ``as_of``).

    ``warm_start``: factors fitted on a prefix of the same log (same vocabularies) to start ALS
    from; see :func:`fit_factors`. ``feedback``: weighted events (clicks, carts, views) whose
    part before ``as_of`` joins the factor and similarity inputs, never the purchase history.
    A feedback weight w adds w times a typical purchase's confidence, the unit the session
    fold-in uses online.
    """
    history = PurchaseHistory.from_interactions(events)
    popularity = _distinct_customers(history.counts)
    trend_start = as_of - params.fusion.trend_days * SECONDS_PER_DAY
    trending = _distinct_customers(weigh(events.between(trend_start, as_of), Weighting.COUNT))
    matrix = InteractionMatrix.from_interactions(
        events, params.factors.weighting, as_of=as_of, counts=history.counts
    )
    scale = float(np.median(matrix.user_items.data)) if matrix.user_items.nnz else 1.0
    extra = similarity_input = None
    if feedback is not None:
        weighted = feedback.matrix(as_of)
        own, extra = weighted[: feedback.n_users], weighted[feedback.n_users :] * scale
        matrix = InteractionMatrix(events.users, events.items, matrix.user_items + own * scale)
        similarity_input = sp.vstack([history.counts, sp.csr_matrix(extra.shape)]) + weighted
    factors = fit_factors(
        matrix,
        params.factors,
        seed=params.seed,
        threads=threads,
        progress=progress,
        warm_start=warm_start,
        extra_rows=extra,
        device=device,
    )
    knn = fit_item_knn(
        InteractionMatrix(events.users, events.items, history.counts),
        params.knn,
        threads=threads,
        similarity_input=similarity_input,
    )
    return Signals(as_of, history, popularity, trending, factors, knn, scale)


def fit_factors(
    matrix: InteractionMatrix,
    params: FactorParams,
    *,
    seed: int = 0,
    threads: int = 0,
    progress: bool = False,
    warm_start: FactorScorer | None = None,
    extra_rows: sp.csr_matrix | None = None,
    device: Device = "auto",
) -> FactorScorer:
    """ALS or BPR on the users x items matrix (the orientation implicit >= 0.5 expects).

    ``extra_rows``: other people's rows (anonymous visitors) fitted below the users and then
    dropped: they shape the item factors only. Warm-started, they start from zero (ALS solves
    the user side first, from the item factors).

    ALS started from ``warm_start`` (factors of the same users and items, fitted on a prefix of
    this log) needs only :data:`WARM_START_ITERATIONS` sweeps: the final refit after the
    validation fit starts from that fit's factors instead of from noise. BPR ignores it.
    On ``device`` gpu (see :mod:`training.device`) the model is fitted by implicit's CUDA
    build and copied back, so the factors are the same float32 arrays either way.
    """
    gpu = resolve_device(device) == "gpu"
    model: AlternatingLeastSquares | BayesianPersonalizedRanking
    n_extra = 0 if extra_rows is None else extra_rows.shape[0]
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
                model.user_factors = np.vstack(
                    [warm_start.user_factors, np.zeros((n_extra, params.factors), np.float32)]
                )
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
        user_items = matrix.user_items
        if n_extra:
            user_items = sp.vstack([user_items, extra_rows], format="csr", dtype=np.float32)
        # to_gpu copies warm-start factors to the device; to_cpu brings numpy arrays back.
        fitted = model.to_gpu() if gpu else model
        fitted.fit(user_items, show_progress=progress)
        if gpu:
            model = fitted.to_cpu()
    return FactorScorer(
        np.ascontiguousarray(model.user_factors[: matrix.shape[0]], dtype=np.float32),
        np.ascontiguousarray(model.item_factors, dtype=np.float32),
    )


def fit_item_knn(
    matrix: InteractionMatrix,
    params: KnnParams,
    *,
    threads: int = 0,
    similarity_input: sp.csr_matrix | None = None,
) -> ItemKnnScorer:
    """Item-item similarities (top ``neighbours`` per item) with implicit.

    ``similarity_input``: what the similarities are learned from when it is more than the
    users' purchases (weighted events, visitors' rows); users are still scored on their own.
    """
    counts = sp.csr_matrix(matrix.user_items if similarity_input is None else similarity_input)
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
