"""Hold-out splitting, hold-out scoring and learning the fusion weights."""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import training.evaluate as evaluate_module
import training.fit as fit_module
import training.fusion as fusion_module
from engine.matrix import SECONDS_PER_DAY, InteractionMatrix, Interactions, PurchaseHistory
from engine.models import FEATURES, FactorScorer, RepeatAwareScorer
from engine.scoring import top_k
from engine.vocab import Vocabulary
from training.evaluate import MAX_TEST_CUSTOMERS, HoldoutSplit, score_holdout
from training.fit import (
    WARM_START_ITERATIONS,
    count_signals,
    fit_factors,
    fit_item_knn,
    fit_signals,
)
from training.fusion import (
    HISTORY_SCALES,
    _bernoulli_cells,
    fit_repeat_aware,
    fit_weights,
    history_scale,
)
from training.metrics import ranking_metrics
from training.params import FactorParams, FusionParams, KnnParams, ModelParams
from training.settings import TrainerSettings

T0 = 1_700_000_000
DAY = SECONDS_PER_DAY
G = 1 / math.log2(3)  # discount of rank 2


def _events(n_users: int, n_items: int, rows: Sequence[tuple[int, int, float]]) -> Interactions:
    """Events from (user, item, day offset from T0) rows, sorted by time."""
    ordered = sorted(rows, key=lambda r: r[2])
    return Interactions(
        Vocabulary([f"u{i}" for i in range(n_users)]),
        Vocabulary([f"i{i}" for i in range(n_items)]),
        np.array([r[0] for r in ordered], np.int32),
        np.array([r[1] for r in ordered], np.int32),
        np.array([T0 + int(r[2] * DAY) for r in ordered], np.int64),
        np.ones(len(ordered), np.float32),
    )


class FixedScorer:
    """The same scores for everyone; remembers the moments it was asked about."""

    def __init__(self, scores: list[float]) -> None:
        self._scores = np.array(scores, np.float32)
        self.as_of: list[int] = []

    @property
    def n_items(self) -> int:
        return len(self._scores)

    def score(self, users: np.ndarray, as_of: int) -> np.ndarray:
        self.as_of.append(as_of)
        return np.tile(self._scores, (len(users), 1))


# Before the cut (day 15): u0 bought 0, u1 bought 1, u2 bought 3.
# After it: u0 buys 0 again and 2 (new); u1 buys 1 again (nothing new); u3 is a newcomer.
HOLDOUT_ROWS = [
    (0, 0, 0),
    (1, 1, 1),
    (2, 3, 2),
    (0, 0, 20),
    (0, 2, 21),
    (1, 1, 22),
    (3, 4, 25),
]


@pytest.fixture
def split() -> HoldoutSplit:
    return HoldoutSplit.last_days(_events(4, 5, HOLDOUT_ROWS), days=10)


# --- HoldoutSplit ------------------------------------------------------------------------------


def test_last_days_cuts_days_before_the_second_after_the_last_purchase(
    split: HoldoutSplit,
) -> None:
    # A refit on the whole log is as of the last purchase's second + 1: its validation window
    # of as many days starts at the same cut.
    assert split.cut == T0 + 15 * DAY + 1
    assert (split.train.time < split.cut).all()
    assert (split.test.time >= split.cut).all()
    assert len(split.train) == 3
    assert len(split.test) == 4
    # Both halves keep the whole vocabularies, so indices agree.
    assert split.train.items is split.test.items
    assert split.summary() == {
        "cut": T0 + 15 * DAY + 1,
        "train_rows": 3,
        "test_rows": 4,
        "test_users": 2,
        "test_users_eligible": 2,
    }


def test_test_users_bought_in_both_periods(split: HoldoutSplit) -> None:
    # u2 only before the cut, u3 only after it.
    assert split.users.tolist() == [0, 1]


