"""Column mappings and cleaning rules for the kinds of purchase log we know."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from training.logs.errors import LogError


@dataclass(frozen=True)
class ItemCatalog:
    """An optional item file beside the log that fills description and category.

    Each text field takes the first non-empty value among its columns, so a
    catalog with sparse detail can fall back to a coarser column.
    """

    filename: str
    key_col: str
    description_cols: tuple[str, ...] = ()
    category_cols: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogFormat:
    """Column mapping + cleaning rules for one kind of log."""

    name: str
    user_col: str
    item_col: str
    time_col: str
    quantity_col: str | None = None  # None: every line counts as quantity 1
    price_col: str | None = None  # unit price (or line total, see price_is_total)
    basket_col: str | None = None  # None: basket = user + timestamp
    description_col: str | None = None
    category_col: str | None = None
    time_format: str | None = None  # None: ISO 8601; "unix": epoch seconds; else strptime
    price_is_total: bool = False  # price_col holds the line total; unit price = total / quantity
    cancel_prefix: str | None = None  # baskets starting with this are cancellations
    product_pattern: str | None = None  # regex a normalised item id must match in full
    upper_items: bool = False  # item ids are case-insensitive codes
    numeric_ids: bool = False  # ids written as numbers ("4.0128e+10", "17.0") become integers
    lenient_cols: tuple[str, ...] = ()  # *_col fields used only when the file has that column
    delimiter: str = ","
    catalog: ItemCatalog | None = None


PRESETS: dict[str, LogFormat] = {
    "online-retail": LogFormat(
        name="online-retail",
        user_col="CustomerID",
        item_col="StockCode",
        time_col="InvoiceDate",
        quantity_col="Quantity",
        price_col="UnitPrice",
        basket_col="InvoiceNo",
        description_col="Description",
        cancel_prefix="C",
        # Products are 5 digits plus an optional variant letter suffix; postage,
        # fees, manual adjustments, samples and gift vouchers do not look like that.
        product_pattern=r"\d{5}[A-Z]*",
        upper_items=True,
    ),
    "complete-journey": LogFormat(
        name="complete-journey",
        user_col="household_id",
        item_col="product_id",
        time_col="transaction_timestamp",
        quantity_col="quantity",
        price_col="sales_value",
        basket_col="basket_id",
        price_is_total=True,
        numeric_ids=True,
        catalog=ItemCatalog(
            filename="products.csv.gz",
            key_col="product_id",
            description_cols=("product_type", "product_category"),
            category_cols=("product_category", "department"),
        ),
    ),
    "generic": LogFormat(
        name="generic",
        user_col="user_id",
        item_col="item_id",
        time_col="timestamp",
        quantity_col="quantity",
        price_col="price",
        basket_col="basket_id",
        description_col="description",
        category_col="category",
        lenient_cols=(
            "quantity_col",
            "price_col",
            "basket_col",
            "description_col",
            "category_col",
        ),
    ),
}

_OVERRIDABLE = frozenset(
    f.name for f in fields(LogFormat) if f.name.endswith("_col") or f.name == "time_format"
)


def resolve_format(name: str, **overrides: str | None) -> LogFormat:
    """Return preset `name` with CLI overrides applied.

    An override of None means "not given"; an empty string means "the file has
    no such column". A column named explicitly must exist in the file.
    """
    try:
        fmt = PRESETS[name]
    except KeyError:
        raise LogError(
            f"unknown log format {name!r}; valid formats: {', '.join(sorted(PRESETS))}"
        ) from None
    unknown = sorted(set(overrides) - _OVERRIDABLE)
    if unknown:
        raise LogError(
            f"cannot override {', '.join(unknown)}; "
            f"valid overrides: {', '.join(sorted(_OVERRIDABLE))}"
        )
    given: dict[str, Any] = {
        key: value or None for key, value in overrides.items() if value is not None
    }
    for key in ("user_col", "item_col", "time_col"):
        if key in given and given[key] is None:
            raise LogError(f"{key} cannot be empty: every log needs a user, item and time column")
    lenient = tuple(col for col in fmt.lenient_cols if col not in given)
    return replace(fmt, **given, lenient_cols=lenient)
