"""RFM segments on a five-customer log whose every answer was worked out by hand."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from engine.vocab import Vocabulary
from training.crm.segments import SEGMENTS, Segments, _quintiles, compute_segments
from training.dataset import LineCodes, basket_codes
from training.logs import LOG_SCHEMA

# As of the end of 2024-01-31: the exclusive bound is 2024-02-01 00:00 UTC.
AS_OF = int(datetime(2024, 2, 1, tzinfo=UTC).timestamp())

# (customer, basket, day of January 2024, hour, quantity, unit price)
LINES = [
    # a: one line per basket on days 1, 11, 21, 31: F 4, gaps 10 10 10, recency 0, M 100.
    *[("a", f"a{day}", day, 10, 1.0, 25.0) for day in (1, 11, 21, 31)],
    # b: two baskets on day 2 (one purchase day), one on day 20: F 3, gap 18, recency 11, M 30.
    ("b", "b1", 2, 9, 2.0, 5.0),
    ("b", "b2", 2, 18, 2.0, 5.0),
    ("b", "b3", 20, 9, 2.0, 5.0),
    # c: days 1 and 3: F 2, gap 2, recency 28 (lapsed), M 400.
    ("c", "c1", 1, 12, 1.0, 200.0),
    ("c", "c2", 3, 12, 1.0, 200.0),
    # d: one basket of two lines on day 15: F 1, no gap, recency 16, M 50.
    ("d", "d1", 15, 11, 3.0, 10.0),
    ("d", "d1", 15, 11, 1.0, 20.0),
    # e: days 3, 10, 12: F 3 (tied with b), gaps 7 and 2 (median 4.5), recency 19, M 60;
    # plus a purchase after the as-of day, which must be ignored.
    ("e", "e1", 3, 8, 1.0, 20.0),
    ("e", "e2", 10, 8, 1.0, 20.0),
    ("e", "e3", 12, 8, 1.0, 20.0),
    ("e", "e4", 36, 8, 1.0, 999.0),  # 5 February
]

EXPECTED = {  # customer: (recency, frequency, monetary, (R, F, M), segment, usual gap, lapsed)
    # R: recency 0 < 11 < 16 < 19 < 28 -> a 5, b 4, d 3, e 2, c 1 (distinct: score = rank).
    # F: d 1 < c 2 < b = e 3 < a 4; b and e share ranks 3-4, mid 3.5 -> both score 4.
    # M: b 30 < d 50 < e 60 < a 100 < c 400 -> b 1, d 2, e 3, a 4, c 5.
    # FM = (F + M) / 2 rounded half up: a 5, b 3, c 4, d 2, e 4.
    "a": (0, 4, 100.0, (5, 5, 4), "champions", 10.0, False),
    "b": (11, 3, 30.0, (4, 4, 1), "potential-loyalist", 18.0, False),
    "c": (28, 2, 400.0, (1, 2, 5), "at-risk", 2.0, True),
    "d": (16, 1, 50.0, (3, 1, 2), "about-to-sleep", np.nan, False),
    "e": (19, 3, 60.0, (2, 4, 3), "at-risk", 4.5, True),
}


def _table(lines: list[tuple[str, str, int, int, float, float]], priced: bool = True) -> pa.Table:
    """A cleaned log (LOG_SCHEMA, sorted by time) of the lines, days in January 2024 UTC."""
    lines = sorted(lines, key=lambda line: (line[2], line[3]))
    seconds = [int(datetime(2024, 1, 1, line[3], tzinfo=UTC).timestamp()) + (line[2] - 1) * 86_400
               for line in lines]  # fmt: skip
    return pa.table(
        {
            "user": [line[0] for line in lines],
            "item": ["sku"] * len(lines),
            "time": pa.array(seconds, pa.int64()).cast(pa.timestamp("s")),
            "quantity": [line[4] for line in lines],
            "price": [line[5] if priced else None for line in lines],
            "basket": [line[1] for line in lines],
            "description": [None] * len(lines),
            "category": [None] * len(lines),
        },
        schema=LOG_SCHEMA,
    )


def _assert_same(first: Segments, second: Segments) -> None:
    for field in dataclasses.fields(Segments):
        np.testing.assert_array_equal(getattr(first, field.name), getattr(second, field.name))


def test_segments_from_the_trainers_line_codes_are_those_of_the_table() -> None:
    table = _table(LINES)
    users, user = Vocabulary.encode(table["user"])
    codes = LineCodes(users, user, basket_codes(table["basket"]))
    every_line = AS_OF + 10 * 86_400  # after e's February purchase
    _assert_same(
        compute_segments(table, as_of=every_line, codes=codes),
        compute_segments(table, as_of=every_line),
    )
    # Lines after as_of are left out: the codes, of every line, are not used then.
    _assert_same(
        compute_segments(table, as_of=AS_OF, codes=codes), compute_segments(table, as_of=AS_OF)
    )


def test_rfm_segments_and_win_back_match_the_hand_count() -> None:
    result = compute_segments(_table(LINES), as_of=AS_OF)
    assert sorted(result.customers.tolist()) == sorted(EXPECTED)
    assert result.lines_after_as_of == 1
    assert result.monetary_unit == "revenue"
    assert result.scores.dtype == np.int8
    for row, customer in enumerate(result.customers):
        recency, frequency, monetary, scores, segment, gap, lapsed = EXPECTED[str(customer)]
        assert result.recency_days[row] == recency, customer
        assert result.frequency[row] == frequency, customer
        assert result.monetary[row] == pytest.approx(monetary), customer
        assert tuple(result.scores[row]) == scores, customer
        assert result.segment[row] == segment, customer
        np.testing.assert_equal(result.usual_gap_days[row], gap)
        assert result.lapsed[row] == lapsed, customer


def test_a_basket_shared_by_customers_counts_once_for_each() -> None:
    # Basket "s" holds lines of a and of b, interleaved a, b, a: one occasion for each of them,
    # however its lines alternate (the counting follows the basket's first customer).
    shared = [
        ("a", "s", 1, 9, 1.0, 10.0),
        ("b", "s", 1, 10, 1.0, 10.0),
        ("a", "s", 1, 11, 1.0, 10.0),
        ("b", "s", 1, 12, 1.0, 10.0),
        ("b", "b1", 5, 9, 1.0, 10.0),
        ("c", "c1", 2, 9, 1.0, 10.0),
    ]
    result = compute_segments(_table(shared), as_of=AS_OF)
    frequency = dict(zip(result.customers.tolist(), result.frequency.tolist(), strict=True))
    assert frequency == {"a": 1, "b": 2, "c": 1}
    gaps = dict(zip(result.customers.tolist(), result.usual_gap_days.tolist(), strict=True))
    assert gaps["b"] == 4.0  # days 1 and 5


def test_lines_out_of_time_order_give_the_same_segments() -> None:
    table = _table(LINES)
    shuffled = table.take(np.random.default_rng(3).permutation(table.num_rows))
    ordered, scrambled = (
        compute_segments(table, as_of=AS_OF),
        compute_segments(shuffled, as_of=AS_OF),
    )
    rows = Vocabulary(scrambled.customers).indices(ordered.customers)
    for field in ("recency_days", "frequency", "monetary", "scores", "segment", "usual_gap_days"):
        np.testing.assert_array_equal(getattr(ordered, field), getattr(scrambled, field)[rows])


def test_the_tolerance_widens_the_usual_gap() -> None:
    # c: 28 days > 5 x 2; e: 19 days < 5 x 4.5.
    result = compute_segments(_table(LINES), as_of=AS_OF, tolerance=5.0)
    assert result.customers[result.lapsed].tolist() == ["c"]


def test_summary_adds_up_and_shares_sum_to_one() -> None:
    result = compute_segments(_table(LINES), as_of=AS_OF)
    rows = {row.segment: row for row in result.summary()}
    assert list(rows) == ["champions", "potential-loyalist", "about-to-sleep", "at-risk"]
    assert [row.segment for row in result.summary()] == [s for s in SEGMENTS if s in rows]
    at_risk = rows["at-risk"]
    assert (at_risk.customers, at_risk.win_back) == (2, 2)
    assert at_risk.revenue == pytest.approx(460.0)
    assert at_risk.revenue_share == pytest.approx(460.0 / 640.0)
    assert at_risk.mean_recency_days == pytest.approx(23.5)
    assert at_risk.mean_frequency == pytest.approx(2.5)
    assert at_risk.mean_monetary == pytest.approx(230.0)
    assert sum(row.customers for row in rows.values()) == 5
    assert sum(row.customer_share for row in rows.values()) == pytest.approx(1.0)
    assert sum(row.revenue_share for row in rows.values()) == pytest.approx(1.0)


def test_revenue_concentration() -> None:
    result = compute_segments(_table(LINES), as_of=AS_OF)
    curve = result.top_share_curve()
    assert len(curve) == 101
    assert (curve[0], curve[100]) == (0.0, pytest.approx(1.0))
    assert result.top20_share == pytest.approx(400.0 / 640.0)  # c alone is the top 20 %
    assert curve[40] == pytest.approx(500.0 / 640.0)  # c and a
    assert curve[21] == pytest.approx(500.0 / 640.0)  # 21 % of 5 customers rounds up to 2
    assert np.all(np.diff(curve) >= 0)
    assert result.to_manifest()["top20_share"] == pytest.approx(0.625)


def test_win_back_table_puts_the_biggest_spenders_first() -> None:
    result = compute_segments(_table(LINES), as_of=AS_OF)
    full = result.table()
    assert full.num_rows == 5
    assert full.column_names == [
        "customer", "segment", "r", "f", "m", "recency_days", "frequency", "monetary",
        "usual_gap_days", "lapsed",
    ]  # fmt: skip
    assert full["usual_gap_days"].null_count == 1  # d bought on one day only
    win_back = result.table(win_back_only=True)
    assert win_back["customer"].to_pylist() == ["c", "e"]


def test_an_earlier_as_of_ignores_later_purchases() -> None:
    # As of the end of 2024-01-10: a (days 1), b (day 2), c (days 1, 3), e (days 3, 10).
    result = compute_segments(_table(LINES), as_of=AS_OF - 21 * 86_400)
    assert sorted(result.customers.tolist()) == ["a", "b", "c", "e"]
    assert result.lines_after_as_of == 8
    row = {str(c): i for i, c in enumerate(result.customers)}
    assert result.recency_days[row["e"]] == 0
    assert result.frequency[row["b"]] == 2
    assert result.recency_days[row["a"]] == 9


def test_as_of_before_the_first_purchase_is_refused() -> None:
    first = int(datetime(2024, 1, 1, 10, tzinfo=UTC).timestamp())  # a's first basket
    with pytest.raises(ValueError, match="before the log's first purchase"):
        compute_segments(_table(LINES), as_of=first)
    with pytest.raises(ValueError, match="before the log's first purchase"):
        compute_segments(_table(LINES), as_of=AS_OF - 365 * 86_400)
    assert len(compute_segments(_table(LINES), as_of=first + 1).customers) == 1


def test_bad_parameters_and_empty_logs_are_refused() -> None:
    with pytest.raises(ValueError, match="tolerance must be positive"):
        compute_segments(_table(LINES), tolerance=0.0)
    with pytest.raises(ValueError, match="no purchases"):
        compute_segments(_table(LINES).slice(0, 0))


def test_a_log_without_prices_ranks_by_units() -> None:
    result = compute_segments(_table(LINES, priced=False), as_of=AS_OF)
    assert result.monetary_unit == "units"
    row = {str(c): i for i, c in enumerate(result.customers)}
    assert result.monetary[row["b"]] == 6.0  # three lines of 2 units
    assert result.monetary[row["d"]] == 4.0


def test_default_as_of_is_just_after_the_last_purchase() -> None:
    table = _table(LINES)
    result = compute_segments(table)
    last = int(table["time"].cast(pa.int64()).to_numpy().max())
    assert result.as_of == last + 1
    assert result.lines_after_as_of == 0
    assert result.recency_days.min() == 0  # e, on the last day


@pytest.mark.parametrize("n", [5, 10, 100, 1000])
def test_distinct_values_split_into_exact_quintiles(n: int) -> None:
    values = np.random.default_rng(n).permutation(n).astype(np.float64)
    scores = _quintiles(values)
    assert np.bincount(scores, minlength=6).tolist() == [0] + [n // 5] * 5
    order = np.argsort(values)
    assert np.all(np.diff(scores[order]) >= 0)  # a higher value never scores lower


def test_ties_share_a_score() -> None:
    # 6 of 10 customers bought once: one block at mid-rank 3.5 -> score 2, never split.
    values = np.array([1, 1, 1, 1, 1, 1, 2, 3, 4, 5])
    assert _quintiles(values).tolist() == [2, 2, 2, 2, 2, 2, 4, 4, 5, 5]
    assert _quintiles(np.full(7, 3.0)).tolist() == [3] * 7  # all equal: the middle
    assert _quintiles(np.array([42.0])).tolist() == [3]
    assert set(_quintiles(np.arange(7)).tolist()) == {1, 2, 3, 4, 5}
