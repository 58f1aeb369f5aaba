"""Per-item metadata taken from a cleaned log (training.dataset)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from training.dataset import item_metadata


def test_item_metadata_keeps_the_latest_text_and_the_median_price() -> None:
    # Lines in time order; item 0 is renamed, item 1's latest line has no text, item 2 has no
    # price, item 3 never appears.
    items = np.array([0, 1, 0, 2, 1, 0, 1], dtype=np.int32)
    table = pa.table({
        "description": ["OLD MUG", "LAMP", None, "SOAP", None, "NEW MUG", None],
        "category": ["kitchen", None, "home", None, None, None, None],
        "price": [2.0, 10.0, 4.0, None, 14.0, 9.0, 11.0],
    })  # fmt: skip
    meta = item_metadata(table, items, 4)
    assert meta["description"].tolist() == ["NEW MUG", "LAMP", "SOAP", ""]
    assert meta["category"].tolist() == ["home", "", "", ""]
    assert meta["price"][0] == 4.0  # median of 2, 4, 9
    assert meta["price"][1] == 11.0  # of 10, 14, 11
    assert math.isnan(meta["price"][2]) and math.isnan(meta["price"][3])


def test_the_median_price_is_numpys_median_of_the_known_prices() -> None:
    # Even and odd counts (the mean of the two middle prices), unknown prices left out.
    rng = np.random.default_rng(3)
    items = rng.integers(0, 40, 2_000).astype(np.int32)
    prices = rng.choice([1.0, 2.5, 3.0, 7.25, 10.0, np.nan], 2_000)
    table = pa.table({"description": [None] * 2_000, "category": [None] * 2_000,
                      "price": pa.array(prices, from_pandas=True)})  # fmt: skip
    got = item_metadata(table, items, 41)["price"]
    for item in range(40):
        known = prices[(items == item) & ~np.isnan(prices)]
        assert got[item] == np.median(known)
    assert math.isnan(got[40])
