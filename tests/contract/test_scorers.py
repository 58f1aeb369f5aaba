"""One contract every scorer meets, plus what each one must get right on a checkerboard.

The data set follows implicit's own tests: two disjoint groups of customers, each buying only
from its own group of items, so any collaborative model worth the name must recommend a
customer's own group before the other one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

from engine.matrix import SECONDS_PER_DAY, InteractionMatrix, Interactions, PurchaseHistory
from engine.models import (
    FEATURES,
    BuyAgainScorer,
    FactorScorer,
    ItemKnnScorer,
    PopularityScorer,
    RepeatAwareScorer,
    Scorer,
)
from engine.vocab import Vocabulary
from training.fit import fit_factors, fit_item_knn
from training.params import FactorParams, KnnParams

N_USERS = 20
N_ITEMS = 20
GROUP = 10
T0 = 1_700_000_000
AS_OF = T0 + 60 * SECONDS_PER_DAY

WEIGHTS = {
    "log_count": 1.5,
    "bought": 0.75,
    "recency": 0.5,
    "log_popularity": 0.25,
    "log_trending": -0.125,
    "factor_score": 2.0,
    "knn_score": 0.3,
}


def _group(index: int) -> int:
    return index // GROUP


def held_out(user: int) -> list[int]:
    """Two items of the user's own group the user never bought."""
    base, j = _group(user) * GROUP, user % GROUP
    return [base + j, base + (j + 1) % GROUP]


def own_bought(user: int) -> list[int]:
    base = _group(user) * GROUP
    return [base + i for i in range(GROUP) if base + i not in held_out(user)]


