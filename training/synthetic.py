"""A generated shop: a realistic purchase log for demos, tests and scale benchmarks.

Real retail logs share a few shapes, and the generator plants each of them so that models have
something true to find: item popularity follows a power law; customers differ widely in how
often they shop; each customer re-buys a small set of staples (repeat purchases dominate) and
explores mostly within two favourite categories (the collaborative signal); items launch over
time, so what is trending moves. Everything is vectorised and seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.matrix import SECONDS_PER_DAY

START = 1_672_531_200  # 2023-01-01T00:00:00Z: a fixed origin keeps seeded logs identical
_ADJECTIVES = ("RED", "BLUE", "VINTAGE", "SMALL", "LARGE", "ROUND", "WOODEN", "GLASS", "PAPER")
_NOUNS = ("MUG", "LANTERN", "CANDLE", "BAG", "FRAME", "BOWL", "CLOCK", "BOX", "TIN", "CARD")


@dataclass(frozen=True)
class ShopSpec:
    customers: int = 2_000
    items: int = 1_500
    categories: int = 12
    days: int = 365
    baskets_per_customer: float = 8.0  # mean over the period; per-customer rates are lognormal
    basket_size: float = 5.0  # mean lines per basket
    staples: int = 8  # items each customer tends to re-buy
    repeat_share: float = 0.55  # share of lines that re-buy a staple
    zipf: float = 1.1  # power-law exponent of item popularity
    seed: int = 0


def generate_shop(spec: ShopSpec) -> pa.Table:
    """A purchase log in the generic format (sorted by time)."""
    rng = np.random.default_rng(spec.seed)
    n_items = spec.items

    # Items: power-law appeal, a category, a price by category, a launch day.
    appeal = 1.0 / np.arange(1, n_items + 1) ** spec.zipf
    rng.shuffle(appeal)
    category = rng.integers(0, spec.categories, n_items)
    price = np.round(rng.lognormal(1.0 + 0.1 * category, 0.5), 2)
    launch = np.where(rng.random(n_items) < 0.7, 0, rng.integers(0, spec.days, n_items))

    # Customers: activity rate, two favourite categories, a staple set.
    rate = rng.lognormal(0.0, 1.0, spec.customers)
    rate *= spec.baskets_per_customer / rate.mean()
    favourites = rng.integers(0, spec.categories, (spec.customers, 2))
    staples = _sample_items(rng, appeal, category, favourites[:, [0]], spec.staples, launch, 0)

    # Baskets: a Poisson number per customer, at uniform times.
    n_baskets = rng.poisson(rate)
    basket_customer = np.repeat(np.arange(spec.customers), n_baskets)
    basket_day = rng.random(len(basket_customer)) * spec.days
    sizes = 1 + rng.poisson(spec.basket_size - 1, len(basket_customer))

    # Lines: a staple, or an item from a favourite (80 %) or any category, available that day.
    line_basket = np.repeat(np.arange(len(basket_customer)), sizes)
    customer = basket_customer[line_basket]
    day = basket_day[line_basket]
    repeat = rng.random(len(line_basket)) < spec.repeat_share
    item = staples[customer, rng.integers(0, spec.staples, len(customer))]
    explore = ~repeat | (launch[item] > day)
    fav = favourites[customer[explore], rng.integers(0, 2, int(explore.sum()))]
    anywhere = rng.random(len(fav)) < 0.2
    fav[anywhere] = rng.integers(0, spec.categories, int(anywhere.sum()))
    item[explore] = _sample_items(rng, appeal, category, fav[:, None], 1, launch, day[explore])[
        :, 0
    ]

    # One line per item per basket, as a till would print it.
    _, first = np.unique(line_basket * n_items + item, return_index=True)
    keep = np.zeros(len(item), dtype=bool)
    keep[first] = True
    line_basket, customer, day, item = line_basket[keep], customer[keep], day[keep], item[keep]

    order = np.argsort(day, kind="stable")
    seconds = (START + day * SECONDS_PER_DAY).astype(np.int64)
    names = np.array([f"{_ADJECTIVES[i % 9]} {_NOUNS[i // 9 % 10]} {i}" for i in range(n_items)])
    return pa.table(
        {
            "user_id": pa.array(np.char.add("c", customer.astype(str))[order]),
            "item_id": pa.array(np.char.add("sku", item.astype(str))[order]),
            "timestamp": pa.array(seconds[order]).cast(pa.timestamp("s")),
            "quantity": pa.array(1 + rng.poisson(1.0, len(item))[order]),
            "price": pa.array(price[item][order]),
            "basket_id": pa.array(np.char.add("b", line_basket.astype(str))[order]),
            "description": pa.array(names[item][order]),
            "category": pa.array(np.char.add("cat", category[item].astype(str))[order]),
        }
    )


def _sample_items(
    rng: np.random.Generator,
    appeal: np.ndarray,
    category: np.ndarray,
    wanted: np.ndarray,
    per_row: int,
    launch: np.ndarray,
    day: np.ndarray | float,
) -> np.ndarray:
    """(rows, per_row) items drawn by appeal within each row's category, launched by ``day``."""
    out = np.empty((len(wanted), per_row), dtype=np.int64)
    day = np.broadcast_to(np.asarray(day, dtype=float), (len(wanted),))
    for cat in np.unique(wanted):
        rows = np.flatnonzero(wanted[:, 0] == cat)
        members = np.flatnonzero(category == cat)
        if len(members) == 0:  # an empty category: fall back to the whole catalog
            members = np.arange(len(appeal))
        # Launch order within the category: a row may draw only items launched by its day.
        members = members[np.argsort(launch[members], kind="stable")]
        available = np.searchsorted(launch[members], day[rows], side="right").clip(min=1)
        cdf = np.cumsum(appeal[members])
        draws = rng.random((len(rows), per_row)) * cdf[available - 1][:, None]
        out[rows] = members[np.searchsorted(cdf, draws, side="right").clip(max=len(members) - 1)]
    return out


def write_log(table: pa.Table, path: Path) -> None:
    """Write as Parquet (``.parquet``) or CSV (``.csv``, gzip-compressed for ``.csv.gz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
        return
    csv_table = table.set_column(
        table.schema.get_field_index("timestamp"),
        "timestamp",
        table["timestamp"].cast(pa.string()),
    )
    compression = "gzip" if path.name.endswith(".gz") else None
    with (
        pa.CompressedOutputStream(path, compression)
        if compression
        else pa.OSFile(str(path), "wb") as sink
    ):
        pacsv.write_csv(csv_table, sink)
