"""Vocabularies, event columns and the users x items matrices built from them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from engine.matrix import (
    SECONDS_PER_DAY,
    InteractionMatrix,
    Interactions,
    PurchaseHistory,
    Weighting,
    weigh,
)
from engine.vocab import Vocabulary

T0 = 1_700_000_000  # any moment well after the epoch
DAY = SECONDS_PER_DAY


def _events(
    users: list[str], items: list[str], rows: Sequence[tuple[str, str, float, float]]
) -> Interactions:
    """Events from (user, item, day offset from T0, quantity) rows."""
    uv, iv = Vocabulary(users), Vocabulary(items)
    return Interactions(
        uv,
        iv,
        np.array([uv.index(r[0]) for r in rows], dtype=np.int32),
        np.array([iv.index(r[1]) for r in rows], dtype=np.int32),
        np.array([T0 + int(r[2] * DAY) for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=np.float32),
    )


# u0 bought a twice (2 then 3 units) and b once; u1 and u2 bought a once; u2 bought 4 units of c.
SMALL = [
    ("u0", "a", 0, 2.0),
    ("u0", "a", 10, 3.0),
    ("u0", "b", 10, 1.0),
    ("u1", "a", 20, 1.0),
    ("u2", "a", 20, 1.0),
    ("u2", "c", 30, 4.0),
]


@pytest.fixture
def small() -> Interactions:
    return _events(["u0", "u1", "u2"], ["a", "b", "c"], SMALL)


def _dense(m: sp.csr_matrix) -> np.ndarray:
    return np.asarray(m.todense(), dtype=np.float64)


# --- Vocabulary --------------------------------------------------------------------------------


def test_encode_orders_ids_by_first_appearance_across_chunks() -> None:
    values = pa.chunked_array([["sku-9", "sku-1"], ["sku-9", "sku-5", "sku-1", "sku-0"]])
    vocab, codes = Vocabulary.encode(values)
    assert vocab.ids.tolist() == ["sku-9", "sku-1", "sku-5", "sku-0"]
    assert codes.tolist() == [0, 1, 0, 2, 1, 3]
    # Codes round-trip to the original values.
    assert vocab.ids[codes].tolist() == values.to_pylist()


def test_index_and_indices_map_unknown_ids_to_none_and_minus_one() -> None:
    vocab = Vocabulary(["x", "y", "z"])
    assert len(vocab) == 3
    assert vocab.index("y") == 1
    assert vocab.index("missing") is None
    assert "z" in vocab
    assert "missing" not in vocab
    idx = vocab.indices(["z", "missing", "x", ""])
    assert idx.tolist() == [2, -1, 0, -1]
    assert idx.dtype == np.int64


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "b", "a"])


def test_ids_must_be_one_dimensional() -> None:
    with pytest.raises(ValueError, match="one-dimensional"):
        Vocabulary(np.array([["a", "b"], ["c", "d"]]))


def test_ids_are_a_unicode_array_safe_to_save_without_pickle() -> None:
    vocab = Vocabulary(["a", "longer-id"])
    assert vocab.ids.dtype.kind == "U"
    assert vocab.ids.tolist() == ["a", "longer-id"]


# --- Interactions ------------------------------------------------------------------------------


def test_interaction_columns_must_have_equal_length() -> None:
    v = Vocabulary(["a"])
    with pytest.raises(ValueError, match="equal length"):
        Interactions(v, v, np.zeros(2, np.int32), np.zeros(1, np.int32), np.zeros(2), np.ones(2))


def test_where_keeps_both_vocabularies_whole(small: Interactions) -> None:
    only_a = small.where(small.item == small.items.index("a"))
    assert len(only_a) == 4
    assert only_a.users is small.users
    assert only_a.items is small.items
    assert only_a.quantity.tolist() == [2.0, 3.0, 1.0, 1.0]
    # A matrix from a subset still spans every user and item.
    assert weigh(only_a, Weighting.COUNT).shape == (3, 3)


def test_before_excludes_the_cut_and_between_is_half_open(small: Interactions) -> None:
    cut = T0 + 10 * DAY
    before = small.before(cut)
    assert before.time.tolist() == [T0]
    between = small.between(cut, T0 + 30 * DAY)
    assert between.time.tolist() == [cut, cut, T0 + 20 * DAY, T0 + 20 * DAY]
    assert len(small.between(cut, cut)) == 0
    # before + the rest partition the events.
    assert len(before) + len(small.where(small.time >= cut)) == len(small)


@pytest.mark.parametrize("in_time_order", [True, False])
def test_time_windows_select_the_same_events_sorted_or_not(in_time_order: bool) -> None:
    # Sorted events are cut as slices, others by masks: the same events either way, in order.
    rng = np.random.default_rng(3)
    n = 400
    when = T0 + rng.integers(0, 50, n) * DAY
    if in_time_order:
        when = np.sort(when)
    users, items = Vocabulary(["u0", "u1", "u2"]), Vocabulary(["i0", "i1"])
    events = Interactions(
        users, items, rng.integers(0, 3, n).astype(np.int32),
        rng.integers(0, 2, n).astype(np.int32), when, rng.random(n).astype(np.float32),
    )  # fmt: skip
    windows = [(None, T0 + 20 * DAY), (T0 + 5 * DAY, T0 + 5 * DAY), (T0 - DAY, T0 + 60 * DAY),
               (T0 + 10 * DAY, T0 + 11 * DAY), (None, T0), (T0 + 30 * DAY, None)]  # fmt: skip
    for start, end in windows:
        low = -np.inf if start is None else start
        high = np.inf if end is None else end
        mask = (events.time >= low) & (events.time < high)
        window = events.before(end) if start is None and end else events.between(start, end)
        for column in ("user", "item", "time", "quantity"):
            assert getattr(window, column).tolist() == getattr(events, column)[mask].tolist()
        assert window.users is users and window.items is items


def test_active_users_are_sorted_and_unique(small: Interactions) -> None:
    late = small.between(T0 + 20 * DAY, T0 + 31 * DAY)
    assert late.active_users().tolist() == [1, 2]


# --- weigh -------------------------------------------------------------------------------------


def test_count_sums_purchase_lines(small: Interactions) -> None:
    m = weigh(small, Weighting.COUNT)
    assert isinstance(m, sp.csr_matrix)
    assert m.dtype == np.float32
    np.testing.assert_array_equal(
        _dense(m),
        [[2, 1, 0], [1, 0, 0], [1, 0, 1]],
    )


@pytest.mark.parametrize(
    "weighting", [Weighting.COUNT, Weighting.BINARY, Weighting.BM25, Weighting.LOG_QUANTITY]
)
def test_a_historys_counts_give_the_same_matrix_and_stay_as_they_were(
    small: Interactions, weighting: Weighting
) -> None:
    """The trainer hands its purchase history's counts to weigh (no second sum of the events):
    the same weights, and the history's own counts untouched."""
    history = PurchaseHistory.from_interactions(small)
    before = history.counts.copy()
    given = weigh(small, weighting, counts=history.counts)
    summed = weigh(small, weighting)
    assert given.has_canonical_format and given.dtype == summed.dtype
    np.testing.assert_array_equal(given.toarray(), summed.toarray())
    np.testing.assert_array_equal(history.counts.toarray(), before.toarray())


