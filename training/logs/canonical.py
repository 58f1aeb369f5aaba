"""Assemble the kept rows into the one table shape every consumer codes against."""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.logs.catalog import item_details
from training.logs.clean import Rows
from training.logs.convert import plain
from training.logs.formats import LogFormat

LOG_SCHEMA = pa.schema(
    [
        ("user", pa.string()),
        ("item", pa.string()),
        ("time", pa.timestamp("s")),
        ("quantity", pa.float64()),
        ("price", pa.float64()),  # null when the log has no price
        ("basket", pa.string()),  # user@time when the log has no basket id
        ("description", pa.string()),
        ("category", pa.string()),
    ]
)


def canonical_table(
    rows: Rows, keep: np.ndarray, source: Path, fmt: LogFormat, pool: Executor
) -> pa.Table:
    """Kept rows in LOG_SCHEMA, filling what the log lacks, sorted by time (stable)."""
    present = rows.present()
    filtered = pool.map(lambda column: plain(column.filter(keep)), present.values())
    kept = dict(zip(present, filtered, strict=True))
    count = int(keep.sum())
    columns = {
        "quantity": pa.chunked_array([np.ones(count)]),
        "price": pa.chunked_array([pa.nulls(count, pa.float64())]),
        "description": pa.chunked_array([pa.nulls(count, pa.string())]),
        "category": pa.chunked_array([pa.nulls(count, pa.string())]),
        **kept,
    }
    if "basket" not in kept:
        time_text = kept["time"].cast(pa.string())
        columns["basket"] = pc.binary_join_element_wise(kept["user"], time_text, "@")
    details = item_details(kept["item"], source, fmt)
    if details is not None:
        columns["description"] = pc.coalesce(columns["description"], details[0])
        columns["category"] = pc.coalesce(columns["category"], details[1])
    table = pa.table([columns[field.name] for field in LOG_SCHEMA], schema=LOG_SCHEMA)
    seconds = table["time"].cast(pa.int64()).to_numpy()
    if np.any(seconds[1:] < seconds[:-1]):
        table = table.take(pc.sort_indices(table, sort_keys=[("time", "ascending")]))
    return table
