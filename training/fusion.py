"""Learn the repeat-aware model's weights on a validation window from the training period only.

The window is the last ``validation_days`` before the moment of training: signals are fitted on
what came before it, and a logistic regression learns which (customer, item) features predict the
purchases inside it. The test period never takes part, so evaluation stays honest.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from engine.matrix import SECONDS_PER_DAY, Interactions
from engine.models import FEATURES, RepeatAwareScorer
from engine.scoring import merge_top_k, select_top_k
from training.device import Device
from training.events.feedback import Feedback
from training.fit import WARM_START_ITERATIONS, Signals, count_signals, fit_signals
from training.metrics import isin_sorted, ndcg_per_row
from training.params import ModelParams

# The signals behind the weights are fitted on what precedes the validation window: it must be
# most of the log, or they describe another, much smaller shop.
MIN_EARLIER_SHARE = 0.5
_USER_BLOCK = 1024  # customers per block: bounds their sparse kNN product and sampled cells
# Validation customers the weights are fitted on, at most (a seeded sample beyond): seven weights
# need far fewer than the ~200 cells per customer of this many, and the feature products and the
# regression would otherwise grow with the shop (a third of the training time at 1M lines). Down
# from 4,096: ndcg@10 over seeds 0-3, mean, 0.3771 -> 0.3778 on Online Retail and 0.0510 ->
# 0.0509 on Complete Journey (seeds alone move it by 0.002), 0.5253 -> 0.5271 on the generated
# 1.17M-line shop, where the weights' fit took 1.9 -> 0.5 s (measured beside another job).
MAX_VALIDATION_CUSTOMERS = 1024
# History cells the weights are fitted on, at most (a uniform sample beyond): 1,024 customers of
# a shop whose buyers keep a few hundred items each stay whole; a wholesale log whose customers
# bought thousands each would otherwise grow the regression's input without bound.
MAX_HISTORY_CELLS = 262_144
# The features of a customer's own history, whose weights :func:`history_scale` scales together.
HISTORY_FEATURES = ("log_count", "bought", "recency")
HISTORY_SCALES = 2.0 ** np.arange(-1.0, 3.25, 0.5)  # 0.5 ... 8, each step x1.41
# Scores held at a time when validation customers are ranked over the whole catalog (64 MB).
_SCORE_CELLS = 1 << 24


def fit_repeat_aware(
    events: Interactions,
    params: ModelParams,
    *,
    as_of: int,
    threads: int = 0,
    progress: bool = False,
    feedback: Feedback | None = None,
    device: Device = "auto",
    earlier_fit: Signals | None = None,
) -> tuple[Signals, dict[str, float]]:
    """Fit signals on all ``events`` and fusion weights on their final validation window.

    ``earlier_fit``: signals already fitted, with these parameters and feedback, on the events
    before the validation window (a hold-out evaluation's, whose cut is the window's start):
    the weights are fitted on them and the final fit starts from their factors, instead of
    fitting the validation signals again.
    """
    days = params.fusion.validation_days
    start = as_of - days * SECONDS_PER_DAY
    if earlier_fit is not None and earlier_fit.as_of != start:
        raise ValueError("the earlier fit is not of the events before the validation window")
    earlier = events.before(start)
    window = events.between(start, as_of)
    if len(earlier) < MIN_EARLIER_SHARE * len(events):
        span = (int(events.time.max()) - int(events.time.min())) / SECONDS_PER_DAY
        raise ValueError(
            f"only {len(earlier):,} of {len(events):,} events come before the {days}-day "
            f"validation window (the log spans {span:.1f} days): the signals the weights are "
            f"fitted on would be fitted on almost nothing; choose a shorter window "
            f"(--validation-days, e.g. {max(1, int(span / 4))})"
        )
    users = np.intersect1d(earlier.active_users(), window.active_users(), assume_unique=True)
    if len(users) == 0:
        raise ValueError(
            f"no customer bought both before and within the last {params.fusion.validation_days} "
            "days of the training data: the log is too short to fit the repeat-aware weights"
        )
    # Beside the ALS sweeps, which leave part of the cores idle: the final fit's counts and kNN
    # (they wait on nothing) and the validation fit's kNN, all beside the validation sweeps;
    # the weights beside the final sweeps (these start from the validation factors alone).
    # The train step, with the log's tables computed beside it too (training.pipeline): 1.17M
    # lines 4.9 -> 3.5 s, 10M 40.9 -> 31.0 s (one run each).
    with ThreadPoolExecutor(1, thread_name_prefix="signals") as pool:
        counted = pool.submit(count_signals, events, params, as_of=as_of, feedback=feedback)
        final_knn = pool.submit(lambda: counted.result().item_knn(params.knn, threads))
        validation = earlier_fit or fit_signals(
            earlier,
            _validation_params(params),
            as_of=start,
            threads=threads,
            progress=progress,
            feedback=feedback,
            device=device,
            pool=pool,
        )
        weights = pool.submit(
            fusion_weights, validation.scorer(), users, _bought(window), as_of=start, params=params
        )
        final = fit_signals(
            events,
            params,
            as_of=as_of,
            threads=threads,
            progress=progress,
            warm_start=validation.factors,
            feedback=feedback,
            device=device,
            counted=counted.result(),
            knn=final_knn,
        )
        return final, weights.result()


def _validation_params(params: ModelParams) -> ModelParams:
    """The validation fit's parameters: ALS sweeps shared with the final refit.

    The final refit continues from the validation fit's factors for
    :data:`~training.fit.WARM_START_ITERATIONS` sweeps, so the validation fit runs the rest: the
    two together run the model's ``iterations`` once, as a single fit would.
    """
    factors = params.factors
    if factors.algorithm != "als":
        return params
    sweeps = max(1, factors.iterations - WARM_START_ITERATIONS)
    return params.model_copy(update={"factors": factors.model_copy(update={"iterations": sweeps})})


def fusion_weights(
    scorer: RepeatAwareScorer,
    users: np.ndarray,
    bought: sp.csr_matrix,
    *,
    as_of: int,
    params: ModelParams,
) -> dict[str, float]:
    """The model's weights, for every trainer: :func:`fit_weights`' odds, the history's then
    scaled for ranking by :func:`history_scale` on the same sample of customers."""
    rng = np.random.default_rng(params.seed)
    sample = _customer_sample(users, rng)
    weights = fit_weights(scorer, sample, bought, as_of=as_of, params=params, rng=rng)
    multiplier = history_scale(scorer.with_weights(weights), sample, bought[sample], as_of)
    return {name: c * multiplier if name in HISTORY_FEATURES else c for name, c in weights.items()}


def _customer_sample(users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """At most :data:`MAX_VALIDATION_CUSTOMERS` of ``users``, a uniform sample beyond."""
    if len(users) <= MAX_VALIDATION_CUSTOMERS:
        return users
    return np.sort(rng.choice(users, MAX_VALIDATION_CUSTOMERS, replace=False))


def fit_weights(
    scorer: RepeatAwareScorer,
    users: np.ndarray,
    bought: sp.csr_matrix,
    *,
    as_of: int,
    params: ModelParams,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """Logistic regression of 'bought in the window' on the features of sampled pairs.

    Every purchased pair and every item of the customer's history is kept (beyond
    :data:`MAX_HISTORY_CELLS` of them, each with the same probability); every other
    (customer, item) cell is kept with probability ``negatives_per_user / n_items``,
    independently. The two strata are told apart by the ``bought`` feature alone, so sampling
    them at different rates only shifts that feature's weight, by the log of the rates' ratio,
    which is taken back exactly; the history's own cells, few per customer, are what teaches
    the weights to order the items a customer may buy again (a uniform sample holds about one
    of them per customer). Mean ndcg@10 over seeds 0-5 against uniform sampling: Online Retail
    0.3775 -> 0.3816, Complete Journey 0.0507 -> 0.0520, MovieLens 0.1672 -> 0.1730; on the
    generated 1.17M-line shop, where buying again is most of the hold-out, 0.5277 -> 0.5189.
    Features are computed for the sampled pairs only, so the cost follows the sample, not
    users x catalog.
    Beyond :data:`MAX_VALIDATION_CUSTOMERS` customers a seeded uniform sample of them is used;
    ``rng`` (default: seeded by ``params.seed``) draws it and the sampled cells.
    Weights are returned on the raw feature scale, ready for :class:`RepeatAwareScorer`.
    """
    # Imported here: scikit-learn costs every ``personalize`` command about a second to import
    # (``--help``, ``serve``), and only training needs it.
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(params.seed) if rng is None else rng
    users = _customer_sample(users, rng)
    n_items = scorer.n_items
    rate = min(params.fusion.negatives_per_user / n_items, 1.0)
    history_rate = min(MAX_HISTORY_CELLS / max(scorer.history.counts[users].nnz, 1), 1.0)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for block in np.array_split(users, -(-len(users) // _USER_BLOCK)):
        target = bought[block]
        target.sum_duplicates()
        positives = _cells(target)
        history = _cells(scorer.history.counts[block])
        history = history[~isin_sorted(history, positives)]
        sampled = _bernoulli_cells(rng, block.size * n_items, rate)
        sampled = sampled[~isin_sorted(sampled, np.sort(np.concatenate([positives, history])))]
        if history_rate < 1.0:
            history = history[rng.random(len(history)) < history_rate]
        cells = np.concatenate([positives, history, sampled])
        rows, items = np.divmod(cells, n_items)
        xs.append(scorer.pair_features(block, rows, items, as_of))
        ys.append(np.arange(len(cells)) < len(positives))
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    if y.all() or not y.any():
        raise ValueError("the validation window has no contrast between bought and not bought")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(solver="newton-cholesky", max_iter=1000).fit((x - mean) / scale, y)
    coef = model.coef_.ravel() / scale
    coef[FEATURES.index("bought")] += np.log(history_rate) - np.log(rate)  # the strata's rates
    return {name: float(c) for name, c in zip(FEATURES, coef, strict=True)}


def history_scale(
    scorer: RepeatAwareScorer, users: np.ndarray, truth: sp.csr_matrix, as_of: int, k: int = 10
) -> float:
    """The multiplier of the history features' weights (:data:`HISTORY_FEATURES`) under which
    ``scorer`` ranks what ``users`` bought (``truth``, one row each) best by ndcg@k, kept as
    near 1 as the validation sample can tell apart.

    The regression's log-loss rewards calibrated odds, not the order of a customer's list: on a
    shop where most purchases repeat earlier ones it weighs the history too little to rank as
    well as buying again does. Of :data:`HISTORY_SCALES`, the one nearest 1 whose mean ndcg is
    within one standard error (paired by customer) of the best is chosen: the best alone
    overshoots, the validation window favouring the history more than the hold-out does
    (Online Retail: 2.8-4 chosen, where the hold-out peaks near 1.4). Mean ndcg@10 of the
    default model over seeds 0-2, before -> after: Online Retail 0.3813 -> 0.3816, Complete
    Journey 0.0521 -> 0.0521, MovieLens 0.1756 (no scale but 1 chosen); the generated 1.17M-line
    shop 0.5188 -> 0.5464 (seeds 0-1), where buying again scores 0.5396.
    The other terms and the history's are computed once per block, and the items outside the
    history, whose scores no multiplier changes, are selected once: each multiplier then ranks
    their top k and the history's items alone (:func:`~engine.scoring.merge_top_k`; at 1.17M
    lines 183 -> 98 ms for 1,024 customers of 9.6k items, the same lists).
    """
    has_truth = np.diff(truth.indptr) > 0
    users, truth = users[has_truth], truth[has_truth]
    if len(users) < 2:
        return 1.0
    per_user = np.zeros((len(HISTORY_SCALES), len(users)))
    size = max(1, _SCORE_CELLS // max(scorer.n_items, 1))
    for lo in range(0, len(users), size):
        block = slice(lo, lo + size)
        scores = scorer.score_without_history(users[block], as_of)
        rows, cols, history = scorer.history_terms(users[block], as_of)
        own = sp.csr_matrix((history, (rows, cols)), shape=scores.shape)  # converted once
        history = own.data.copy()  # in the matrix's order, as are the cells below
        cells = (np.repeat(np.arange(own.shape[0]), np.diff(own.indptr)), own.indices)
        base = scores[cells]
        scores[cells] = -np.inf
        rest = select_top_k(scores, k)
        for i, scale in enumerate(HISTORY_SCALES):
            own.data = base + scale * history
            per_user[i, block] = ndcg_per_row(merge_top_k(rest, own)[0], truth[block])
    return _chosen_scale(per_user)


def _chosen_scale(per_user: np.ndarray) -> float:
    """Of :data:`HISTORY_SCALES`, whose ndcg per customer are the rows of ``per_user``, the one
    nearest 1 whose mean is within one standard error (paired by customer) of the best mean."""
    means = per_user.mean(axis=1)
    best = int(np.argmax(means))
    error = (per_user[best] - per_user).std(axis=1, ddof=1) / np.sqrt(per_user.shape[1])
    near = np.flatnonzero(means >= means[best] - error)
    return float(HISTORY_SCALES[near[np.argmin(np.abs(np.log(HISTORY_SCALES[near])))]])


def _cells(matrix: sp.csr_matrix) -> np.ndarray:
    """The stored entries of a canonical CSR matrix as flat cell numbers (row * columns +
    column), sorted."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    return rows * matrix.shape[1] + matrix.indices


def _bernoulli_cells(rng: np.random.Generator, n_cells: int, rate: float) -> np.ndarray:
    """Sorted indices of the successes of independent Bernoulli(``rate``) trials on
    ``range(n_cells)``: the gaps between successes are geometric, so the cost is the sample's."""
    if rate >= 1.0:
        return np.arange(n_cells)
    chunks = []
    last = -1
    while last < n_cells:
        draws = int(rate * (n_cells - last) * 1.05) + 64
        cells = last + np.cumsum(rng.geometric(rate, draws))
        chunks.append(cells[cells < n_cells])
        last = int(cells[-1])
    return np.concatenate(chunks)


def _bought(events: Interactions) -> sp.csr_matrix:
    shape = (len(events.users), len(events.items))
    return sp.csr_matrix(
        (np.ones(len(events), dtype=np.float32), (events.user, events.item)), shape=shape
    )