def _checkerboard() -> Interactions:
    """Users 0-9 buy items 0-9, users 10-19 buy items 10-19, two items held out per user.

    Item ``base + i`` is bought ``1 + (i + user) % 3`` times, one purchase a day, so counts and
    recency differ between a customer's items.
    """
    rows: list[tuple[int, int, int]] = []
    for user in range(N_USERS):
        for item in own_bought(user):
            for n in range(1 + (item + user) % 3):
                rows.append((T0 + (user + 3 * item + 7 * n) * SECONDS_PER_DAY // 4, user, item))
    rows.sort()
    columns = np.array(rows, dtype=np.int64)
    return Interactions(
        Vocabulary([f"u{u:02d}" for u in range(N_USERS)]),
        Vocabulary([f"i{i:02d}" for i in range(N_ITEMS)]),
        columns[:, 1].astype(np.int32),
        columns[:, 2].astype(np.int32),
        columns[:, 0],
        np.ones(len(rows), np.float32),
    )


@dataclass(frozen=True)
class Board:
    events: Interactions
    history: PurchaseHistory
    popularity: np.ndarray
    trending: np.ndarray
    factors: FactorScorer  # ALS
    bpr: FactorScorer
    knn: ItemKnnScorer


def _distinct(counts: sp.csr_matrix) -> np.ndarray:
    return np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float32)


def _fit_factors(events: Interactions, algorithm: str = "als") -> FactorScorer:
    # Few dimensions for 20 customers: with as many dimensions as items ALS can memorise the
    # held-out zeros. The weighting is the production default (BM25).
    params = FactorParams.model_validate(
        {
            "algorithm": algorithm,
            "factors": 4,
            "regularization": 0.1,
            "iterations": 20 if algorithm == "als" else 200,
            "learning_rate": 0.05,
        }
    )
    matrix = InteractionMatrix.from_interactions(events, params.weighting)
    return fit_factors(matrix, params, seed=7, threads=1)


@pytest.fixture(scope="module")
def board() -> Board:
    events = _checkerboard()
    history = PurchaseHistory.from_interactions(events)
    recent = PurchaseHistory.from_interactions(events.between(T0 + 15 * SECONDS_PER_DAY, AS_OF))
    knn = fit_item_knn(
        InteractionMatrix(events.users, events.items, history.counts),
        KnnParams(neighbours=N_ITEMS),
        threads=1,
    )
    return Board(
        events,
        history,
        _distinct(history.counts),
        _distinct(recent.counts),
        _fit_factors(events),
        _fit_factors(events, "bpr"),
        knn,
    )


def _repeat_aware(b: Board) -> RepeatAwareScorer:
    return RepeatAwareScorer(b.history, b.popularity, b.trending, b.factors, b.knn, WEIGHTS)


BUILDERS: dict[str, Callable[[Board], Scorer]] = {
    "popularity": lambda b: PopularityScorer(b.popularity),
    "buy_again": lambda b: BuyAgainScorer(b.history, b.popularity),
    "factors": lambda b: b.factors,
    "factors_bpr": lambda b: b.bpr,
    "item_knn": lambda b: b.knn,
    "repeat_aware": _repeat_aware,
}


@pytest.fixture(params=sorted(BUILDERS))
def scorer(request: pytest.FixtureRequest, board: Board) -> Scorer:
    return BUILDERS[request.param](board)


# --- the contract ------------------------------------------------------------------------------


def test_scores_every_item_for_every_user(scorer: Scorer) -> None:
    assert scorer.n_items == N_ITEMS
    users = np.arange(N_USERS)
    scores = scorer.score(users, AS_OF)
    assert scores.shape == (N_USERS, N_ITEMS)
    assert np.issubdtype(scores.dtype, np.floating)
    assert np.isfinite(scores).all()


def test_scoring_is_deterministic(scorer: Scorer) -> None:
    users = np.array([3, 14, 0, 19])
    np.testing.assert_array_equal(scorer.score(users, AS_OF), scorer.score(users, AS_OF))


def test_a_block_equals_users_one_at_a_time(scorer: Scorer) -> None:
    users = np.array([17, 2, 9, 10, 2, 0])  # any order, repeats allowed
    block = scorer.score(users, AS_OF)
    single = np.concatenate([scorer.score(np.array([u]), AS_OF) for u in users])
    np.testing.assert_allclose(block, single, rtol=1e-5, atol=1e-6)


def test_returned_scores_are_the_callers_to_modify(scorer: Scorer) -> None:
    # top_k writes -inf into the block it is given; that must never reach the model.
    users = np.array([1, 12])
    before = scorer.score(users, AS_OF)
    scorer.score(users, AS_OF)[:] = -np.inf
    np.testing.assert_array_equal(scorer.score(users, AS_OF), before)


def test_an_empty_block_scores_nothing(scorer: Scorer) -> None:
    assert scorer.score(np.array([], dtype=np.int64), AS_OF).shape == (0, N_ITEMS)


# --- behaviour ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["factors", "factors_bpr", "item_knn"])
def test_collaborative_scorers_rank_the_own_group_first(board: Board, name: str) -> None:
    scorer = BUILDERS[name](board)
    scores = scorer.score(np.arange(N_USERS), AS_OF)
    for user in range(N_USERS):
        own_unseen = scores[user, held_out(user)]
        other = 1 - _group(user)
        other_group = scores[user, other * GROUP : (other + 1) * GROUP]
        assert own_unseen.min() > other_group.max(), (name, user)


@pytest.mark.parametrize("algorithm", ["als", "bpr"])
def test_factor_fitting_is_reproducible_with_a_seed(board: Board, algorithm: str) -> None:
    fitted = board.factors if algorithm == "als" else board.bpr
    again = _fit_factors(board.events, algorithm)
    np.testing.assert_array_equal(again.user_factors, fitted.user_factors)
    np.testing.assert_array_equal(again.item_factors, fitted.item_factors)


def test_buy_again_puts_the_most_bought_item_first(board: Board) -> None:
    scores = BuyAgainScorer(board.history, board.popularity).score(np.arange(N_USERS), AS_OF)
    counts = board.history.counts.toarray()
    for user in range(N_USERS):
        ranked = np.argsort(-scores[user], kind="stable")
        assert counts[user, ranked[0]] == counts[user].max()
        # Everything the customer bought comes before everything they did not.
        n_bought = len(own_bought(user))
        assert set(ranked[:n_bought].tolist()) == set(own_bought(user))
        # And bought items are in non-increasing count order.
        assert np.all(np.diff(counts[user, ranked[:n_bought]]) <= 0)


def test_buy_again_breaks_equal_counts_by_popularity_then_recency() -> None:
    # Customer 0 bought items 0, 1 and 2 twice each and item 3 once; item 1 is the most widely
    # bought, items 0 and 2 tie on popularity, and customer 0 bought item 2 more recently.
    day = SECONDS_PER_DAY
    rows = [
        (0, 0, 1), (0, 0, 2), (0, 1, 1), (0, 1, 2), (0, 2, 5), (0, 2, 6), (0, 3, 7),
        (1, 1, 1), (2, 1, 1), (1, 0, 1), (2, 2, 1), (3, 4, 1), (3, 5, 1), (4, 4, 1),
    ]  # fmt: skip
    rows.sort(key=lambda r: r[2])
    events = Interactions(
        Vocabulary([f"u{i}" for i in range(5)]),
        Vocabulary([f"i{i}" for i in range(6)]),
        np.array([r[0] for r in rows], np.int32),
        np.array([r[1] for r in rows], np.int32),
        np.array([T0 + r[2] * day for r in rows], np.int64),
        np.ones(len(rows), np.float32),
    )
    history = PurchaseHistory.from_interactions(events)
    popularity = _distinct(history.counts)
    assert popularity.tolist() == [2, 3, 2, 1, 2, 1]
    scorer = BuyAgainScorer(history, popularity)
    ranked = np.argsort(-scorer.score(np.array([0]), T0 + 10 * day)[0], kind="stable")
    # Count 2: item 1 (popularity 3), then 2 (popularity 2, recent), then 0 (popularity 2);
    # count 1: item 3; then the unbought items by popularity: 4 (2), then 5 (1).
    assert ranked.tolist() == [1, 2, 0, 3, 4, 5]


def test_popularity_is_the_same_list_for_everyone() -> None:
    pop = np.array([5.0, 1.0, 3.0], np.float32)
    scores = PopularityScorer(pop).score(np.array([0, 7, 7]), AS_OF)
    np.testing.assert_array_equal(scores, np.tile(pop, (3, 1)))


def test_repeat_aware_score_is_the_weighted_sum_of_its_features(board: Board) -> None:
    scorer = _repeat_aware(board)
    users = np.arange(N_USERS)
    features = scorer.features(users, AS_OF)
    assert features.shape == (N_USERS, N_ITEMS, len(FEATURES))
    w = np.array([WEIGHTS[name] for name in FEATURES])
    np.testing.assert_allclose(scorer.score(users, AS_OF), features @ w, rtol=1e-5, atol=1e-5)
    # Each feature on its own, so a feature out of FEATURES order cannot hide behind another.
    for i, name in enumerate(FEATURES):
        alone = scorer.with_weights({name: 1.0})
        np.testing.assert_allclose(
            alone.score(users, AS_OF), features[:, :, i], rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_repeat_aware_features_mean_what_their_names_say(board: Board) -> None:
    scorer = _repeat_aware(board)
    user = 4
    f = scorer.features(np.array([user]), AS_OF)[0]
    col = {name: f[:, i] for i, name in enumerate(FEATURES)}
    counts = board.history.counts.toarray()[user]
    np.testing.assert_allclose(col["log_count"], np.log1p(counts), rtol=1e-6)
    np.testing.assert_array_equal(col["bought"], (counts > 0).astype(np.float32))
    last = board.history.last_time.toarray()[user]
    age_days = (AS_OF - last) / SECONDS_PER_DAY
    np.testing.assert_allclose(
        col["recency"], np.where(counts > 0, 2 ** (-age_days / 30), 0), rtol=1e-5
    )
    np.testing.assert_allclose(col["log_popularity"], np.log1p(board.popularity), rtol=1e-6)
    np.testing.assert_allclose(col["log_trending"], np.log1p(board.trending), rtol=1e-6)
    np.testing.assert_allclose(
        col["factor_score"], board.factors.score(np.array([user]), AS_OF)[0], rtol=1e-6
    )
    knn = board.knn.score(np.array([user]), AS_OF)[0]
    np.testing.assert_allclose(col["knn_score"], knn / knn.max(), rtol=1e-6)
    assert col["knn_score"].max() == pytest.approx(1.0)


def test_repeat_aware_without_weights_scores_zero(board: Board) -> None:
    scorer = RepeatAwareScorer(
        board.history, board.popularity, board.trending, board.factors, board.knn
    )
    np.testing.assert_array_equal(scorer.score(np.arange(3), AS_OF), 0.0)


def test_unknown_weight_names_raise(board: Board) -> None:
    with pytest.raises(ValueError, match="unknown fusion feature"):
        RepeatAwareScorer(
            board.history,
            board.popularity,
            board.trending,
            board.factors,
            board.knn,
            {"log_count": 1.0, "colour": 2.0},
        )
    with pytest.raises(ValueError, match="colour"):
        _repeat_aware(board).with_weights({"colour": 1.0})


def test_mismatched_signals_are_refused() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        FactorScorer(np.zeros((3, 4), np.float32), np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        ItemKnnScorer(sp.csr_matrix((3, 4)), sp.csr_matrix((5, 5)))
