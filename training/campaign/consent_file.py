"""Read a consent file (CSV, plain or compressed, or Parquet) into an :class:`ConsentLedger`.

Columns: ``customer_id``, ``channel`` (email, personalization, sms), ``status`` (given,
withdrawn) and ``timestamp`` (ISO 8601, UTC when it carries no offset, or epoch seconds; in
Parquet also a timestamp or numeric column). Other columns are ignored.

A bad row (no customer, an unknown channel or status, an unreadable time, a line of the wrong
width) stops the whole read with a message counting the bad rows by kind and naming their first
line numbers. None is skipped: a row that cannot be read may be a withdrawal, and skipping it
would let an older "given" stand, so a file with bad rows is fixed at its source, never guessed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from engine.consent import Channel, ConsentLedger, ConsentRecord, Status
from training.logs import LogError
from training.logs.source import RawTable, read_columns

COLUMNS = {
    "customer_id": "the customer the record is about",
    "channel": "email, personalization or sms",
    "status": "given or withdrawn",
    "timestamp": "when consent was given or withdrawn (ISO 8601 or epoch seconds)",
}
_EPOCH = re.compile(r"[+-]?\d+(\.\d*)?")
_SHOWN_LINES = 5
_SHOWN_KINDS = 5


def read_consent(*paths: Path) -> ConsentLedger:
    """Every record of the consent files (say, the CRM's and the storefront's, exported by
    ``personalize consent-export``); LogError naming the bad rows if there is any."""
    return ConsentLedger(record for path in paths for record in _records(path))


def write_consent(records: Iterable[ConsentRecord], path: Path) -> int:
    """Write records as a consent file (CSV, epoch seconds kept exact); how many."""
    rows = list(records)
    table = pa.table(
        {
            "customer_id": pa.array([r.customer_id for r in rows], pa.string()),
            "channel": pa.array([r.channel.value for r in rows], pa.string()),
            "status": pa.array([r.status.value for r in rows], pa.string()),
            "timestamp": pa.array([r.at for r in rows], pa.float64()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    pa_csv.write_csv(table, partial)
    os.replace(partial, path)  # a reader never sees half a file
    return len(rows)


def _records(path: Path) -> list[ConsentRecord]:
    raw = read_columns(path, COLUMNS)
    if raw.skipped:  # checked first: row numbers below count only the well-formed lines
        shown = ", ".join(map(str, raw.skipped_rows[:_SHOWN_LINES])) or "?"
        raise LogError(
            f"{path}: {raw.skipped} line(s) with the wrong number of fields (lines {shown}); "
            "fix the file: no consent row is skipped"
        )
    bad: dict[str, list[int]] = {}
    records = []
    for row, (customer, channel, status, at) in enumerate(_rows(raw.table)):
        try:
            if not customer:
                raise ValueError("missing customer_id")
            records.append(
                ConsentRecord(
                    customer, Channel.parse(channel), Status.parse(status), parse_time(at)
                )
            )
        except ValueError as exc:
            kind = str(exc).split(" (expected")[0]
            bad.setdefault(kind, []).append(row)
    if bad:
        raise LogError(f"{path}: {_describe(raw, bad)}; fix the file: no consent row is skipped")
    return records


def _rows(table: pa.Table) -> Iterator[tuple[str, str, str, str | float | None]]:
    customers = pc.utf8_trim_whitespace(table["customer_id"].cast(pa.string())).to_pylist()
    channels = table["channel"].cast(pa.string()).to_pylist()
    statuses = table["status"].cast(pa.string()).to_pylist()
    times = table["timestamp"]
    if pa.types.is_timestamp(times.type):
        if times.type.tz is None:
            times = times.cast(pa.timestamp(times.type.unit, "UTC"))
        times = pc.divide(times.cast(pa.int64()), _units_per_second(times.type.unit))
    elif pa.types.is_date(times.type):
        times = times.cast(pa.timestamp("s")).cast(pa.int64())
    for customer, channel, status, at in zip(
        customers, channels, statuses, times.to_pylist(), strict=True
    ):
        yield customer or "", channel or "", status or "", at


def _units_per_second(unit: str) -> float:
    return {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]


def parse_time(value: str | float | None) -> float:
    """Epoch seconds of an ISO 8601 time (UTC unless it has an offset) or of epoch seconds."""
    if isinstance(value, int | float):
        return float(value)
    text = (value or "").strip()
    if _EPOCH.fullmatch(text):
        return float(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("unreadable timestamp") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _describe(raw: RawTable, bad: dict[str, list[int]]) -> str:
    word = "line" if raw.is_csv else "row"
    kinds = sorted(bad.items(), key=lambda kind: (-len(kind[1]), kind[0]))
    parts = [f"{kind} on {word}s {_numbers(raw, rows)}" for kind, rows in kinds[:_SHOWN_KINDS]]
    if len(kinds) > _SHOWN_KINDS:
        parts.append(f"{len(kinds) - _SHOWN_KINDS} more kinds")
    total = sum(map(len, bad.values()))
    return f"{total} bad consent row{'s' if total != 1 else ''} ({'; '.join(parts)})"


def _numbers(raw: RawTable, rows: list[int]) -> str:
    lines = raw.line_numbers(np.asarray(rows, dtype=np.int64), _SHOWN_LINES)
    more = len(rows) - len(lines)
    return ", ".join(map(str, lines)) + (f" and {more} more" if more > 0 else "")