def test_past_the_maximum_a_seeded_sample_of_the_test_users_is_scored() -> None:
    rng = np.random.default_rng(4)
    rows = [(u, int(rng.integers(0, 6)), float(d)) for u in range(40) for d in (5.0, 35.0)]
    events = _events(40, 6, rows)
    everyone = HoldoutSplit.last_days(events, days=10)
    assert len(everyone.users) == everyone.eligible == 40
    assert HoldoutSplit.last_days(events, days=10, max_users=40).users.tolist() == list(range(40))
    sample = HoldoutSplit.last_days(events, days=10, max_users=15, seed=1)
    assert sample.eligible == 40
    assert len(sample.users) == 15 == len(np.unique(sample.users))
    assert np.all(np.diff(sample.users) > 0) and np.isin(sample.users, everyone.users).all()
    again = HoldoutSplit.last_days(events, days=10, max_users=15, seed=1)
    assert again.users.tolist() == sample.users.tolist()
    other = HoldoutSplit.last_days(events, days=10, max_users=15, seed=2)
    assert other.users.tolist() != sample.users.tolist()
    assert sample.summary()["test_users"] == 15
    assert sample.summary()["test_users_eligible"] == 40


def test_a_purchase_exactly_at_the_cut_is_tested() -> None:
    # Days 5 and 15 are 10 days apart, one second more than the 10 days up to the moment after
    # the last purchase: day 5 is trained on, the second after it tested.
    events = _events(1, 3, [(0, 0, 0), (0, 1, 5), (0, 2, 5 + 1 / DAY), (0, 0, 15)])
    split = HoldoutSplit.last_days(events, days=10)
    assert split.cut == T0 + 5 * DAY + 1
    assert split.train.item.tolist() == [0, 1]
    assert split.test.item.tolist() == [2, 0]


def test_no_customer_in_both_periods_is_an_error() -> None:
    events = _events(2, 2, [(0, 0, 0), (0, 1, 1), (1, 0, 20)])
    with pytest.raises(ValueError, match="no customer bought both"):
        HoldoutSplit.last_days(events, days=10)


def test_an_empty_log_is_an_error() -> None:
    with pytest.raises(ValueError, match="no purchases"):
        HoldoutSplit.last_days(_events(1, 1, []), days=10)


# --- score_holdout -----------------------------------------------------------------------------


