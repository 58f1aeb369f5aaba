"""The block-scoring kernels against scipy's and numpy's own results, to the bit where the
kernels promise scipy's order of summation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from engine.block_kernels import entry_positions, pair_dots, product_rows, scaled_product_at
from engine.models import ItemKnnScorer

N_USERS, N_ITEMS = 60, 45


def _matrices(
    seed: int, user_dtype: type = np.float32, signed: bool = False
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Users x items counts (some users with nothing) and an items x items similarity."""
    rng = np.random.default_rng(seed)
    counts = sp.random(N_USERS, N_ITEMS, density=0.15, random_state=rng, format="csr")
    counts.data = rng.integers(1, 5, counts.nnz).astype(user_dtype)
    counts = sp.csr_matrix(counts.multiply(rng.random((N_USERS, 1)) > 0.2), dtype=user_dtype)
    counts.eliminate_zeros()
    similarity = sp.random(N_ITEMS, N_ITEMS, density=0.2, random_state=rng, format="csr")
    similarity.data = (rng.standard_normal if signed else rng.random)(similarity.nnz)
    return counts, sp.csr_matrix(similarity, dtype=np.float32)


@pytest.mark.parametrize("user_dtype", [np.float32, np.float64])
def test_product_rows_are_scipys_product_to_the_bit(user_dtype: type) -> None:
    counts, similarity = _matrices(0, user_dtype)
    empty = int(np.flatnonzero(np.diff(counts.indptr) == 0)[0])  # a user without history
    users = np.array([3, 0, 3, 59, empty, 41], dtype=np.int64)  # repeats kept, in order
    scorer = ItemKnnScorer(counts, similarity)
    expected = np.asarray((counts[users] @ similarity).todense(), dtype=np.float32)
    got = scorer.score(users, as_of=0)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert not got[4].any()
    assert scorer.score(np.array([], dtype=np.int64), 0).shape == (0, N_ITEMS)


def test_product_rows_adds_to_what_the_block_holds() -> None:
    counts, similarity = _matrices(1)
    users = np.arange(5, dtype=np.int64)
    out = np.ones((5, N_ITEMS), dtype=np.float32)
    product_rows(
        counts.indptr, counts.indices, counts.data, users,
        similarity.indptr, similarity.indices, similarity.data, out,
    )  # fmt: skip
    np.testing.assert_allclose(out - 1.0, (counts[users] @ similarity).toarray(), atol=1e-6)


@pytest.mark.parametrize(("signed", "user_dtype"), [(False, np.float32), (True, np.float32),
                                                    (False, np.float64)])  # fmt: skip
def test_scaled_product_at_is_the_scaled_rows_at_the_pairs(signed: bool, user_dtype: type) -> None:
    counts, similarity = _matrices(2, user_dtype, signed=signed)
    rng = np.random.default_rng(3)
    users = np.sort(rng.choice(N_USERS, 30, replace=False)).astype(np.int64)
    rows = rng.integers(0, len(users), 500)
    rows[:3] = len(users) - 1  # in no particular order, with repeats
    items = rng.integers(0, N_ITEMS, 500)
    product = (counts[users] @ similarity).tocsr()
    top = product.max(axis=1).toarray().ravel()
    value = np.asarray(product[rows, items], dtype=np.float32).ravel()
    expected = np.divide(value, top[rows], out=value, where=top[rows] > 0)
    scratch = np.zeros(N_ITEMS, dtype=product.dtype)
    got = scaled_product_at(
        counts.indptr, counts.indices, counts.data, users,
        similarity.indptr, similarity.indices, similarity.data, rows, items, scratch,
    )  # fmt: skip
    np.testing.assert_array_equal(got, expected)
    assert not scratch.any(), "the scratch row is left zeroed for the next call"
    if signed:
        assert np.any(top[rows] <= 0), "rows without a positive score stay unscaled"
    else:
        assert got.max() == pytest.approx(1.0)


def test_entry_positions_find_stored_cells_and_only_those() -> None:
    counts, _ = _matrices(4)
    rng = np.random.default_rng(5)
    users = rng.choice(N_USERS, 25, replace=False).astype(np.int64)
    rows = rng.integers(0, len(users), 2_000)
    items = rng.integers(0, N_ITEMS, 2_000)
    at = entry_positions(counts.indptr, counts.indices, users, rows, items)
    dense = counts.toarray()[users[rows], items]
    np.testing.assert_array_equal(at >= 0, dense > 0)
    found = at >= 0
    assert found.any() and not found.all()
    np.testing.assert_array_equal(counts.data[at[found]], dense[found])


def test_pair_dots_are_the_pairs_dot_products() -> None:
    rng = np.random.default_rng(6)
    left = rng.standard_normal((20, 16)).astype(np.float32)
    right = rng.standard_normal((30, 16)).astype(np.float32)
    left_rows, right_rows = rng.integers(0, 20, 300), rng.integers(0, 30, 300)
    got = pair_dots(left, right, left_rows, right_rows)
    assert got.dtype == np.float32
    expected = np.einsum("ij,ij->i", left[left_rows], right[right_rows])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert pair_dots(left, right, left_rows[:0], right_rows[:0]).shape == (0,)
