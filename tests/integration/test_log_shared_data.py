"""The purchase-log reader on the real public datasets in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from training.logs import LOG_SCHEMA, PRESETS, PurchaseLog, read_purchase_log

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def online_retail(shared_data: Path) -> PurchaseLog:
    return read_purchase_log(
        shared_data / "online-retail" / "online_retail.csv.gz", PRESETS["online-retail"]
    )


@pytest.fixture(scope="module")
def complete_journey(shared_data: Path) -> PurchaseLog:
    return read_purchase_log(
        shared_data / "completejourney-sample" / "transactions_sample.csv.gz",
        PRESETS["complete-journey"],
    )


def assert_sorted_by_time(log: PurchaseLog) -> None:
    seconds = log.table["time"].cast(pa.int64()).to_numpy()
    assert np.all(seconds[1:] >= seconds[:-1])


def test_online_retail_counts(online_retail: PurchaseLog) -> None:
    report = online_retail.report
    assert report.rows_read == 541_909
    assert report.rows_read == report.rows_kept + sum(report.dropped.values())
    assert report.dropped["missing_user"] == 135_080  # as the dataset README says
    for rule in ("cancellation_or_return", "non_product", "non_positive_price", "duplicate"):
        assert report.dropped[rule] > 0, rule
    assert report.dropped["unparsable"] == 0
    assert report.unparsable_lines == []
    assert report.rows_kept == online_retail.table.num_rows
    assert 4_000 < report.users <= 4_372
    assert 3_000 < report.items <= 4_070
    assert report.time_min.startswith("2010-12-01")
    assert report.time_max.startswith("2011-12-09")


def test_online_retail_table_is_clean(online_retail: PurchaseLog) -> None:
    table = online_retail.table
    assert table.schema == LOG_SCHEMA
    assert_sorted_by_time(online_retail)
    items = table["item"]
    assert not pc.any(pc.utf8_is_lower(items)).as_py()  # 85123a was folded into 85123A
    assert pc.all(pc.match_substring_regex(items, r"^\d{5}[A-Z]*$")).as_py()
    assert not pc.any(pc.starts_with(table["basket"], "C")).as_py()
    assert pc.min(table["quantity"]).as_py() > 0
    assert pc.min(table["price"]).as_py() > 0
    assert table["user"].null_count == 0
    assert not pc.any(pc.match_substring(table["user"], ".")).as_py()  # integers, not 17850.0
    assert table.group_by(table.column_names).aggregate([]).num_rows == table.num_rows


def test_complete_journey(complete_journey: PurchaseLog) -> None:
    report = complete_journey.report
    table = complete_journey.table
    assert report.rows_read == 75_000
    assert report.rows_read == report.rows_kept + sum(report.dropped.values())
    assert report.dropped["non_positive_quantity"] > 0
    assert table.schema == LOG_SCHEMA
    assert_sorted_by_time(complete_journey)
    assert pc.min(table["price"]).as_py() > 0
    assert not pc.any(pc.match_substring(table["basket"], "e+")).as_py()  # 4.0128e+10 fixed
    assert report.time_min.startswith("2017-01-01")
    # products.csv.gz sits beside the sample, so almost every line gets a category.
    assert table["category"].null_count < 0.01 * table.num_rows