def test_score_holdout_with_fixed_scores(split: HoldoutSplit) -> None:
    scorer = FixedScorer([5, 4, 3, 2, 1])  # everyone gets 0, 1, 2, 3, 4
    history = PurchaseHistory.from_interactions(split.train)
    m = score_holdout(scorer, split, history, k=2)
    # All items: both get [0, 1]. u0 bought {0, 2}: hit at rank 1 of 2 relevant -> 1/(1+G);
    # u1 bought {1}: hit at rank 2 -> G.
    assert m["users"] == 2
    assert m["ndcg@2"] == pytest.approx((1 / (1 + G) + G) / 2)
    assert m["precision@2"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["coverage@2"] == pytest.approx(2 / 5)
    # New items: only u0 bought something new (2); with 0 excluded the list is [1, 2].
    assert m["users_new"] == 1
    assert m["ndcg@2_new"] == pytest.approx(G)
    assert m["precision@2_new"] == pytest.approx(0.5)
    assert m["recall@2_new"] == pytest.approx(1.0)
    assert m["map@2_new"] == pytest.approx(0.5)
    assert m["coverage@2_new"] == pytest.approx(2 / 5)
    # Scored as of the cut: nothing from the test period leaks into "now".
    assert set(scorer.as_of) == {split.cut}


def test_score_holdout_rewards_the_right_list(split: HoldoutSplit) -> None:
    history = PurchaseHistory.from_interactions(split.train)
    good = score_holdout(FixedScorer([3, 2, 5, 0, 0]), split, history, k=3)  # 2, 0, 1
    bad = score_holdout(FixedScorer([0, 0, 0, 5, 4]), split, history, k=3)  # 3, 4, 0
    assert good["ndcg@3"] > bad["ndcg@3"]
    assert good["ndcg@3_new"] == pytest.approx(1.0)
    assert good["recall@3"] == pytest.approx(1.0)


def test_score_holdout_does_not_touch_the_history(split: HoldoutSplit) -> None:
    history = PurchaseHistory.from_interactions(split.train)
    before = history.counts.copy()
    score_holdout(FixedScorer([5, 4, 3, 2, 1]), split, history, k=2)
    assert (history.counts != before).nnz == 0


def test_score_holdout_is_the_same_in_any_block_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(5)
    rows = [(u, int(i), float(d)) for u in range(30) for i, d in zip(
        rng.integers(0, 12, 6), rng.uniform(0, 40, 6), strict=True
    )]  # fmt: skip
    split = HoldoutSplit.last_days(_events(30, 12, rows), days=10)
    history = PurchaseHistory.from_interactions(split.train)
    scorer = FixedScorer(rng.random(12).tolist())
    whole = score_holdout(scorer, split, history, k=4)
    monkeypatch.setattr(evaluate_module, "_USER_BLOCK", 4)
    assert score_holdout(scorer, split, history, k=4) == whole
    assert whole["users"] == len(split.users) > 4


# --- fusion ------------------------------------------------------------------------------------


def _planted(rng: np.random.Generator, n_users: int = 60, n_items: int = 80) -> RepeatAwareScorer:
    """Signals with random history, popularity and factors (no planted signal yet)."""
    rows = [
        (u, int(i), float(d))
        for u in range(n_users)
        for i, d in zip(rng.integers(0, n_items, 8), rng.uniform(0, 50, 8), strict=True)
    ]
    events = _events(n_users, n_items, rows)
    history = PurchaseHistory.from_interactions(events)
    popularity = np.bincount(history.counts.indices, minlength=n_items).astype(np.float32)
    trending = rng.integers(0, 5, n_items).astype(np.float32)
    factors = FactorScorer(
        rng.standard_normal((n_users, 6)).astype(np.float32),
        rng.standard_normal((n_items, 6)).astype(np.float32),
    )
    knn = fit_item_knn(
        InteractionMatrix(events.users, events.items, history.counts),
        KnnParams(neighbours=20),
        threads=1,
    )
    return RepeatAwareScorer(history, popularity, trending, factors, knn)


def _as_matrix(picked: np.ndarray, n_items: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(picked)), picked.shape[1])
    return sp.csr_matrix(
        (np.ones(picked.size, np.float32), (rows, picked.ravel())),
        shape=(len(picked), n_items),
    )


PARAMS = ModelParams(fusion=FusionParams(negatives_per_user=20), seed=3)
AS_OF = T0 + 50 * DAY


def test_fit_weights_learns_a_planted_factor_signal() -> None:
    scorer = _planted(np.random.default_rng(11))
    users = np.arange(60)
    # What is bought in the window is exactly each customer's 3 best items by factor score.
    planted = top_k(scorer.factors.score(users, AS_OF), 3)
    bought = _as_matrix(planted, scorer.n_items)
    weights = fit_weights(scorer, users, bought, as_of=AS_OF, params=PARAMS)
    assert list(weights) == list(FEATURES)
    assert weights["factor_score"] > 0

    # The learned model recovers most planted purchases (chance is 3 in 80), and it does so
    # through the factor weight: without it, the other (noise) weights find next to nothing.
    def found(w: dict[str, float]) -> float:
        learned = top_k(scorer.with_weights(w).score(users, AS_OF), 3)
        return float(
            np.mean([len(set(a) & set(b)) / 3 for a, b in zip(learned, planted, strict=True)])
        )

    assert found(weights) > 0.8
    assert found({**weights, "factor_score": 0.0}) < 0.3


