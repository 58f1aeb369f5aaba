"""The cleaning rules, applied in a fixed order; each row is charged to the first rule it breaks.

Order (also the order of LoadReport.dropped):
  unparsable              a line of the wrong width or a value that does not convert
                          (including an empty quantity, price or time)
  missing_user            empty user id (guest checkouts)
  missing_item            empty item id
  cancellation_or_return  basket id with the cancellation prefix, or a negative quantity
  non_product             item id not matching the format's product pattern (postage, fees)
  non_positive_quantity   quantity of zero (negatives were already charged as returns)
  non_positive_price      unit price <= 0 (free samples, write-offs); only with a price column
  duplicate               same canonical values as an earlier line
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.logs.convert import Column
from training.logs.formats import LogFormat


@dataclass(frozen=True)
class Rows:
    """Every data row converted to canonical types, before any rule is applied.

    Optional columns are None when the log lacks them; `unparsable` marks rows
    where a value did not convert.
    """

    user: pa.DictionaryArray
    item: pa.DictionaryArray
    time: Column
    quantity: Column | None
    price: Column | None  # unit price
    basket: pa.DictionaryArray | None
    description: Column | None
    category: Column | None
    unparsable: np.ndarray

    def present(self) -> dict[str, Column | pa.Array]:
        """The columns this log actually has, by canonical name."""
        columns = {
            "user": self.user,
            "item": self.item,
            "time": self.time,
            "quantity": self.quantity,
            "price": self.price,
            "basket": self.basket,
            "description": self.description,
            "category": self.category,
        }
        return {name: column for name, column in columns.items() if column is not None}


def apply_rules(rows: Rows, fmt: LogFormat) -> tuple[np.ndarray, dict[str, int]]:
    """Rows kept by every rule but the last, and how many rows each rule dropped, in order.

    Duplicates are found concurrently (duplicates.py) and charged by drop_duplicates.
    """
    keep = ~rows.unparsable
    dropped = {"unparsable": int(rows.unparsable.sum())}
    for rule, broken in _rule_masks(rows, fmt):
        hit = keep & broken
        dropped[rule] = int(hit.sum())
        keep &= ~hit
    return keep, dropped


def drop_duplicates(keep: np.ndarray, dropped: dict[str, int], duplicate: np.ndarray) -> np.ndarray:
    """Charge the last rule, duplicate.

    It never removes a user, item, basket or time from the kept rows (an identical
    row stays), so counts taken before it remain exact.
    """
    hit = keep & duplicate
    dropped["duplicate"] = int(hit.sum())
    return keep & ~hit


def _rule_masks(rows: Rows, fmt: LogFormat) -> Iterator[tuple[str, np.ndarray]]:
    """Each rule's mask of rows breaking it, in the documented order."""
    nothing = np.zeros(len(rows.unparsable), dtype=bool)
    yield "missing_user", rows.user.is_null().to_numpy(zero_copy_only=False)
    yield "missing_item", rows.item.is_null().to_numpy(zero_copy_only=False)
    cancelled = nothing
    if fmt.cancel_prefix and rows.basket is not None:
        prefixed = pc.starts_with(rows.basket.dictionary, fmt.cancel_prefix)
        cancelled = _per_row(rows.basket, prefixed)
    if rows.quantity is not None:
        cancelled = cancelled | _mask(pc.less(rows.quantity, 0))
    yield "cancellation_or_return", cancelled
    non_product = nothing
    if fmt.product_pattern:
        product = pc.match_substring_regex(rows.item.dictionary, f"^(?:{fmt.product_pattern})$")
        non_product = _per_row(rows.item, pc.invert(product))
    yield "non_product", non_product
    for rule, values in [
        ("non_positive_quantity", rows.quantity),
        ("non_positive_price", rows.price),
    ]:
        yield rule, nothing if values is None else _mask(pc.less_equal(values, 0))


def _per_row(ids: pa.DictionaryArray, per_value: pa.Array) -> np.ndarray:
    """Spread a mask over distinct ids to their rows; rows without an id get False."""
    lookup = np.append(_mask(per_value), False)
    return lookup[pc.fill_null(ids.indices, len(per_value)).to_numpy()]


def _mask(condition: Column | pa.Array) -> np.ndarray:
    """Boolean numpy mask with nulls (unconvertible values) read as False."""
    return pc.fill_null(condition, False).to_numpy(zero_copy_only=False)
