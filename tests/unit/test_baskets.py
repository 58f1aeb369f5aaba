"""Items bought together: exact pair support, filtering and the per-item cap on a tiny log."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from training.baskets import BasketPairs, basket_pairs
from training.dataset import basket_codes

ITEMS = ["a", "b", "c", "d", "e"]
A, B, C, D, E = range(5)

# Five baskets, one line per (basket, item) except b3, which has two lines of a. Lines are
# interleaved and split over two chunks, as a log sorted by time would give them.
LINES = [
    ("b1", "a"),
    ("b2", "a"),
    ("b1", "b"),
    ("b3", "a"),
    ("b2", "b"),
    ("b1", "c"),
    # --- chunk boundary
    ("b3", "b"),
    ("b4", "b"),
    ("b3", "d"),
    ("b3", "a"),
    ("b4", "c"),
    ("b5", "e"),
]
# Baskets containing both items of a pair (counted by hand from LINES):
#   a+b: b1 b2 b3 = 3   b+c: b1 b4 = 2   a+c: b1 = 1   a+d: b3 = 1   b+d: b3 = 1   e: alone
SUPPORT = {(A, B): 3, (B, C): 2, (A, C): 1, (A, D): 1, (B, D): 1}
ITEM_BASKETS = [3, 4, 2, 1, 1]  # a: b1 b2 b3 (twice in b3, counted once); b: b1-b4; ...


def _pairs(**kwargs: int) -> BasketPairs:
    baskets = pa.chunked_array([[b for b, _ in LINES[:6]], [b for b, _ in LINES[6:]]])
    items = np.array([ITEMS.index(i) for _, i in LINES], dtype=np.int32)
    return basket_pairs(basket_codes(baskets), items, len(ITEMS), **kwargs)


def _expected(pairs: dict[tuple[int, int], int]) -> np.ndarray:
    dense = np.zeros((len(ITEMS), len(ITEMS)))
    for (i, j), support in pairs.items():
        dense[i, j] = dense[j, i] = support
    return dense


def test_support_is_the_number_of_baskets_holding_both_items() -> None:
    result = _pairs(min_support=1)
    np.testing.assert_array_equal(result.pairs.toarray(), _expected(SUPPORT))
    assert result.pairs.diagonal().tolist() == [0] * len(ITEMS)  # a twice in b3: not a pair
    assert result.pairs.dtype == np.float32
    # engine.recommender looks partners up with searchsorted: rows must be sorted.
    assert result.pairs.has_sorted_indices


def test_item_baskets_count_each_basket_once() -> None:
    result = _pairs(min_support=1)
    np.testing.assert_array_equal(result.item_baskets, ITEM_BASKETS)
    assert result.baskets == 5


@pytest.mark.parametrize(
    ("min_support", "kept"),
    [
        (2, {(A, B): 3, (B, C): 2}),
        (3, {(A, B): 3}),  # the default
        (4, {}),
    ],
)
def test_pairs_below_min_support_are_dropped(
    min_support: int, kept: dict[tuple[int, int], int]
) -> None:
    result = _pairs(min_support=min_support)
    np.testing.assert_array_equal(result.pairs.toarray(), _expected(kept))
    assert result.pairs.nnz == 2 * len(kept)  # dropped pairs are gone, not stored as zeros
    np.testing.assert_array_equal(result.item_baskets, ITEM_BASKETS)  # never filtered


def test_default_min_support_is_three() -> None:
    np.testing.assert_array_equal(_pairs().pairs.toarray(), _expected({(A, B): 3}))


def test_per_item_keeps_the_partners_with_the_highest_support() -> None:
    pairs = _pairs(min_support=1, per_item=2).pairs.toarray()
    # b's partners are a (3), c (2) and d (1): d goes. a's are b (3), c (1), d (1): a tie for
    # the second place goes to the lower item index, c.
    assert pairs[B].tolist() == [3, 0, 2, 0, 0]
    assert pairs[A].tolist() == [0, 3, 1, 0, 0]
    assert pairs[C].tolist() == [1, 2, 0, 0, 0]  # only two partners: nothing to cut
    assert pairs[D].tolist() == [1, 1, 0, 0, 0]
    assert pairs[E].tolist() == [0, 0, 0, 0, 0]
    top = _pairs(min_support=1, per_item=1).pairs.toarray()
    assert [int(np.argmax(row)) for row in top[:4]] == [B, A, B, A]
    assert (np.count_nonzero(top, axis=1) == [1, 1, 1, 1, 0]).all()


def test_an_empty_log_has_no_pairs() -> None:
    result = basket_pairs(
        basket_codes(pa.chunked_array([], pa.string())), np.array([], dtype=np.int32), len(ITEMS)
    )
    assert result.pairs.shape == (len(ITEMS), len(ITEMS))
    assert result.pairs.nnz == 0
    np.testing.assert_array_equal(result.item_baskets, np.zeros(len(ITEMS)))
    assert result.baskets == 0


@pytest.mark.parametrize("per_item", [1, 3, 8])
def test_pairs_match_a_dense_count_with_ties_to_the_lower_index(per_item: int) -> None:
    """Many baskets of few items, so supports tie often and many items have more partners than
    ``per_item``: each row must be the ``per_item`` partners with the highest support, the lower
    index first on ties, in index order."""
    rng = np.random.default_rng(per_item)
    n_items, n_baskets = 30, 400
    baskets = np.repeat(np.arange(n_baskets), rng.integers(1, 6, n_baskets))
    items = rng.integers(0, n_items, len(baskets)).astype(np.int32)
    incidence = np.zeros((n_baskets, n_items), dtype=np.int64)
    incidence[baskets, items] = 1
    together = incidence.T @ incidence
    np.fill_diagonal(together, 0)
    got = basket_pairs(baskets, items, n_items, min_support=2, per_item=per_item).pairs
    truncated = 0
    for item in range(n_items):
        partners = np.flatnonzero(together[item] >= 2)
        order = np.lexsort((partners, -together[item, partners]))  # support down, index up
        expected = np.sort(partners[order][:per_item])
        truncated += len(partners) > per_item
        row = slice(got.indptr[item], got.indptr[item + 1])
        assert got.indices[row].tolist() == expected.tolist()
        assert got.data[row].tolist() == together[item, expected].tolist()
    assert truncated > n_items // 2, "most rows are cut to per_item, where the ties matter"