def test_fit_weights_learns_a_planted_repeat_signal() -> None:
    scorer = _planted(np.random.default_rng(12))
    users = np.arange(60)
    # Customers re-buy exactly what they bought before, nothing else.
    bought = scorer.history.counts[users].copy()
    bought.data[:] = 1.0
    weights = fit_weights(scorer, users, bought, as_of=AS_OF, params=PARAMS)
    assert weights["bought"] + weights["log_count"] > 0
    assert weights["bought"] > abs(weights["factor_score"])


@pytest.mark.parametrize("history_cells", [1_000_000, 1_000])
def test_fit_weights_keeps_the_odds_between_history_and_the_rest(
    monkeypatch: pytest.MonkeyPatch, history_cells: int
) -> None:
    # Purchases drawn from a known model: log-odds -3 for any item, +2 for one the customer
    # bought before. Every history cell is sampled (or, past the cap, a third of them) and the
    # rest at 20 in 80: the fitted weights must still put history items 2 log-odds above the
    # others (uncorrected: 2 + log(1/4)).
    monkeypatch.setattr(fusion_module, "MAX_HISTORY_CELLS", history_cells)
    n_users, n_items = 400, 80
    scorer = _planted(np.random.default_rng(15), n_users, n_items)
    users = np.arange(n_users)
    owned = scorer.history.counts.toarray() > 0
    odds = np.where(owned, -1.0, -3.0)
    drawn = np.random.default_rng(16).random(owned.shape) < 1 / (1 + np.exp(-odds))
    weights = fit_weights(scorer, users, sp.csr_matrix(drawn), as_of=AS_OF, params=PARAMS)
    scores = scorer.with_weights(weights).score(users, AS_OF)
    gap = scores[owned].mean() - scores[~owned].mean()
    assert gap == pytest.approx(2.0, abs=0.4)


def _ndcg(scorer: RepeatAwareScorer, users: np.ndarray, truth: sp.csr_matrix) -> float:
    return ranking_metrics(top_k(scorer.score(users, AS_OF), 10), truth, scorer.n_items)["ndcg@10"]


def test_history_scale_lifts_a_history_the_weights_underrate() -> None:
    # Customers buy again exactly what they bought most, but the weights favour the (unrelated)
    # factor scores: a larger history multiplier ranks the purchases better, and is chosen.
    scorer = _planted(np.random.default_rng(21), n_users=200)
    users = np.arange(200)
    counts = scorer.history.counts[users]
    truth = counts.multiply(counts >= counts.max(axis=1).toarray()).tocsr()
    truth.data[:] = 1.0
    weak = scorer.with_weights({"factor_score": 1.0, "bought": 0.3, "log_count": 0.2})
    scale = history_scale(weak, users, truth, AS_OF)
    assert scale > 1.0
    lifted = scorer.with_weights(
        {"factor_score": 1.0, "bought": 0.3 * scale, "log_count": 0.2 * scale}
    )
    assert _ndcg(lifted, users, truth) > _ndcg(weak, users, truth) + 0.1


def test_history_scale_is_1_when_the_history_changes_no_list() -> None:
    # History weights of 0: every multiplier ranks alike, and the one nearest 1 is kept.
    scorer = _planted(np.random.default_rng(22))
    users = np.arange(60)
    truth = _as_matrix(top_k(scorer.factors.score(users, AS_OF), 3), scorer.n_items)
    assert history_scale(scorer.with_weights({"factor_score": 1.0}), users, truth, AS_OF) == 1.0
    assert 1.0 in HISTORY_SCALES


def test_history_scale_scores_every_customer_in_any_block_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scorer = _planted(np.random.default_rng(25), n_users=50)
    users = np.arange(50)
    truth = _as_matrix(top_k(scorer.factors.score(users, AS_OF), 3), scorer.n_items)
    weighted = scorer.with_weights({"factor_score": 1.0, "bought": 0.5, "log_count": 0.3})
    seen: list[np.ndarray] = []
    choose = fusion_module._chosen_scale

    def recorded(per_user: np.ndarray) -> float:
        seen.append(per_user)
        return choose(per_user)

    monkeypatch.setattr(fusion_module, "_chosen_scale", recorded)
    history_scale(weighted, users, truth, AS_OF)  # one block
    monkeypatch.setattr(
        fusion_module, "_SCORE_CELLS", 7 * scorer.n_items
    )  # blocks of 7, the last of 1
    history_scale(weighted, users, truth, AS_OF)
    whole, blocks = seen
    assert whole.shape == (len(HISTORY_SCALES), 50)
    np.testing.assert_allclose(blocks, whole, atol=1e-12)
    assert whole.any()  # not a comparison of empty lists


