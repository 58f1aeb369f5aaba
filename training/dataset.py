"""From a cleaned purchase log to the engine's event columns and per-item metadata."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.matrix import Interactions
from engine.vocab import Vocabulary


def interactions_from_table(table: pa.Table, extra_items: pa.Array | None = None) -> Interactions:
    """Encode the canonical log columns (user, item, time, quantity) into vocabularies.

    ``extra_items``: more items for the vocabulary, after the log's own (items that only
    exported events mention). Which items exist must not depend on who buys them later, or a
    hold-out would keep exactly the clicks on items bought in its test period.
    """
    users, user_codes = Vocabulary.encode(table["user"])
    column = table["item"]
    if extra_items is not None:
        column = pa.chunked_array([*column.chunks, extra_items], pa.string())
    items, item_codes = Vocabulary.encode(column)
    item_codes = item_codes[: table.num_rows]
    time = table["time"].cast(pa.timestamp("s")).cast(pa.int64()).to_numpy()
    quantity = table["quantity"].to_numpy().astype(np.float32)
    return Interactions(users, items, user_codes, item_codes, time, quantity)


def item_metadata(table: pa.Table, items: Vocabulary) -> dict[str, np.ndarray]:
    """Description, category (latest non-empty) and unit price (median) per item.

    Arrays are in item-index order; an item the log says nothing about gets "" or NaN.
    """
    # "last" is an ordered aggregation, which Arrow only runs single-threaded.
    grouped = table.group_by("item", use_threads=False).aggregate(
        [("description", "last"), ("category", "last"), ("price", "approximate_median")]
    )
    index = items.indices(grouped["item"].to_pylist())
    out: dict[str, np.ndarray] = {}
    for column, name in (("description_last", "description"), ("category_last", "category")):
        values = np.full(len(items), "", dtype=object)
        values[index] = pc.fill_null(grouped[column], "").to_numpy(zero_copy_only=False)
        out[name] = values.astype(str)
    price = np.full(len(items), np.nan, dtype=np.float64)
    price[index] = pc.fill_null(grouped["price_approximate_median"], np.nan).to_numpy()
    out["price"] = price
    return out
