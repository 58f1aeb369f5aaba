"""The compiled hot-path kernels against plain numpy / scipy definitions of the same results."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from engine.kernels import (
    add_session_term,
    add_unit_range,
    closest_rows,
    first_allowed,
    item_dots,
    item_dots_pair,
    row_entries,
    row_members,
    sparse_row_sum,
    top_allowed,
)


def _reference_top(scores: np.ndarray, allowed: np.ndarray, n: int) -> list[int]:
    """Sort every allowed item by (score descending, index ascending), NaN last; take n."""
    candidates = np.flatnonzero(allowed)
    values = np.nan_to_num(scores[candidates].astype(np.float64), nan=-np.inf)
    return candidates[np.lexsort((candidates, -values))][: max(n, 0)].tolist()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_allowed_matches_a_full_sort_with_ties_by_index(dtype: type) -> None:
    rng = np.random.default_rng(7)
    for trial in range(400):
        size = int(rng.integers(0, 200))
        # Every other trial draws from a few values, so ties are the rule, not the exception.
        if trial % 2:
            scores = rng.integers(0, 6, size).astype(dtype)
        else:
            scores = rng.standard_normal(size).astype(dtype)
        allowed = rng.random(size) > 0.3
        n = int(rng.integers(-1, size + 3))
        assert top_allowed(scores, allowed, n).tolist() == _reference_top(scores, allowed, n)


def test_top_allowed_pages_agree_and_nan_and_inf_rank_last() -> None:
    scores = np.array([1.0, np.nan, 5.0, -np.inf, 5.0, 2.0], dtype=np.float32)
    allowed = np.ones(6, dtype=bool)
    full = top_allowed(scores, allowed, 6).tolist()
    assert full[:4] == [2, 4, 5, 0]
    assert set(full[4:]) == {1, 3}
    for n in range(7):
        assert top_allowed(scores, allowed, n).tolist() == full[:n]


def test_top_allowed_never_returns_a_masked_item() -> None:
    scores = np.arange(10, dtype=np.float32)
    allowed = np.zeros(10, dtype=bool)
    allowed[[1, 4]] = True
    assert top_allowed(scores, allowed, 5).tolist() == [4, 1]
    assert top_allowed(scores, np.zeros(10, dtype=bool), 3).tolist() == []


def test_first_allowed_of_a_ranking_is_the_top_of_its_scores() -> None:
    rng = np.random.default_rng(11)
    for trial in range(300):
        size = int(rng.integers(0, 120))
        scores = (rng.integers(0, 5, size) if trial % 2 else rng.standard_normal(size)).astype(
            np.float32
        )
        ranking = np.argsort(-scores, kind="stable")  # equal scores by index
        allowed = rng.random(size) > 0.4
        n = int(rng.integers(-1, size + 3))
        assert (
            first_allowed(ranking, allowed, n).tolist() == top_allowed(scores, allowed, n).tolist()
        )


@pytest.mark.parametrize(
    ("columns", "density"),
    [(40, 0.2), (20_000, 0.0004)],  # summed in catalog-wide arrays; through the hash table
    ids=["dense scratch", "hash table"],
)
def test_sparse_row_sum_is_the_sparse_product_of_the_selected_rows(
    columns: int, density: float
) -> None:
    rng = np.random.default_rng(3)
    matrix = sp.random(50, columns, density=density, random_state=4, dtype=np.float32,
                       format="csr")  # fmt: skip
    rows = np.array([3, 17, 3, 42])  # a repeated row counts twice
    weights = rng.random(4)
    dense = np.zeros(50)
    np.add.at(dense, rows, weights)
    expected = matrix.T.astype(np.float64) @ dense
    touched, values = sparse_row_sum(
        matrix.indptr, matrix.indices, matrix.data, rows, weights, columns
    )
    assert values.dtype == np.float32
    first_touch = list(dict.fromkeys(matrix[rows].indices.tolist()))
    assert touched.tolist() == first_touch  # each column once, in the order the rows reach it
    got = np.zeros(columns)
    got[touched] = values
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    empty = sparse_row_sum(
        matrix.indptr, matrix.indices, matrix.data, rows[:0], weights[:0], columns
    )
    assert len(empty[0]) == len(empty[1]) == 0


def test_item_dots_are_the_products_with_the_factors_one_vector_or_two() -> None:
    rng = np.random.default_rng(8)
    factors = rng.standard_normal((300, 24)).astype(np.float32)
    first, second = rng.standard_normal((2, 24)).astype(np.float32)
    np.testing.assert_allclose(item_dots(factors, first), factors @ first, rtol=1e-5, atol=1e-5)
    a, b = item_dots_pair(factors, first, second)
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a, factors @ first, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b, factors @ second, rtol=1e-5, atol=1e-5)


def test_add_unit_range_adds_the_scaled_values_and_nothing_when_constant() -> None:
    values = np.array([2.0, 6.0, 4.0, 3.0], dtype=np.float32)
    out = np.ones(4, dtype=np.float32)
    add_unit_range(out, values, 2.0)
    np.testing.assert_allclose(out, 1.0 + 2.0 * (values - 2.0) / 4.0)
    constant = np.ones(4, dtype=np.float32)
    add_unit_range(constant, np.full(4, 7.0, dtype=np.float32), 2.0)
    np.testing.assert_array_equal(constant, np.ones(4))


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def test_add_session_term_is_the_two_scaled_terms_of_numpy() -> None:
    rng = np.random.default_rng(5)
    factors = rng.standard_normal((40, 16)).astype(np.float32)
    vector = rng.standard_normal(16).astype(np.float32)
    dots = (factors.astype(np.float64) @ vector).astype(np.float32)
    similarity = sp.random(40, 40, density=0.2, random_state=6, dtype=np.float32, format="csr")
    items, weights = np.array([2, 9, 31]), np.array([0.25, 1.0, 0.5])
    prior = rng.standard_normal(40).astype(np.float32)
    knn = similarity[items].T.astype(np.float64) @ weights
    assert 0 < np.count_nonzero(knn) < 40  # a sparse term: most items are not neighbours
    expected = prior + 1.5 * _unit(dots.astype(np.float64)) + 1.5 * _unit(knn)
    # The factor scores computed by the kernel, or given (a customer's pass computed them).
    for given in (dots[:0], dots):
        out = prior.copy()
        add_session_term(out, factors, vector, given, similarity.indptr, similarity.indices,
                         similarity.data, items, weights, 1.5)  # fmt: skip
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Negative similarities move the minimum below the untouched items' 0: every item shifts.
    signed = similarity.copy()
    signed.data -= 0.5
    out = prior.copy()
    add_session_term(out, factors, vector, dots[:0], signed.indptr, signed.indices, signed.data,
                     items, weights, 1.5)  # fmt: skip
    knn = signed[items].T.astype(np.float64) @ weights
    expected = prior + 1.5 * _unit(dots.astype(np.float64)) + 1.5 * _unit(knn)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # A session of items without neighbours adds the factor term alone.
    out = prior.copy()
    empty = sp.csr_matrix((40, 40), dtype=np.float32)
    add_session_term(out, factors, vector, dots[:0], empty.indptr, empty.indices, empty.data,
                     items, weights, 1.5)  # fmt: skip
    np.testing.assert_allclose(out, prior + 1.5 * _unit(dots), rtol=1e-5, atol=1e-5)


def test_row_members_concatenates_the_chosen_rows_in_order() -> None:
    values = np.array([4, 0, 3, 1, 2, 5])
    indptr = np.array([0, 2, 2, 5, 6])  # rows [4, 0], [], [3, 1, 2], [5]
    assert row_members(indptr, values, np.array([2, 0])).tolist() == [3, 1, 2, 4, 0]
    assert row_members(indptr, values, np.array([1, 3, 3])).tolist() == [5, 5]  # repeats kept
    assert row_members(indptr, values, np.array([], np.int64)).tolist() == []


def test_page_lookups_match_comparing_every_entry_with_every_item() -> None:
    """The "because you viewed" source (earlier rows win ties) and the history's value of each
    page item, against the definition: every entry compared with every item. Pages repeat
    items, and rows repeat values, so ties and duplicates are the rule."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        matrix = sp.random(n, n, density=0.3, format="csr", random_state=rng)
        matrix.data = rng.integers(1, 4, matrix.nnz).astype(np.float64)  # tied similarities
        rows = rng.choice(n, int(rng.integers(0, n + 1)), replace=False)
        items = rng.integers(0, n, int(rng.integers(0, 12)))
        best, best_value = [-1] * len(items), [0.0] * len(items)
        for row in rows:
            for j in range(matrix.indptr[row], matrix.indptr[row + 1]):
                for p, item in enumerate(items):
                    if item == matrix.indices[j] and matrix.data[j] > best_value[p]:
                        best[p], best_value[p] = int(row), matrix.data[j]
        got = closest_rows(matrix.indptr, matrix.indices, matrix.data, rows, items)
        assert got.tolist() == best
        history = matrix[int(rng.integers(0, n))]
        values = dict(zip(history.indices.tolist(), history.data.tolist(), strict=True))
        assert row_entries(history.indices, history.data, items).tolist() == [
            values.get(int(item), 0.0) for item in items
        ]
