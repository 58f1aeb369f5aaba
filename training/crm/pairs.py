"""The bought-together table of a trained model, for export and for reading.

The artifact stores only each pair's support (baskets holding both items, the top partners per
item) and each item's basket count; confidence and lift follow here, exactly as the API derives
them (``engine.recommender``): confidence = P(partner | item) = support / baskets(item) and
lift = support x baskets / (baskets(item) x baskets(partner)).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from engine.vocab import Vocabulary


class PairSource(Protocol):
    """What the export reads: ``engine.model.Model`` has it all, and so can a tiny test fixture."""

    items: Vocabulary
    description: np.ndarray  # per item
    together: sp.csr_matrix  # items x items: support of the kept pairs
    item_baskets: np.ndarray  # baskets holding each item
    baskets: int  # baskets in the training log


def bought_together(
    model: PairSource,
    *,
    min_support: int = 1,
    per_item: int | None = None,
    item: str | None = None,
) -> pa.Table:
    """One row per (item, partner), each item's partners by support (then lift) descending.

    ``min_support`` drops pairs seen in fewer baskets and ``per_item`` keeps each item's top
    partners; both can only narrow what training kept (its own minimum support and cap). An
    unknown ``item`` raises ValueError.
    """
    if min_support < 1:
        raise ValueError(f"--min-support must be at least 1, got {min_support}")
    if per_item is not None and per_item < 1:
        raise ValueError(f"--per-item must be at least 1, got {per_item}")
    together = model.together
    rows = np.repeat(np.arange(together.shape[0]), np.diff(together.indptr))
    partners = together.indices.astype(np.int64)
    support = together.data.astype(np.int64)
    keep = support >= min_support
    if item is not None:
        index = model.items.index(item)
        if index is None:
            raise ValueError(f"item {item!r} is not in the model")
        keep &= rows == index
    rows, partners, support = rows[keep], partners[keep], support[keep]
    item_baskets = np.asarray(model.item_baskets, dtype=np.float64)
    lift = support * model.baskets / (item_baskets[rows] * item_baskets[partners])
    order = np.lexsort((partners, -lift, -support, rows))
    rows, partners, support, lift = rows[order], partners[order], support[order], lift[order]
    if per_item is not None:
        starts = np.searchsorted(rows, rows)  # first position of each row's block (rows sorted)
        keep = np.arange(len(rows)) - starts < per_item
        rows, partners, support, lift = rows[keep], partners[keep], support[keep], lift[keep]
    return pa.table(
        {
            "item": _text(model.items.ids[rows]),
            "partner": _text(model.items.ids[partners]),
            "item_description": _text(model.description[rows]),
            "partner_description": _text(model.description[partners]),
            "support": support,
            "item_baskets": item_baskets[rows].astype(np.int64),
            "partner_baskets": item_baskets[partners].astype(np.int64),
            "confidence": support / item_baskets[rows],
            "lift": lift,
            "reason": pa.array(
                [reason(int(s), float(x)) for s, x in zip(support, lift, strict=True)],
                pa.string(),
            ),
        }
    )


def top_pairs(table: pa.Table, n: int) -> pa.Table:
    """The ``n`` pairs with the most support, each unordered pair once.

    A pair is shown from its less-bought item, the direction with the higher confidence.
    """
    item = table["item"].to_numpy(zero_copy_only=False).astype(str)
    partner = table["partner"].to_numpy(zero_copy_only=False).astype(str)
    support = table["support"].to_numpy()
    confidence = table["confidence"].to_numpy()
    order = np.lexsort((partner, item, -confidence, -support))
    low, high = np.where(item < partner, item, partner), np.where(item < partner, partner, item)
    _, first = np.unique(np.char.add(np.char.add(low, "\t"), high)[order], return_index=True)
    return table.take(order[np.sort(first)][:n])


def reason(support: int, lift: float) -> str:
    """The sentence a merchandiser reads, the same as the API's reason."""
    return f"bought together in {support} baskets, lift {lift:.1f}"


def _text(values: np.ndarray) -> pa.Array:
    return pa.array(values.tolist(), pa.string())
