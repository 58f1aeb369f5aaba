"""ranking_metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from training.metrics import isin_sorted, ndcg_per_row, ranking_metrics

G = 1 / math.log2(3)  # discount of rank 2


def _truth(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [i for i, cols in enumerate(rows) for _ in cols]
    c = [col for cols in rows for col in cols]
    m = sp.csr_matrix(
        (np.ones(len(c), np.float32), (r, c)), shape=(len(rows), n_items), dtype=np.float32
    )
    m.sort_indices()
    return m


def test_three_users_with_partial_hits_and_empty_slots() -> None:
    top = np.array([[1, 2, 3], [4, -1, -1], [-1, 7, 8]])
    # User 2's -1 slot must not count as user 1's item 9 (their keys would collide).
    truth = _truth([[2, 5], [4, 9], [0, 1, 2, 3]], n_items=10)
    m = ranking_metrics(top, truth, n_items=10)
    # hits: [0,1,0], [1,0,0], [0,0,0]
    assert m["users"] == 3
    assert m["precision@3"] == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)
    assert m["recall@3"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    # AP: user 0 precision 1/2 at rank 2 over min(2, 3); user 1 1/1 over min(2, 3).
    assert m["map@3"] == pytest.approx((0.5 / 2 + 1.0 / 2 + 0) / 3)
    # NDCG: user 0 G/(1+G), user 1 1/(1+G): IDCG of two relevant items is 1 + G.
    assert m["ndcg@3"] == pytest.approx((G / (1 + G) + 1 / (1 + G) + 0) / 3)
    assert m["hit_rate@3"] == pytest.approx(2 / 3)
    # Distinct items recommended: 1, 2, 3, 4, 7, 8 (the -1 slots are not items).
    assert m["coverage@3"] == pytest.approx(6 / 10)


def test_ndcg_per_row_is_each_rows_share_of_the_mean() -> None:
    top = np.array([[1, 2, 3], [4, -1, -1], [-1, 7, 8]])
    truth = _truth([[2, 5], [4, 9], [0, 1, 2, 3]], n_items=10)
    per_row = ndcg_per_row(top, truth)
    assert per_row == pytest.approx([G / (1 + G), 1 / (1 + G), 0.0])
    assert per_row.mean() == pytest.approx(ranking_metrics(top, truth, n_items=10)["ndcg@3"])


def test_idcg_is_capped_at_k_when_more_items_are_relevant() -> None:
    top = np.array([[0, 1], [9, 3]])
    truth = _truth([[0, 1, 2, 3, 4], [3]], n_items=10)
    m = ranking_metrics(top, truth, n_items=10)
    # User 0: both slots hit, a perfect list at k=2 although 5 items are relevant.
    # User 1: one relevant item found at rank 2.
    assert m["precision@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["recall@2"] == pytest.approx((2 / 5 + 1.0) / 2)
    assert m["map@2"] == pytest.approx(((1 + 1) / 2 + 0.5 / 1) / 2)
    assert m["ndcg@2"] == pytest.approx((1.0 + G) / 2)
    assert m["hit_rate@2"] == 1.0
    assert m["coverage@2"] == pytest.approx(4 / 10)


def test_one_user_with_known_dcg_and_idcg() -> None:
    top = np.array([[10, 20, 11, 21]])
    truth = _truth([[10, 11, 12]], n_items=30)
    m = ranking_metrics(top, truth, n_items=30)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + G + 1 / math.log2(4)
    assert m["ndcg@4"] == pytest.approx(dcg / idcg)
    assert m["map@4"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert m["precision@4"] == pytest.approx(0.5)
    assert m["recall@4"] == pytest.approx(2 / 3)


def test_a_perfect_list_scores_one_and_all_misses_score_zero() -> None:
    truth = _truth([[3, 1], [0]], n_items=5)
    perfect = ranking_metrics(np.array([[1, 3], [0, -1]]), truth, n_items=5)
    assert perfect["ndcg@2"] == pytest.approx(1.0)
    assert perfect["map@2"] == pytest.approx(1.0)
    assert perfect["recall@2"] == pytest.approx(1.0)
    assert perfect["precision@2"] == pytest.approx((1.0 + 0.5) / 2)
    misses = ranking_metrics(np.array([[0, 2], [-1, -1]]), truth, n_items=5)
    for name in ("precision@2", "recall@2", "map@2", "ndcg@2", "hit_rate@2"):
        assert misses[name] == 0.0, name
    assert misses["coverage@2"] == pytest.approx(2 / 5)


def test_a_row_of_only_empty_slots_is_all_misses() -> None:
    # n_items - 1 is relevant for user 0; user 1's -1 slots must not hit it.
    truth = _truth([[4], [4]], n_items=5)
    m = ranking_metrics(np.array([[4, -1], [-1, -1]]), truth, n_items=5)
    assert m["hit_rate@2"] == pytest.approx(0.5)
    assert m["precision@2"] == pytest.approx(0.25)
    assert m["coverage@2"] == pytest.approx(1 / 5)


def test_mismatched_rows_raise() -> None:
    with pytest.raises(ValueError, match="truth rows"):
        ranking_metrics(np.array([[0, 1]]), _truth([[0], [1]], n_items=3), n_items=3)


def test_a_user_without_relevant_items_raises() -> None:
    with pytest.raises(ValueError, match="relevant"):
        ranking_metrics(np.array([[0], [1]]), _truth([[0], []], n_items=3), n_items=3)


def test_no_users_gives_zeros() -> None:
    m = ranking_metrics(np.empty((0, 5), dtype=np.int64), _truth([], n_items=3), n_items=3)
    assert m["users"] == 0
    assert m["ndcg@5"] == 0.0
    assert m["coverage@5"] == 0.0


def test_isin_sorted_is_isin_for_ascending_keys() -> None:
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, 1_000, 300))
    values = rng.integers(-5, 1_005, (40, 25))  # below, inside and past the keys
    np.testing.assert_array_equal(isin_sorted(values, keys), np.isin(values, keys))
    assert isin_sorted(values, keys).any() and not isin_sorted(values, keys).all()
    assert not isin_sorted(values, keys[:0]).any()
    assert isin_sorted(values, keys[:0]).shape == values.shape
