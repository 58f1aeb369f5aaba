"""Batch ranking: the top k per customer, the serving rules, any block size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from ranking import full_sort_top_k

from engine.batch import bought_not_due, item_mask, rank_batch, reasons
from engine.model import Model, load_model
from engine.profiles import Profile
from engine.recommender import Query, Recommender
from training.logs import PRESETS, read_purchase_log
from training.params import ModelParams
from training.pipeline import train_model
from training.synthetic import ShopSpec, generate_shop, write_log

DAY = 86_400


def shop_model(folder: Path, spec: ShopSpec) -> Model:
    """A generated shop through the real pipeline: log -> reader -> trainer -> artifact."""
    write_log(generate_shop(spec), folder / "log.parquet")
    log = read_purchase_log(folder / "log.parquet", PRESETS["generic"])
    train_model(log, ModelParams(), models_dir=folder / "models", run_evaluation=False)
    return load_model(folder / "models")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return shop_model(tmp_path_factory.mktemp("shop"), ShopSpec(customers=120, items=80, seed=3))


@pytest.mark.parametrize(("block_size", "workers"), [(1, 1), (7, 2), (None, 2), (1000, 1)])
def test_rank_batch_applies_masks_in_any_blocking(block_size: int | None, workers: int) -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 50, 300
    table = rng.standard_normal((n_users, n_items)).astype(np.float32)
    users = rng.permutation(n_users)[:40]
    excluded = sp.random(len(users), n_items, density=0.1, format="csr", random_state=1)
    unavailable = np.array([0, 5, 299])
    seen: list[int] = []
    ranking = rank_batch(
        lambda rows: table[rows].copy(),
        users,
        n_items,
        10,
        excluded=excluded,
        unavailable=unavailable,
        block_size=block_size,
        workers=workers,
        progress=seen.append,
    )
    masked = table[users].copy()
    masked[excluded.toarray() != 0] = -np.inf
    masked[:, unavailable] = -np.inf
    np.testing.assert_array_equal(ranking.users, users)
    np.testing.assert_array_equal(ranking.items, full_sort_top_k(masked, 10))
    assert sum(seen) == len(users)


def test_rank_batch_refuses_a_mask_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="excluded is"):
        rank_batch(lambda rows: np.zeros((len(rows), 4)), np.arange(3), 4, 2,
                   excluded=sp.csr_matrix((2, 4)))  # fmt: skip
    with pytest.raises(ValueError, match="k must be at least 1"):
        rank_batch(lambda rows: np.zeros((len(rows), 4)), np.arange(3), 4, 0)


def test_bought_not_due_is_the_serving_rule(model: Model) -> None:
    history = model.scorer.history
    users = np.arange(len(model.users))
    for now in (model.as_of, model.as_of + 30 * DAY):
        mask = bought_not_due(history, users, now)
        for user in users.tolist():
            expected = set(history.items_of(user).tolist()) - set(history.due(user, now).tolist())
            assert set(mask[user].indices.tolist()) == expected


def test_item_mask_rows_follow_the_list() -> None:
    mask = item_mask([np.array([3, 1]), np.array([], np.int64), np.array([2, 2])], 4)
    assert mask.toarray().astype(bool).tolist() == [
        [False, True, False, True], [False] * 4, [False, False, True, False]
    ]  # fmt: skip


def test_the_batch_equals_the_per_customer_recommendation(model: Model) -> None:
    # The served list for a known customer without a session is the exact top k under the same
    # rules: the batch must give every customer that very list, with the same reasons.
    rec = Recommender(model)
    users = np.arange(len(model.users))
    for now in (model.as_of, model.as_of + 30 * DAY):

        def score(rows: np.ndarray, now: int = now) -> np.ndarray:
            return model.scorer.score(rows, now)

        ranking = rank_batch(
            score,
            users,
            len(model.items),
            10,
            excluded=bought_not_due(model.scorer.history, users, now),
            unavailable=np.array([0, 1]),
            block_size=16,
        )
        why = reasons(model.scorer.history, ranking)
        unavailable = frozenset(model.items.ids[[0, 1]].tolist())
        for user, items, explained in zip(users, ranking.items, why, strict=True):
            customer = str(model.users.ids[user])
            served = rec.recommend(
                Query(k=10, customer_id=customer), Profile("v"), unavailable, now=now
            ).items
            assert [s.item_id for s in served] == model.items.ids[items[items >= 0]].tolist()
            assert [s.reason for s in served] == explained
