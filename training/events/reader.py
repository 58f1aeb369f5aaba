"""Read the exported event log (``personalize export-events``) back as one validated table.

Bad rows (a type the engine does not know, a missing id or time) are dropped, counted by rule
and located by file and row; an event id seen twice (the API remembers ids for a bounded time,
so a client's late retry can be appended again) is kept once and counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.session import EVENT_WEIGHTS
from training.events.schema import EVENT_LOG_SCHEMA
from training.logs import LogError

_LOCATIONS_REPORTED = 10


@dataclass
class EventReport:
    """Accounting of one read: rows_read == rows_kept + sum(dropped.values())."""

    source: str
    files: int
    rows_read: int
    rows_kept: int
    dropped: dict[str, int]  # rule -> rows
    bad_rows: list[str]  # first few "file#row" (rows from 1) of rows dropped as bad
    by_type: dict[str, int]  # kept rows per event type

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_table(self) -> str:
        lines = [
            f"events      {self.source} ({self.files} files)",
            f"rows read   {self.rows_read:>11,}",
        ]
        lines += [f"  - {rule:<8}  {n:>11,}" for rule, n in self.dropped.items()]
        lines.append(f"rows kept   {self.rows_kept:>11,}")
        lines += [f"  {kind:<10}{n:>11,}" for kind, n in self.by_type.items()]
        if self.bad_rows:
            lines.append(f"bad rows at {', '.join(self.bad_rows)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class EventLog:
    table: pa.Table  # EVENT_LOG_SCHEMA, sorted by ts
    report: EventReport


def read_event_log(root: Path) -> EventLog:
    """All ``date=*/part-*.parquet`` files under ``root``, validated and deduplicated."""
    paths = sorted(root.glob("date=*/part-*.parquet"))
    if not paths:
        raise LogError(f"{root}: no exported events (date=*/part-*.parquet); run export-events")
    tables, where = [], []
    for path in paths:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise LogError(f"{path}: not a readable Parquet file ({exc})") from None
        missing = set(EVENT_LOG_SCHEMA.names) - set(table.column_names)
        if missing:
            raise LogError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        tables.append(table.select(EVENT_LOG_SCHEMA.names).cast(EVENT_LOG_SCHEMA))
        where += [(path, n) for n in range(1, table.num_rows + 1)]
    table = pa.concat_tables(tables)
    bad = np.zeros(table.num_rows, dtype=bool)
    dropped: dict[str, int] = {}
    rules = {
        "unknown type": pc.invert(pc.is_in(table["type"], pa.array(list(EVENT_WEIGHTS)))),
        "no id": pc.or_(
            pc.or_(pc.is_null(table["event_id"]), pc.is_null(table["visitor_id"])),
            pc.is_null(table["item_id"]),
        ),
        "no time": pc.is_null(table["ts"]),
    }
    for rule, mask in rules.items():
        hit = pc.fill_null(mask, True).to_numpy(zero_copy_only=False) & ~bad
        dropped[rule] = int(hit.sum())
        bad |= hit
    locations = [f"{where[i][0]}#{where[i][1]}" for i in np.flatnonzero(bad)[:_LOCATIONS_REPORTED]]
    table = table.filter(pa.array(~bad))
    _, first = np.unique(table["event_id"].to_numpy(zero_copy_only=False), return_index=True)
    dropped["duplicate event_id"] = table.num_rows - len(first)
    table = table.take(pa.array(np.sort(first)))
    table = table.take(pc.sort_indices(table, [("ts", "ascending"), ("stream_id", "ascending")]))
    counts = pc.value_counts(table["type"]).to_pylist()
    report = EventReport(
        source=str(root),
        files=len(paths),
        rows_read=len(where),
        rows_kept=table.num_rows,
        dropped=dropped,
        bad_rows=locations,
        by_type={c["values"]: c["counts"] for c in counts},
    )
    return EventLog(table, report)
