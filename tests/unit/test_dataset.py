"""From a cleaned log to the engine's columns (training.dataset): ids, per-item metadata."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from training.dataset import basket_codes, interactions_from_table, item_metadata
from training.logs import PRESETS, PurchaseLog, read_purchase_log


def test_the_readers_id_codes_give_the_vocabularies_the_strings_give(tmp_path: Path) -> None:
    # Out of time order, with " u2" to trim, a cancelled line (the only one of item "gone" and
    # basket "C9"), a missing customer and a duplicate: the reader's dictionaries hold values of
    # dropped lines, which must not become customers, items or baskets.
    lines = [
        "user_id,item_id,timestamp,quantity,price,basket_id",
        "u3,b,2024-01-05 10:00:00,1,2.0,k3",
        " u2,a,2024-01-02 10:00:00,1,2.0,k2",
        "u1,gone,2024-01-01 09:00:00,-1,2.0,C9",
        ",a,2024-01-01 09:30:00,1,2.0,k0",
        "u1,a,2024-01-01 10:00:00,1,2.0,k1",
        "u1,c,2024-01-01 10:00:00,2,3.0,k1",
        "u1,c,2024-01-01 10:00:00,2,3.0,k1",
        "u2,b,2024-01-03 10:00:00,1,2.0,k4",
    ]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log = read_purchase_log(path, PRESETS["generic"])
    assert sorted(log.ids) == ["basket", "item", "user"]
    from_codes = interactions_from_table(log.table, ids=log.ids)
    rebuilt = PurchaseLog(log.table, log.report)  # as a log built from a table: no codes
    assert rebuilt.ids == {}
    from_strings = interactions_from_table(rebuilt.table, ids=rebuilt.ids)
    assert from_codes.users.ids.tolist() == from_strings.users.ids.tolist() == ["u1", "u2", "u3"]
    assert from_codes.items.ids.tolist() == from_strings.items.ids.tolist() == ["a", "c", "b"]
    np.testing.assert_array_equal(from_codes.user, from_strings.user)
    np.testing.assert_array_equal(from_codes.item, from_strings.item)
    assert from_codes.user.dtype == from_strings.user.dtype
    baskets = basket_codes(log.table["basket"], log.ids["basket"])
    np.testing.assert_array_equal(baskets, basket_codes(log.table["basket"]))
    assert baskets.tolist() == [0, 0, 1, 2, 3]  # k1 k1 k2 k4 k3, the duplicate dropped


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
