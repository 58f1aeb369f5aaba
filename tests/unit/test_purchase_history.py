"""PurchaseHistory's first purchase times and the buy-again rule (due) on hand-made histories."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from engine.matrix import SECONDS_PER_DAY, Interactions, PurchaseHistory
from engine.vocab import Vocabulary

T0 = 1_700_000_000
DAY = SECONDS_PER_DAY
USERS = ["u0", "u1", "u2"]
ITEMS = ["a", "b", "c", "d"]


def _history(rows: Sequence[tuple[str, str, float]]) -> PurchaseHistory:
    """History from (user, item, day offset from T0) purchase lines, in the order given."""
    users, items = Vocabulary(USERS), Vocabulary(ITEMS)
    return PurchaseHistory.from_interactions(
        Interactions(
            users,
            items,
            np.array([users.index(r[0]) for r in rows], dtype=np.int32),
            np.array([items.index(r[1]) for r in rows], dtype=np.int32),
            np.array([T0 + int(r[2] * DAY) for r in rows], dtype=np.int64),
            np.ones(len(rows), dtype=np.float32),
        )
    )


# u0: a at days 0, 10, 20 (every 10 days); b once at day 5; c at days 3 and 33 (every 30 days).
# u1: a at days 7 and 2, listed out of time order; d twice on day 4 (two lines, one moment).
# u2: nothing.
ROWS = [
    ("u0", "a", 0),
    ("u1", "a", 7),
    ("u0", "c", 3),
    ("u1", "d", 4),
    ("u0", "b", 5),
    ("u0", "a", 10),
    ("u1", "a", 2),
    ("u1", "d", 4),
    ("u0", "a", 20),
    ("u0", "c", 33),
]


@pytest.fixture
def history() -> PurchaseHistory:
    return _history(ROWS)


def _at(day: float) -> float:
    return T0 + day * DAY


def _due(history: PurchaseHistory, user: str, day: float) -> list[str]:
    return [ITEMS[i] for i in history.due(USERS.index(user), _at(day))]


def test_first_time_is_the_earliest_purchase_of_each_pair(history: PurchaseHistory) -> None:
    assert history.first_time.dtype == np.float64
    np.testing.assert_array_equal(
        history.first_time.toarray(),
        [
            [_at(0), _at(5), _at(3), 0],
            [_at(2), 0, 0, _at(4)],
            [0, 0, 0, 0],
        ],
    )
    np.testing.assert_array_equal(
        history.last_time.toarray(),
        [
            [_at(20), _at(5), _at(33), 0],
            [_at(7), 0, 0, _at(4)],
            [0, 0, 0, 0],
        ],
    )
    np.testing.assert_array_equal(history.counts.toarray(), [[3, 1, 2, 0], [2, 0, 0, 2], [0] * 4])


def test_first_time_shares_the_sparsity_pattern_of_the_counts(history: PurchaseHistory) -> None:
    # due() reads the three matrices' data arrays side by side.
    for matrix in (history.first_time, history.last_time):
        np.testing.assert_array_equal(matrix.indptr, history.counts.indptr)
        np.testing.assert_array_equal(matrix.indices, history.counts.indices)
        assert matrix.has_sorted_indices


def test_an_item_bought_once_is_never_due() -> None:
    history = _history([("u0", "b", 5)])
    for day in (5, 6, 100, 10_000):
        assert _due(history, "u0", day) == []


@pytest.mark.parametrize("day", [20, 25, 29, 29.99])
def test_an_item_is_not_due_before_its_usual_interval_has_passed(day: float) -> None:
    history = _history([("u0", "a", 0), ("u0", "a", 10), ("u0", "a", 20)])
    assert _due(history, "u0", day) == []


@pytest.mark.parametrize("day", [30, 30.5, 45, 365])
def test_an_item_is_due_once_its_usual_interval_has_passed(day: float) -> None:
    # Bought at days 0, 10 and 20: every 10 days, so due from day 30 on.
    history = _history([("u0", "a", 0), ("u0", "a", 10), ("u0", "a", 20)])
    assert _due(history, "u0", day) == ["a"]


def test_due_applies_each_items_own_interval(history: PurchaseHistory) -> None:
    assert _due(history, "u0", 25) == []
    assert _due(history, "u0", 30) == ["a"]  # a's interval (10 days) has passed, c's (30) not
    assert _due(history, "u0", 62) == ["a"]
    assert _due(history, "u0", 63) == ["a", "c"]  # b, bought once, never
    # Out-of-order lines: first day 2, last day 7, so due 5 days after day 7.
    assert _due(history, "u1", 11) == []
    assert _due(history, "u1", 12) == ["a"]
    assert _due(history, "u2", 1000) == []


def test_two_lines_of_one_basket_are_one_purchase_never_due(history: PurchaseHistory) -> None:
    # u1 bought d on two lines of one basket (same moment): counted twice, but bought once, so
    # it has no usual interval to be due after (an interval of 0 would make it due at once).
    assert history.counts[USERS.index("u1"), ITEMS.index("d")] == 2
    for day in (4, 5, 100):
        assert "d" not in _due(history, "u1", day)


@pytest.mark.parametrize("day", [0, 5, 12, 40, 400])
def test_not_due_is_the_rest_of_what_the_user_bought(history: PurchaseHistory, day: float) -> None:
    for user in range(len(USERS)):
        due = set(history.due(user, _at(day)).tolist())
        not_due = set(history.not_due(user, _at(day)).tolist())
        assert not due & not_due
        assert due | not_due == set(history.items_of(user).tolist())


@pytest.mark.parametrize("day", [0, 5, 12, 40, 400])
def test_hiding_what_is_not_due_clears_exactly_those_items(
    history: PurchaseHistory, day: float
) -> None:
    for user in range(len(USERS)):
        allowed = np.ones(len(ITEMS), dtype=bool)
        allowed[0] = False  # flags already cleared stay cleared
        history.hide_not_due(allowed, user, _at(day))
        hidden = set(np.flatnonzero(~allowed).tolist())
        assert hidden == set(history.not_due(user, _at(day)).tolist()) | {0}


def test_events_in_time_order_build_the_same_history(history: PurchaseHistory) -> None:
    """Time-ordered events (what the trainer passes) and ROWS, out of time order, give the
    same canonical matrices."""
    ordered = _history(sorted(ROWS, key=lambda row: row[2]))
    for name in ("counts", "last_time", "first_time"):
        got, expected = getattr(ordered, name), getattr(history, name)
        assert got.has_canonical_format and expected.has_canonical_format, name
        np.testing.assert_array_equal(got.indptr, expected.indptr)
        np.testing.assert_array_equal(got.indices, expected.indices)
        np.testing.assert_array_equal(got.data, expected.data)
    np.testing.assert_array_equal(
        ordered.counts.toarray(), [[3, 1, 2, 0], [2, 0, 0, 2], [0, 0, 0, 0]]
    )


def test_a_random_log_in_any_order_gives_each_pairs_count_first_and_last_time() -> None:
    """Many users and items, repeated pairs, equal times, shuffled: every entry is its pair's
    number of lines and earliest and latest time, each row's columns ascending."""
    rng = np.random.default_rng(7)
    n_users, n_items, n = 40, 25, 3000
    users = Vocabulary([f"u{i}" for i in range(n_users)])
    items = Vocabulary([f"i{i}" for i in range(n_items)])
    user = rng.integers(0, n_users - 1, n).astype(np.int32)  # the last user buys nothing
    item = rng.integers(0, n_items, n).astype(np.int32)
    when = T0 + rng.integers(0, 50, n).astype(np.int64) * DAY
    history = PurchaseHistory.from_interactions(
        Interactions(users, items, user, item, when, np.ones(n, dtype=np.float32))
    )
    expected: dict[tuple[int, int], list[int]] = {}
    for u, i, t in zip(user.tolist(), item.tolist(), when.tolist(), strict=True):
        entry = expected.setdefault((u, i), [0, t, t])
        entry[0] += 1
        entry[1], entry[2] = min(entry[1], t), max(entry[2], t)
    assert history.counts.nnz == len(expected)
    for matrix in (history.counts, history.first_time, history.last_time):
        assert matrix.has_canonical_format
    counts, first, last = (
        m.todok() for m in (history.counts, history.first_time, history.last_time)
    )
    for (u, i), (lines, earliest, latest) in expected.items():
        assert (counts[u, i], first[u, i], last[u, i]) == (lines, earliest, latest)
    assert history.items_of(n_users - 1).size == 0