def test_binary_is_one_per_bought_pair(small: Interactions) -> None:
    np.testing.assert_array_equal(
        _dense(weigh(small, Weighting.BINARY)),
        [[1, 1, 0], [1, 0, 0], [1, 0, 1]],
    )


def test_log_quantity_is_log1p_of_summed_units(small: Interactions) -> None:
    l1 = math.log1p(1)
    np.testing.assert_allclose(
        _dense(weigh(small, Weighting.LOG_QUANTITY)),
        [[math.log1p(5), l1, 0], [l1, 0, 0], [l1, 0, math.log1p(4)]],
        rtol=1e-6,
    )


def test_time_decay_halves_per_half_life(small: Interactions) -> None:
    # Reference defaults to the latest event (day 30); half-life 10 days.
    m = weigh(small, Weighting.TIME_DECAY, half_life_days=10.0)
    expected = np.array([[2**-3 + 2**-2, 2**-2, 0], [0.5, 0, 0], [0.5, 0, 1.0]])
    np.testing.assert_allclose(_dense(m), expected, rtol=1e-6)
    # The same as an explicit as_of at the latest event ...
    explicit = weigh(small, Weighting.TIME_DECAY, as_of=T0 + 30 * DAY, half_life_days=10.0)
    np.testing.assert_allclose(_dense(explicit), expected, rtol=1e-6)
    # ... and one half-life later every weight is halved.
    later = weigh(small, Weighting.TIME_DECAY, as_of=T0 + 40 * DAY, half_life_days=10.0)
    np.testing.assert_allclose(_dense(later), expected / 2, rtol=1e-6)


