"""Fit the signals a model is made of: factors and neighbours through implicit, counts in numpy."""

from __future__ import annotations

from concurrent.futures import Executor, Future
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


@dataclass(frozen=True)
class CountedSignals:
    """What one stretch of history gives before any fit: the purchase history, popularity,
    trending, and the inputs of the factor and kNN fits. Only the factor fit can depend on
    another fit (its warm start), so the rest can run beside it."""

    as_of: int
    history: PurchaseHistory
    popularity: np.ndarray
    trending: np.ndarray
    matrix: InteractionMatrix  # the users' weighted purchases and feedback: the factors' input
    extra_rows: sp.csr_matrix | None  # anonymous visitors' feedback rows (item factors only)
    similarity_input: sp.csr_matrix | None  # the kNN's input, when more than the purchases
    confidence_scale: float

    def item_knn(self, params: KnnParams, threads: int = 0) -> ItemKnnScorer:
        purchases = InteractionMatrix(self.matrix.users, self.matrix.items, self.history.counts)
        return fit_item_knn(
            purchases, params, threads=threads, similarity_input=self.similarity_input
        )

    def signals(self, factors: FactorScorer, knn: ItemKnnScorer) -> Signals:
        return Signals(
            self.as_of, self.history, self.popularity, self.trending, factors, knn,
            self.confidence_scale,
        )  # fmt: skip


def count_signals(
    events: Interactions,
    params: ModelParams,
    *,
    as_of: int,
    feedback: Feedback | None = None,
) -> CountedSignals:
    """The counts of ``events`` (which must all precede ``as_of``) and the fits' inputs.

    ``feedback``: weighted events (clicks, carts, views) whose part before ``as_of`` joins the
    factor and similarity inputs, never the purchase history. A feedback weight w adds w times a
    typical purchase's confidence, the unit the session fold-in uses online.
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
    return CountedSignals(
        as_of, history, popularity, trending, matrix, extra, similarity_input, scale
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
    counted: CountedSignals | None = None,
    pool: Executor | None = None,
    knn: Future[ItemKnnScorer] | None = None,
) -> Signals:
    """Fit every signal on ``events`` (which must all precede ``as_of``).

    ``warm_start``: factors fitted on a prefix of the same log (same vocabularies) to start ALS
    from; see :func:`fit_factors`. ``feedback``: see :func:`count_signals`. ``counted``: what
    :func:`count_signals` already gave for these events. ``pool``: where the kNN is fitted,
    beside the factors (ALS leaves part of the cores idle), instead of before them. ``knn``:
    the kNN of ``counted``, already on its way (the caller started it earlier still).
    """
    if counted is None:
        counted = count_signals(events, params, as_of=as_of, feedback=feedback)
    elif counted.as_of != as_of:
        raise ValueError("the counted signals are of another moment than the fit's")
    if knn is None and pool is not None:
        knn = pool.submit(counted.item_knn, params.knn, threads)
    factors = fit_factors(
        counted.matrix,
        params.factors,
        seed=params.seed,
        threads=threads,
        progress=progress,
        warm_start=warm_start,
        extra_rows=counted.extra_rows,
        device=device,
    )
    return counted.signals(
        factors, counted.item_knn(params.knn, threads) if knn is None else knn.result()
    )


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