def test_the_scale_nearest_1_within_one_standard_error_of_the_best_is_chosen() -> None:
    one = int(np.flatnonzero(HISTORY_SCALES == 1.0)[0])
    rng = np.random.default_rng(24)
    per_user = rng.uniform(0.2, 0.4, (len(HISTORY_SCALES), 200))
    per_user[:] = per_user[one]  # every scale ranks alike ...
    # ... but the last: better for every customer by 0.05 (far beyond its error of 0) ...
    per_user[-1] += 0.05
    assert fusion_module._chosen_scale(per_user) == HISTORY_SCALES[-1]
    # ... or better on average by less than the noise of customer-to-customer differences.
    # Here: 0.2 better for 101 customers, 0.2 worse for 99 (0.002 on average; error 0.014).
    per_user[-1] = per_user[one] + np.where(np.arange(200) < 101, 0.2, -0.2)
    assert per_user[-1].mean() > per_user[one].mean()
    assert fusion_module._chosen_scale(per_user) == 1.0


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_fit_repeat_aware_scales_the_history_weights_by_history_scale(
    scale: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(9)
    rows = [(u, int(i), float(d)) for u in range(30) for i, d in zip(
        rng.integers(0, 20, 8), rng.uniform(0, 60, 8), strict=True
    )]  # fmt: skip
    params = ModelParams(factors=FactorParams(factors=4, iterations=6), seed=3)
    fit = {}
    for multiplier in (1.0, scale):
        monkeypatch.setattr(fusion_module, "history_scale", lambda *_, m=multiplier: m)
        _, fit[multiplier] = fit_repeat_aware(
            _events(30, 20, rows), params, as_of=T0 + 61 * DAY, threads=1
        )
    for name, weight in fit[1.0].items():
        expected = weight * scale if name in fusion_module.HISTORY_FEATURES else weight
        assert fit[scale][name] == pytest.approx(expected)


def test_fit_weights_is_deterministic_for_a_seed() -> None:
    scorer = _planted(np.random.default_rng(11))
    users = np.arange(60)
    bought = _as_matrix(top_k(scorer.factors.score(users, AS_OF), 3), scorer.n_items)
    first = fit_weights(scorer, users, bought, as_of=AS_OF, params=PARAMS)
    assert fit_weights(scorer, users, bought, as_of=AS_OF, params=PARAMS) == first


def test_fit_weights_beyond_the_customer_cap_fits_a_seeded_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scorer = _planted(np.random.default_rng(11))
    users = np.arange(60)
    bought = _as_matrix(top_k(scorer.factors.score(users, AS_OF), 3), scorer.n_items)
    whole = fit_weights(scorer, users, bought, as_of=AS_OF, params=PARAMS)
    monkeypatch.setattr(fusion_module, "MAX_VALIDATION_CUSTOMERS", 40)
    sampled = fit_weights(scorer, users, bought, as_of=AS_OF, params=PARAMS)
    # A sample: other weights than all 60 customers give, the same ones for the same seed, and
    # still the planted signal.
    assert sampled != whole
    assert fit_weights(scorer, users, bought, as_of=AS_OF, params=PARAMS) == sampled
    assert sampled["factor_score"] > 0


def test_pair_features_are_the_scorers_features_at_those_pairs() -> None:
    # fit_weights computes features per sampled pair; serving computes them per user x catalog
    # block: both must give the same values, or the weights would be fitted on other features.
    scorer = _planted(np.random.default_rng(14))
    users = np.array([3, 5, 8, 13, 21, 34, 55])
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(users), 300)
    items = rng.integers(0, scorer.n_items, 300)
    dense = scorer.features(users, AS_OF)[rows, items]
    np.testing.assert_allclose(scorer.pair_features(users, rows, items, AS_OF), dense, atol=1e-5)


