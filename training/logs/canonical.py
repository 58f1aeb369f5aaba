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


# The id columns whose codes the table's consumers may reuse (PurchaseLog.ids).
ID_COLUMNS = ("user", "item", "basket")


def canonical_table(
    rows: Rows, keep: np.ndarray, source: Path, fmt: LogFormat, pool: Executor
) -> tuple[pa.Table, dict[str, pa.DictionaryArray]]:
    """Kept rows in LOG_SCHEMA, filling what the log lacks, sorted by time (stable); and the id
    columns the log has as the dictionary codes they were decoded from, in the table's order."""
    present = rows.present()
    order = _kept_in_time_order(present["time"], keep)
    selected = list(
        pool.map(lambda column: column if order is None else column.take(order), present.values())
    )
    ids = {
        name: column
        for name, column in zip(present, selected, strict=True)
        if name in ID_COLUMNS and isinstance(column, pa.DictionaryArray)
    }
    kept = dict(zip(present, pool.map(plain, selected), strict=True))
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
    return pa.table([columns[field.name] for field in LOG_SCHEMA], schema=LOG_SCHEMA), ids


def _kept_in_time_order(time: pa.ChunkedArray, keep: np.ndarray) -> np.ndarray | None:
    """The kept rows' indices in time order (equal times in file order), or None when that is
    every row as it stands: one ``take`` per column selects and sorts, and a clean, sorted
    log is not copied at all (10M lines: 0.5 s of filters that kept every row)."""
    seconds = pc.fill_null(time.cast(pa.int64()), 0).to_numpy()
    rows = None if keep.all() else np.flatnonzero(keep)  # no 10M-row gathers for a clean log
    if rows is not None:
        seconds = seconds[rows]
    if not np.any(seconds[1:] < seconds[:-1]):
        return rows
    order = np.argsort(seconds, kind="stable")
    return order if rows is None else rows[order]