def test_bm25_damps_a_popular_item_relative_to_count() -> None:
    # Six customers; "pop" is bought by three of them, "rare" by one. u0 bought each once.
    rows = [
        ("u0", "pop", 0, 1.0),
        ("u0", "rare", 0, 1.0),
        ("u1", "pop", 0, 1.0),
        ("u2", "pop", 0, 1.0),
        ("u3", "other", 0, 1.0),
        ("u4", "other", 0, 1.0),
        ("u5", "other", 0, 1.0),
    ]
    events = _events(["u0", "u1", "u2", "u3", "u4", "u5"], ["pop", "rare", "other"], rows)
    counts = _dense(weigh(events, Weighting.COUNT))
    bm25 = _dense(weigh(events, Weighting.BM25))
    assert counts[0, 0] == counts[0, 1] == 1.0
    assert 0 < bm25[0, 0] < bm25[0, 1]

    # Exact values: idf per item, length norm per customer, K1=100, B=0.8.
    k1, b, n = 100.0, 0.8, 6
    row_sums = counts.sum(axis=1)
    norm = (1 - b) + b * row_sums / row_sums.mean()
    idf = math.log(n) - np.log1p((counts > 0).sum(axis=0))
    expected = np.where(counts > 0, counts * (k1 + 1) / (k1 * norm[:, None] + counts) * idf, 0)
    np.testing.assert_allclose(bm25, expected, rtol=1e-5)


def test_every_weighting_keeps_the_bought_pairs(small: Interactions) -> None:
    bought = _dense(weigh(small, Weighting.COUNT)) > 0
    for weighting in Weighting:
        m = weigh(small, weighting)
        assert m.shape == (3, 3), weighting
        assert not (_dense(m)[~bought]).any(), weighting


# --- InteractionMatrix ---------------------------------------------------------------------------


def test_interaction_matrix_refuses_a_mismatched_shape() -> None:
    users, items = Vocabulary(["u0", "u1"]), Vocabulary(["a", "b", "c"])
    with pytest.raises(ValueError, match="does not match"):
        InteractionMatrix(users, items, sp.csr_matrix((3, 2), dtype=np.float32))
    ok = InteractionMatrix(users, items, sp.csr_matrix((2, 3), dtype=np.float32))
    assert ok.shape == (2, 3)


def test_interaction_matrix_from_interactions_uses_the_weighting(small: Interactions) -> None:
    m = InteractionMatrix.from_interactions(small, Weighting.BINARY)
    assert m.users is small.users
    assert m.items is small.items
    np.testing.assert_array_equal(_dense(m.user_items), _dense(weigh(small, Weighting.BINARY)))


# --- PurchaseHistory ---------------------------------------------------------------------------


def test_purchase_history_counts_and_last_time_are_exact(small: Interactions) -> None:
    history = PurchaseHistory.from_interactions(small)
    assert history.shape == (3, 3)
    np.testing.assert_array_equal(_dense(history.counts), [[2, 1, 0], [1, 0, 0], [1, 0, 1]])
    assert history.last_time.dtype == np.float64
    np.testing.assert_array_equal(
        _dense(history.last_time),
        [
            [T0 + 10 * DAY, T0 + 10 * DAY, 0],
            [T0 + 20 * DAY, 0, 0],
            [T0 + 20 * DAY, 0, T0 + 30 * DAY],
        ],
    )


def test_purchase_history_matrices_share_one_sparsity_pattern() -> None:
    # Several customers, repeated lines, same-second lines: entries must line up one to one.
    rng = np.random.default_rng(3)
    n = 400
    users, items = (
        Vocabulary([f"u{i}" for i in range(15)]),
        Vocabulary([f"i{i}" for i in range(12)]),
    )
    time = np.sort(T0 + rng.integers(0, 50, n) * 3600)
    events = Interactions(
        users,
        items,
        rng.integers(0, 15, n).astype(np.int32),
        rng.integers(0, 12, n).astype(np.int32),
        time.astype(np.int64),
        np.ones(n, np.float32),
    )
    history = PurchaseHistory.from_interactions(events)
    np.testing.assert_array_equal(history.counts.indptr, history.last_time.indptr)
    np.testing.assert_array_equal(history.counts.indices, history.last_time.indices)
    assert history.counts.has_sorted_indices
    assert history.last_time.has_sorted_indices
    # Values agree with a plain loop.
    for u in range(15):
        for i in (history.items_of(u)).tolist():
            mine = (events.user == u) & (events.item == i)
            assert history.counts[u, i] == mine.sum()
            assert history.last_time[u, i] == events.time[mine].max()
    assert history.counts.sum() == n


def test_items_of_lists_what_one_customer_bought(small: Interactions) -> None:
    history = PurchaseHistory.from_interactions(small)
    assert history.items_of(0).tolist() == [0, 1]
    assert history.items_of(1).tolist() == [0]
    assert history.items_of(2).tolist() == [0, 2]


def test_purchase_history_of_an_empty_window_is_empty(small: Interactions) -> None:
    # fit_signals builds the trend window this way; a quiet last month must not crash training.
    quiet = small.between(T0 + 100 * DAY, T0 + 130 * DAY)
    history = PurchaseHistory.from_interactions(quiet)
    assert history.shape == (3, 3)
    assert history.counts.nnz == 0
    assert history.last_time.nnz == 0
    assert history.items_of(2).tolist() == []
