"""top_k, select_top_k and merge_top_k: order, ties by index, short catalogs and exclusion,
against a full sort."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from ranking import full_sort_top_k

from engine.scoring import merge_top_k, select_top_k, top_k


def _mask(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    """A 0/1 CSR mask with the listed columns set per row."""
    r = [i for i, cols in enumerate(rows) for _ in cols]
    c = [col for cols in rows for col in cols]
    return sp.csr_matrix(
        (np.ones(len(c), np.float32), (r, c)), shape=(len(rows), n_items), dtype=np.float32
    )


def test_returns_best_first_per_row() -> None:
    scores = np.array(
        [
            [0.1, 0.9, 0.5, 0.3, 0.7],
            [5.0, -1.0, 2.0, 4.0, 3.0],
        ]
    )
    np.testing.assert_array_equal(top_k(scores.copy(), 3), [[1, 4, 2], [0, 3, 4]])
    np.testing.assert_array_equal(top_k(scores.copy(), 1), [[1], [0]])


def test_matches_a_full_sort_on_random_scores() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((50, 200))
    for k in (1, 7, 199, 200):
        picked = top_k(scores.copy(), k)
        assert picked.shape == (50, k)
        np.testing.assert_array_equal(picked, np.argsort(-scores, axis=1)[:, :k])


def test_does_not_modify_scores_without_exclusion() -> None:
    scores = np.array([[3.0, 1.0, 2.0]])
    top_k(scores, 2)
    np.testing.assert_array_equal(scores, [[3.0, 1.0, 2.0]])


def test_ties_are_all_kept_when_they_fit_and_the_cut_is_by_score() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 3.0, 0.0, 3.0, 2.0]])
    # Four items tie at 3: any two of them are a correct top 2, nothing else is.
    two = top_k(scores.copy(), 2)[0]
    assert len(set(two.tolist())) == 2
    assert set(two.tolist()) <= {1, 2, 3, 5}
    # Top 5 = all four tied items, then the 2.
    five = top_k(scores.copy(), 5)[0]
    assert set(five[:4].tolist()) == {1, 2, 3, 5}
    assert five[4] == 6


def test_a_full_ranking_breaks_ties_by_lower_index() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 3.0, 0.0, 3.0, 2.0]])
    np.testing.assert_array_equal(top_k(scores.copy(), 7), [[1, 2, 3, 5, 6, 0, 4]])


def test_k_larger_than_the_catalog_is_capped() -> None:
    scores = np.array([[0.2, 0.8, 0.5], [0.9, 0.1, 0.4]])
    picked = top_k(scores.copy(), 10)
    assert picked.shape == (2, 3)
    np.testing.assert_array_equal(picked, [[1, 2, 0], [0, 2, 1]])


def test_excluded_items_are_never_returned() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random((20, 30))
    exclude = _mask([list(rng.choice(30, size=10, replace=False)) for _ in range(20)], 30)
    picked = top_k(scores.copy(), 10, exclude)
    for row in range(20):
        banned = set(exclude[row].indices.tolist())
        assert not banned & set(picked[row].tolist())
        # The survivors are the best of what is left, best first.
        allowed = np.array([i for i in range(30) if i not in banned])
        best = allowed[np.argsort(-scores[row, allowed])][:10]
        np.testing.assert_array_equal(picked[row], best)


def test_excluding_the_best_item_promotes_the_next() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [0.1, 0.9, 0.5]])
    picked = top_k(scores, 2, _mask([[1], []], 3))
    np.testing.assert_array_equal(picked, [[2, 0], [1, 2]])


def test_slots_are_minus_one_when_too_few_items_remain() -> None:
    scores = np.array([[0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]])
    picked = top_k(scores.copy(), 3, _mask([[0, 2, 3], [0, 1, 2, 3]], 4))
    np.testing.assert_array_equal(picked, [[1, -1, -1], [-1, -1, -1]])
    # Also when k covers the whole catalog.
    picked = top_k(scores.copy(), 4, _mask([[1, 3], []], 4))
    np.testing.assert_array_equal(picked, [[0, 2, -1, -1], [0, 1, 2, 3]])


def test_an_empty_exclusion_mask_changes_nothing() -> None:
    scores = np.array([[0.3, 0.1, 0.2]])
    empty = sp.csr_matrix((1, 3), dtype=np.float32)
    np.testing.assert_array_equal(top_k(scores.copy(), 2, empty), top_k(scores.copy(), 2))


def test_rows_are_ranked_independently() -> None:
    rng = np.random.default_rng(2)
    scores = rng.random((8, 40))
    block = top_k(scores.copy(), 5)
    one_by_one = np.concatenate([top_k(scores[[i]].copy(), 5) for i in range(8)])
    np.testing.assert_array_equal(block, one_by_one)


@pytest.mark.parametrize("n_items", [1, 7, 10, 11, 63, 200, 1000, 4099])
@pytest.mark.parametrize("k", [1, 5, 10])
@pytest.mark.parametrize("kind", ["distinct", "ties", "mostly excluded", "constant", "rising"])
def test_selection_equals_a_full_sort(n_items: int, k: int, kind: str) -> None:
    rng = np.random.default_rng(n_items * 100 + k)
    scores = rng.standard_normal((30, n_items)).astype(np.float32)
    if kind == "ties":
        scores = np.round(scores * 2).astype(np.float32)  # a handful of distinct values
    elif kind == "mostly excluded":
        scores[rng.random(scores.shape) < 0.95] = -np.inf
    elif kind == "constant":
        scores[:] = 1.0
    elif kind == "rising":  # every item beats those before it: each one enters the top k
        scores = np.sort(scores, axis=1)
    items, values = select_top_k(scores.copy(), k)
    expected = full_sort_top_k(scores, k)
    np.testing.assert_array_equal(items, expected)
    picked = np.take_along_axis(scores, np.maximum(expected, 0), axis=1)
    np.testing.assert_array_equal(values, np.where(expected >= 0, picked, -np.inf))


def test_ties_go_to_the_lower_index_wherever_they_fall() -> None:
    scores = np.zeros((2, 5000), dtype=np.float32)
    scores[0, [4999, 17, 2500, 3]] = 1.0  # four equal winners spread over chunks
    scores[1, 4000:] = 2.0
    items, _ = select_top_k(scores, 3)
    assert items.tolist() == [[3, 17, 2500], [4000, 4001, 4002]]


def test_only_minus_infinity_is_excluded_whatever_the_precision() -> None:
    # -1e300 is a (very low) float64 score, not an exclusion, though float32 cannot hold it.
    scores = np.array([[-1e300, 2.0, -np.inf, 1.0]])
    np.testing.assert_array_equal(top_k(scores.copy(), 4), [[1, 3, 0, -1]])


def test_an_empty_catalog_selects_nothing() -> None:
    items, values = select_top_k(np.empty((3, 0), dtype=np.float32), 10)
    assert items.shape == values.shape == (3, 0)


def test_nan_scores_are_never_selected() -> None:
    scores = np.array([[np.nan, 0.5, np.nan, 0.7], [np.nan, np.nan, np.nan, np.nan]])
    items, values = select_top_k(scores, 3)
    assert items.tolist() == [[3, 1, -1], [-1, -1, -1]]
    assert values[0, :2].tolist() == [np.float32(0.7), np.float32(0.5)]


@pytest.mark.parametrize("n_items", [1, 7, 63, 1000])
@pytest.mark.parametrize("k", [1, 10])
@pytest.mark.parametrize("kind", ["distinct", "ties", "extras only", "no extras", "nan and -inf"])
def test_merging_a_rows_entries_back_equals_selecting_the_whole_row(
    n_items: int, k: int, kind: str
) -> None:
    rng = np.random.default_rng(n_items * 10 + k)
    scores = rng.standard_normal((40, n_items)).astype(np.float32)
    if kind == "ties":
        scores = np.round(scores * 2).astype(np.float32)
    share = {"extras only": 1.0, "no extras": 0.0}.get(kind, 0.2)
    taken = rng.random(scores.shape) < share
    taken[0] = False  # a row without entries to merge
    taken[1] = True  # a row made of them alone
    if kind == "nan and -inf":
        scores[rng.random(scores.shape) < 0.3] = np.nan
        scores[rng.random(scores.shape) < 0.3] = -np.inf
    rows, cols = np.nonzero(taken)
    extra = sp.csr_matrix((scores[rows, cols], (rows, cols)), shape=scores.shape)
    rest = scores.copy()
    rest[taken] = -np.inf
    items, values = merge_top_k(select_top_k(rest, k), extra)
    expected, expected_values = select_top_k(scores.copy(), k)
    np.testing.assert_array_equal(items, expected)
    np.testing.assert_array_equal(values, expected_values)


def test_merging_leaves_the_selection_it_was_given_as_it_was() -> None:
    top = select_top_k(np.array([[3.0, 1.0, 2.0]], np.float32), 2)
    before = (top[0].copy(), top[1].copy())
    merge_top_k(top, sp.csr_matrix(np.array([[0.0, 5.0, 0.0]], np.float32)))
    np.testing.assert_array_equal(top[0], before[0])
    np.testing.assert_array_equal(top[1], before[1])
