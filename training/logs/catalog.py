"""Fill item description and category from an optional catalog file beside the log."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from training.logs.convert import Column, plain, to_ids, to_text
from training.logs.formats import LogFormat
from training.logs.source import read_columns


def item_details(items: Column, log_path: Path, fmt: LogFormat) -> tuple[Column, Column] | None:
    """(description, category) per row from the format's catalog, or None if there is none.

    The catalog is optional: a log without one beside it still loads.
    """
    catalog = fmt.catalog
    if catalog is None or not (log_path.parent / catalog.filename).is_file():
        return None
    columns = {catalog.key_col: "catalog item id"}
    for name in (*catalog.description_cols, *catalog.category_cols):
        columns[name] = "catalog item detail"
    table = read_columns(log_path.parent / catalog.filename, columns).table
    keys = to_ids(table[catalog.key_col], upper=fmt.upper_items, numeric=fmt.numeric_ids)
    position = pc.index_in(items, value_set=plain(keys))
    return (
        _first_filled(table, catalog.description_cols, position),
        _first_filled(table, catalog.category_cols, position),
    )


def _first_filled(table: pa.Table, names: tuple[str, ...], position: Column) -> Column:
    """Per log row, the first non-blank value among `names` of the matching catalog row."""
    values = [to_text(table[name]).take(position) for name in names]
    if not values:
        return pa.chunked_array([pa.nulls(len(position), pa.string())])
    return pc.coalesce(*values)