def test_bernoulli_cells_keep_each_cell_independently_at_the_rate() -> None:
    rng = np.random.default_rng(7)
    hits = np.zeros(50, dtype=np.int64)
    for _ in range(4000):
        cells = _bernoulli_cells(rng, 50, 0.1)
        assert (np.diff(cells) > 0).all() and ((cells >= 0) & (cells < 50)).all()
        hits[cells] += 1
    # 400 expected per cell, standard deviation 19: uniform over cells, right on the rate.
    assert np.abs(hits - 400).max() < 100
    assert abs(hits.mean() - 400) < 10
    assert _bernoulli_cells(rng, 5, 1.0).tolist() == [0, 1, 2, 3, 4]


def test_fit_weights_without_contrast_is_an_error() -> None:
    scorer = _planted(np.random.default_rng(13), n_users=10, n_items=15)
    users = np.arange(10)
    nothing = sp.csr_matrix((10, 15), dtype=np.float32)
    with pytest.raises(ValueError, match="no contrast"):
        fit_weights(scorer, users, nothing, as_of=AS_OF, params=PARAMS)
    # Everything bought (and every pair sampled): no contrast either.
    everything = sp.csr_matrix(np.ones((10, 15), np.float32))
    with pytest.raises(ValueError, match="no contrast"):
        fit_weights(scorer, users, everything, as_of=AS_OF, params=PARAMS)


def test_fit_repeat_aware_needs_customers_in_the_validation_window() -> None:
    events = _events(2, 3, [(0, 0, 0), (0, 1, 1), (1, 2, 45)])
    with pytest.raises(ValueError, match="too short"):
        fit_repeat_aware(events, PARAMS, as_of=T0 + 50 * DAY, threads=1)


def test_fit_repeat_aware_refuses_a_window_longer_than_most_of_the_log() -> None:
    # A week of clicks with a few stray old events: a 30-day window would leave the weights
    # fitted on signals of the strays alone (they came out all zero, silently).
    rows = [(0, 0, 0.0), (1, 1, 0.5)] + [(u % 5, u % 4, 40 + u / 10) for u in range(30)]
    events = _events(5, 4, rows)
    with pytest.raises(ValueError, match="2 of 32 events come before the 30-day validation"):
        fit_repeat_aware(events, PARAMS, as_of=T0 + 44 * DAY, threads=1)


