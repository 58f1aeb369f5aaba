"""The generated shop has the shapes it promises, and the reader takes it without loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from training.logs import PRESETS, read_purchase_log
from training.synthetic import ShopSpec, generate_shop, write_log

SPEC = ShopSpec(customers=400, items=300, days=120, seed=3)


@pytest.fixture(scope="module")
def shop() -> pa.Table:
    return generate_shop(SPEC)


def test_seeded_generation_is_reproducible(shop: pa.Table) -> None:
    assert generate_shop(SPEC).equals(shop)
    assert not generate_shop(ShopSpec(customers=400, items=300, days=120, seed=4)).equals(shop)


def test_log_is_sorted_and_inside_the_period(shop: pa.Table) -> None:
    seconds = shop["timestamp"].cast("int64").to_numpy()
    assert (np.diff(seconds) >= 0).all()
    assert seconds[-1] - seconds[0] <= SPEC.days * 86_400


def test_one_line_per_item_per_basket(shop: pa.Table) -> None:
    pairs = pc.binary_join_element_wise(shop["basket_id"], shop["item_id"], "|")
    assert len(pc.unique(pairs)) == shop.num_rows


def test_popularity_is_heavy_tailed(shop: pa.Table) -> None:
    _, counts = np.unique(shop["item_id"].to_numpy(zero_copy_only=False), return_counts=True)
    counts = np.sort(counts)[::-1]
    top_decile = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    assert top_decile > 0.4  # a uniform catalog would give 0.1


def test_repeat_purchases_dominate(shop: pa.Table) -> None:
    users = shop["user_id"].to_numpy(zero_copy_only=False)
    items = shop["item_id"].to_numpy(zero_copy_only=False)
    _, first = np.unique(np.char.add(np.char.add(users, "|"), items), return_index=True)
    repeat_share = 1 - len(first) / len(items)
    assert repeat_share > 0.3


@pytest.mark.parametrize("name", ["shop.parquet", "shop.csv", "shop.csv.gz"])
def test_written_log_reads_back_whole(tmp_path: Path, shop: pa.Table, name: str) -> None:
    path = tmp_path / name
    write_log(shop, path)
    log = read_purchase_log(path, PRESETS["generic"])
    assert log.report.rows_read == shop.num_rows
    assert log.report.rows_kept == shop.num_rows
    assert log.report.users == len(pc.unique(shop["user_id"]))
