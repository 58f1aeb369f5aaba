"""The exported event log read back as training input: bad rows reported by file and row,
repeated event ids kept once, visitors mapped to customers, purchases never counted twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.session import EVENT_WEIGHTS
from engine.vocab import Vocabulary
from training.events.feedback import event_weights, split_events
from training.events.reader import read_event_log
from training.events.schema import EVENT_LOG_SCHEMA, decode_entry, partition_date
from training.logs import LOG_SCHEMA, LoadReport, LogError, PurchaseLog

DAY = 86_400
T0 = 1_700_000_000.0


def _row(n: int, visitor: str, item: str, kind: str | None, ts: float | None, customer=None):
    return {"stream_id": f"{n}-0", "event_id": f"e{n}", "visitor_id": visitor,
            "customer_id": customer, "item_id": item, "type": kind, "ts": ts}  # fmt: skip


def _write(root: Path, date: str, name: str, rows: list[dict]) -> Path:
    path = root / f"date={date}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=EVENT_LOG_SCHEMA), path)
    return path


def _log(rows: list[tuple[str, str, float]]) -> PurchaseLog:
    n = len(rows)
    table = pa.table(
        {
            "user": [r[0] for r in rows],
            "item": [r[1] for r in rows],
            "time": pa.array([int(r[2]) for r in rows], pa.int64()).cast(pa.timestamp("s")),
            "quantity": np.ones(n),
            "price": pa.nulls(n, pa.float64()),
            "basket": [f"b{i}" for i in range(n)],
            "description": pa.nulls(n, pa.string()),
            "category": pa.nulls(n, pa.string()),
        },
        schema=LOG_SCHEMA,
    )
    report = LoadReport("log", "", "generic", n, n, {}, [], 0, 0, 0, "", "")
    return PurchaseLog(table, report)


def test_bad_rows_are_counted_and_located_and_repeated_ids_kept_once(tmp_path: Path) -> None:
    good = _write(tmp_path, "2023-11-14", "part-a.parquet", [
        _row(1, "v1", "i1", "view", T0), _row(2, "v1", "i2", "click", T0 + 1),
        _row(3, "v2", "i1", "teleport", T0 + 2),
    ])  # fmt: skip
    late = _write(tmp_path, "2023-11-15", "part-b.parquet", [
        _row(4, "v2", "i3", "purchase", None), _row(1, "v1", "i1", "view", T0),
        _row(5, "v3", "i4", "add_to_cart", T0 + DAY),
    ])  # fmt: skip
    log = read_event_log(tmp_path)
    report = log.report
    assert report.rows_read == 6 and report.rows_kept == 3
    assert report.dropped == {"unknown type": 1, "no id": 0, "no time": 1, "duplicate event_id": 1}
    assert report.bad_rows == [f"{good}#3", f"{late}#1"]
    assert log.table["event_id"].to_pylist() == ["e1", "e2", "e5"]
    assert report.by_type == {"view": 1, "click": 1, "add_to_cart": 1}


def test_a_directory_without_an_export_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="no exported events"):
        read_event_log(tmp_path)


def test_decoding_keeps_a_malformed_entry_for_the_reader_to_report() -> None:
    row = decode_entry("1700000000000-3", {"event_id": "e1", "type": "click", "ts": "soon"})
    assert row["ts"] is None and row["item_id"] is None and row["event_id"] == "e1"
    # Partitioned by the day Redis appended it, since the event's own time is unknown.
    assert partition_date(row) == "2023-11-14"


def test_visitors_map_to_customers_and_logged_purchases_are_not_added_twice() -> None:
    log = _log([("c1", "i1", T0), ("c1", "i2", T0 + DAY)])
    events = pa.Table.from_pylist([
        _row(1, "v1", "i3", "click", T0),  # anonymous now, linked later: c1's
        _row(2, "v1", "i1", "purchase", T0 + 60, customer="c1"),  # same day as the log's
        _row(3, "v1", "i4", "purchase", T0 + 120, customer="c1"),  # not in the log
        _row(4, "v9", "i4", "purchase", T0 + 180),  # anonymous: feedback at weight 1
        _row(5, "v9", "i5", "view", T0 + 200),
    ], schema=EVENT_LOG_SCHEMA)  # fmt: skip
    weights = event_weights({"click": 0.3, "view": None})
    split = split_events(events, log, weights)
    assert split.report["purchases_already_in_log"] == 1
    assert split.purchases["user"].to_pylist() == ["c1"]
    assert split.purchases["item"].to_pylist() == ["i4"]
    assert split.people == [("c", "c1"), ("v", "v9"), ("v", "v9")]
    assert split.weight.tolist() == pytest.approx([0.3, 1.0, EVENT_WEIGHTS["view"]])
    combined = split.with_log(log)
    users, _ = Vocabulary.encode(combined.table["user"])
    items, _ = Vocabulary.encode(
        pa.chunked_array([*combined.table["item"].chunks, split.item_ids()])
    )
    feedback = split.encode(users, items)
    assert (feedback.n_users, feedback.n_extra) == (1, 1)
    matrix = feedback.matrix(as_of=int(T0) + 190)  # v9's view comes later
    assert matrix.shape == (2, len(items))
    assert matrix[0, items.index("i3")] == pytest.approx(0.3)
    assert matrix[1, items.index("i4")] == pytest.approx(1.0)
    assert matrix[1, items.index("i5")] == 0


def test_event_weights_are_the_engines_unless_overridden_within_zero_and_one() -> None:
    assert event_weights({}) == dict(EVENT_WEIGHTS)
    with pytest.raises(ValueError, match="click weight must be between 0 and 1"):
        event_weights({"click": 2.0})