@pytest.mark.parametrize("iterations", [15, 4, 2])
def test_validation_and_final_fits_share_the_models_als_sweeps(
    iterations: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The final refit continues from the validation fit's factors, so the two together run the
    # model's sweeps once, as the single fit a plain trainer would run (at least one each).
    from implicit.cpu.als import AlternatingLeastSquares

    sweeps: list[int] = []
    fit = AlternatingLeastSquares.fit

    def counted(self: AlternatingLeastSquares, *args: object, **kwargs: object) -> None:
        sweeps.append(self.iterations)
        fit(self, *args, **kwargs)

    monkeypatch.setattr(AlternatingLeastSquares, "fit", counted)
    rng = np.random.default_rng(5)
    rows = [(u, int(rng.integers(0, 8)), float(rng.uniform(0, 60))) for u in range(12)
            for _ in range(6)]  # fmt: skip
    params = ModelParams(factors=FactorParams(factors=4, iterations=iterations))
    fit_repeat_aware(_events(12, 8, rows), params, as_of=T0 + 61 * DAY, threads=1)
    assert len(sweeps) == 2
    assert sweeps[0] == max(1, iterations - WARM_START_ITERATIONS)
    assert sweeps[1] == min(iterations, WARM_START_ITERATIONS)
    assert sum(sweeps) == max(iterations, 1 + min(iterations, WARM_START_ITERATIONS))


def test_an_earlier_fit_of_the_events_before_the_window_stands_for_the_validation_fit() -> None:
    # A refit after a hold-out evaluation whose cut starts its validation window passes that
    # evaluation's fit: the weights and the final signals must be those of fitting it again.
    rng = np.random.default_rng(9)
    rows = [(u, int(i), float(d)) for u in range(30) for i, d in zip(
        rng.integers(0, 20, 8), rng.uniform(0, 60, 8), strict=True
    )]  # fmt: skip
    events = _events(30, 20, rows)
    params = ModelParams(factors=FactorParams(factors=4, iterations=6), seed=3)
    as_of = T0 + 61 * DAY
    start = as_of - params.fusion.validation_days * DAY
    earlier = fit_signals(
        events.before(start), fusion_module._validation_params(params), as_of=start, threads=1
    )
    again, weights = fit_repeat_aware(events, params, as_of=as_of, threads=1)
    reused, reused_weights = fit_repeat_aware(
        events, params, as_of=as_of, threads=1, earlier_fit=earlier
    )
    assert reused_weights == weights
    np.testing.assert_array_equal(reused.factors.item_factors, again.factors.item_factors)
    np.testing.assert_array_equal(reused.factors.user_factors, again.factors.user_factors)
    with pytest.raises(ValueError, match="before the validation window"):
        fit_repeat_aware(events, params, as_of=as_of + DAY, threads=1, earlier_fit=earlier)


def test_signals_fitted_beside_other_work_are_the_signals_fitted_in_turn() -> None:
    # Training counts the final fit's signals and fits the kNN on a background thread while ALS
    # runs: every array must be what the plain, one-step-after-another fit gives.
    rng = np.random.default_rng(8)
    rows = [(u, int(i), float(d)) for u in range(30) for i, d in zip(
        rng.integers(0, 20, 8), rng.uniform(0, 60, 8), strict=True
    )]  # fmt: skip
    events = _events(30, 20, rows)
    params = ModelParams(factors=FactorParams(factors=4, iterations=3), seed=2)
    as_of = T0 + 61 * DAY
    plain = fit_signals(events, params, as_of=as_of, threads=1)
    with ThreadPoolExecutor(1) as pool:
        counted = pool.submit(count_signals, events, params, as_of=as_of)
        knn = pool.submit(lambda: counted.result().item_knn(params.knn, 1))
        fitted = [
            fit_signals(
                events, params, as_of=as_of, threads=1, counted=counted.result(), pool=pool
            ),
            fit_signals(events, params, as_of=as_of, threads=1, counted=counted.result(), knn=knn),
        ]
    for beside in fitted:
        for a, b in [
            (plain.factors.item_factors, beside.factors.item_factors),
            (plain.factors.user_factors, beside.factors.user_factors),
            (plain.popularity, beside.popularity),
            (plain.trending, beside.trending),
        ]:
            np.testing.assert_array_equal(a, b)
        assert (plain.knn.similarity != beside.knn.similarity).nnz == 0
        assert (plain.history.counts != beside.history.counts).nnz == 0
        assert plain.confidence_scale == beside.confidence_scale


def test_both_fits_knn_are_fitted_before_the_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    # The final fit's kNN waits on nothing but its counts: fitted beside the validation sweeps,
    # it does not queue behind the weights on the background thread and hold up the end of the
    # fit (at 1.17M lines the weights take as long as the final sweeps beside them).
    calls: list[str] = []
    knn, weights = fit_module.fit_item_knn, fusion_module.fusion_weights

    def record(name: str, fn: Any) -> Any:
        return lambda *args, **kwargs: (calls.append(name), fn(*args, **kwargs))[1]

    monkeypatch.setattr(fit_module, "fit_item_knn", record("knn", knn))
    monkeypatch.setattr(fusion_module, "fusion_weights", record("weights", weights))
    rng = np.random.default_rng(8)
    rows = [(u, int(i), float(d)) for u in range(30) for i, d in zip(
        rng.integers(0, 20, 8), rng.uniform(0, 60, 8), strict=True
    )]  # fmt: skip
    params = ModelParams(factors=FactorParams(factors=4, iterations=4), seed=2)
    fit_repeat_aware(_events(30, 20, rows), params, as_of=T0 + 61 * DAY, threads=1)
    assert calls == ["knn", "knn", "weights"]


def test_signals_counted_for_another_moment_are_refused() -> None:
    events = _events(3, 3, [(0, 0, 1.0), (1, 1, 2.0), (2, 2, 3.0)])
    params = ModelParams(factors=FactorParams(factors=2, iterations=1))
    counted = count_signals(events, params, as_of=T0 + 10 * DAY)
    with pytest.raises(ValueError, match="another moment"):
        fit_signals(events, params, as_of=T0 + 11 * DAY, threads=1, counted=counted)


def test_signals_fit_when_nothing_sold_in_the_trend_window() -> None:
    # A shop closed for the last month before the cut: trending is all zero, not a crash.
    rng = np.random.default_rng(4)
    rows = [(u, int(i), float(d)) for u in range(10) for i, d in zip(
        rng.integers(0, 8, 5), rng.uniform(0, 20, 5), strict=True
    )]  # fmt: skip
    events = _events(10, 8, rows)
    params = ModelParams(factors=FactorParams(factors=4, iterations=2), fusion=FusionParams())
    signals = fit_signals(events, params, as_of=T0 + 60 * DAY, threads=1)
    assert signals.trending.tolist() == [0.0] * 8
    assert signals.popularity.sum() == signals.history.counts.nnz


def test_trending_counts_distinct_customers_inside_the_trend_window() -> None:
    # Item 0: customer 0 twice and customer 1 inside the 30 days, customer 2 before them;
    # item 1: customer 2 inside; item 2: only before the window.
    rows = [(2, 0, 1.0), (0, 2, 2.0), (0, 0, 40.0), (0, 0, 41.0), (1, 0, 45.0), (2, 1, 50.0)]
    events = _events(3, 3, rows)
    params = ModelParams(factors=FactorParams(factors=4, iterations=2), fusion=FusionParams())
    signals = fit_signals(events, params, as_of=T0 + 60 * DAY, threads=1)
    assert signals.trending.tolist() == [2.0, 1.0, 0.0]
    assert signals.popularity.tolist() == [3.0, 1.0, 1.0]


def test_warm_started_als_continues_from_the_given_factors() -> None:
    rng = np.random.default_rng(6)
    rows = [(u, int(i), float(d)) for u in range(20) for i, d in zip(
        rng.integers(0, 15, 6), rng.uniform(0, 40, 6), strict=True
    )]  # fmt: skip
    matrix = InteractionMatrix.from_interactions(_events(20, 15, rows))
    params = FactorParams(factors=4, iterations=15, regularization=0.1)
    cold = fit_factors(matrix, params, threads=1)
    warm = fit_factors(matrix, params, threads=1, warm_start=cold)
    # Already converged: a few more sweeps from the fitted factors barely move the scores.
    users = np.arange(20)
    np.testing.assert_allclose(warm.score(users, 0), cold.score(users, 0), atol=0.05)
    with pytest.raises(ValueError, match="do not fit"):
        fit_factors(matrix, params.model_copy(update={"factors": 3}), warm_start=cold)


def test_zero_test_customers_scores_them_all(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--test-customers 0`` (or PERSONALIZE_TEST_CUSTOMERS=0) lifts the cap: None reaches
    the evaluation, which then samples nobody out."""
    assert TrainerSettings().test_customer_limit == MAX_TEST_CUSTOMERS
    assert TrainerSettings(test_customers=300).test_customer_limit == 300
    monkeypatch.setenv("PERSONALIZE_TEST_CUSTOMERS", "0")
    assert TrainerSettings().test_customer_limit is None
