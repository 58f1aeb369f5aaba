"""The exported event log's row shape, and the one place a stream entry is decoded into it.

The stream entry's fields are written by ``engine/profiles/lua/record_global.lua``; if that layout
changes, :func:`decode_entry` is the only code to adapt. Decoding never drops anything: a field
that is missing or does not parse is stored as null, and the trainer's reader reports the row by
file and row number (the export must not lose what the API acknowledged).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

EVENT_LOG_SCHEMA = pa.schema(
    [
        ("stream_id", pa.string()),  # the Redis entry id: what makes a rewrite idempotent
        ("event_id", pa.string()),
        ("visitor_id", pa.string()),
        ("customer_id", pa.string()),  # null for an anonymous visitor
        ("item_id", pa.string()),
        ("type", pa.string()),  # view, click, add_to_cart, purchase
        ("ts", pa.float64()),  # epoch seconds of the event (the client's clock, validated)
    ]
)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_entry(stream_id: str, fields: Mapping[Any, Any]) -> dict[str, Any]:
    """One stream entry as a row of :data:`EVENT_LOG_SCHEMA`."""
    data = {_text(k): _text(v) for k, v in fields.items()}
    ts: float | None
    try:
        ts = float(data.get("ts") or "nan")
    except ValueError:
        ts = None
    if ts is not None and not math.isfinite(ts):
        ts = None
    return {
        "stream_id": stream_id,
        "event_id": data.get("event_id") or None,
        "visitor_id": data.get("visitor_id") or None,
        "customer_id": data.get("customer_id") or None,
        "item_id": data.get("item_id") or None,
        "type": data.get("type") or None,
        "ts": ts,
    }


def entry_ms(stream_id: str) -> int:
    """Milliseconds part of a stream id (when Redis appended the entry)."""
    return int(stream_id.partition("-")[0])


def id_key(stream_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair (ids compare numerically, not as text)."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def partition_date(row: Mapping[str, Any]) -> str:
    """The UTC date partition of a row: the event's own date; the append date when ts is bad."""
    ts = row["ts"]
    seconds = ts if ts is not None else entry_ms(row["stream_id"]) / 1000
    try:
        return datetime.fromtimestamp(seconds, UTC).date().isoformat()
    except (OverflowError, OSError, ValueError):
        return datetime.fromtimestamp(entry_ms(row["stream_id"]) / 1000, UTC).date().isoformat()
