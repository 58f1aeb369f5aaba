"""Purchase-log reader: cleaning rules, formats, inputs and every bad-input path."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from training.logs import (
    LOG_SCHEMA,
    PRESETS,
    LoadReport,
    LogError,
    LogFormat,
    PurchaseLog,
    duplicates,
    read_purchase_log,
    resolve_format,
)

RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
GENERIC_HEADER = "user_id,item_id,timestamp"
RULES = [
    "unparsable",
    "missing_user",
    "missing_item",
    "cancellation_or_return",
    "non_product",
    "non_positive_quantity",
    "non_positive_price",
    "duplicate",
]


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def retail(tmp_path: Path, *lines: str, name: str = "retail.csv") -> PurchaseLog:
    path = write(tmp_path / name, RETAIL_HEADER, *lines)
    return read_purchase_log(path, PRESETS["online-retail"])


def check_invariant(report: LoadReport) -> None:
    assert list(report.dropped) == RULES
    assert report.rows_read == report.rows_kept + sum(report.dropped.values())


# One line per rule, with the line number it sits on in the file (header = line 1).
RULE_LINES = [
    "536365,85123A,HEART HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",  # 2 kept
    "536366,85123A,HEART HOLDER,6,2010-12-01 08:27:00,2.55,,United Kingdom",  # 3 no user
    "536367,,NO CODE,1,2010-12-01 08:28:00,1.00,17850,United Kingdom",  # 4 no item
    "C536368,85123A,HEART HOLDER,-6,2010-12-01 08:29:00,2.55,17850,United Kingdom",  # 5 cancel
    "536369,71053,LANTERN,-2,2010-12-01 08:30:00,3.39,17850,United Kingdom",  # 6 return
    "536370,POST,POSTAGE,1,2010-12-01 08:31:00,18.00,17850,United Kingdom",  # 7 non-product
    "536370,m,Manual,1,2010-12-01 08:31:00,0.50,17850,United Kingdom",  # 8 non-product
    "536371,71053,LANTERN,0,2010-12-01 08:32:00,3.39,17850,United Kingdom",  # 9 zero quantity
    "536372,71053,LANTERN,1,2010-12-01 08:33:00,0.00,17850,United Kingdom",  # 10 zero price
    "536365,85123A,HEART HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",  # 11 duplicate
    "536365, 85123a ,HEART HOLDER,6,2010-12-01 08:26:00,2.55, 17850 ,United Kingdom",  # 12 dup
    "536373,71053,LANTERN",  # 13 wrong width
    "536374,71053,LANTERN,abc,2010-12-01 08:34:00,3.39,17850,United Kingdom",  # 14 bad number
    "536375,71053,LANTERN,1,yesterday,3.39,17850,United Kingdom",  # 15 bad time
    "536376,84406B,COAT HANGER,8,2010-12-01 08:35:00,2.75,13047,United Kingdom",  # 16 kept
]


def test_each_rule_drops_exactly_its_rows(tmp_path: Path) -> None:
    log = retail(tmp_path, *RULE_LINES)
    report = log.report
    assert report.dropped == {
        "unparsable": 3,
        "missing_user": 1,
        "missing_item": 1,
        "cancellation_or_return": 2,
        "non_product": 2,
        "non_positive_quantity": 1,
        "non_positive_price": 1,
        "duplicate": 2,
    }
    assert (report.rows_read, report.rows_kept) == (15, 2)
    assert report.unparsable_lines == [13, 14, 15]
    check_invariant(report)
    assert log.table.column("item").to_pylist() == ["85123A", "84406B"]
    assert (report.users, report.items, report.baskets) == (2, 2, 2)
    assert (report.time_min, report.time_max) == ("2010-12-01T08:26:00", "2010-12-01T08:35:00")


def test_a_row_is_charged_to_the_first_rule_it_breaks(tmp_path: Path) -> None:
    log = retail(
        tmp_path,
        "C1,POST,x,-1,2010-12-01 08:00:00,0,,UK",  # no user, cancelled, non-product, price 0
        "C2,POST,x,-1,2010-12-01 08:00:00,0,1,UK",  # cancelled, non-product, price 0
        "3,POST,x,0,2010-12-01 08:00:00,0,1,UK",  # non-product, zero quantity, price 0
        "4,22222,x,0,2010-12-01 08:00:00,0,1,UK",  # zero quantity, price 0
    )
    assert log.report.dropped["missing_user"] == 1
    assert log.report.dropped["cancellation_or_return"] == 1
    assert log.report.dropped["non_product"] == 1
    assert log.report.dropped["non_positive_quantity"] == 1
    assert log.report.dropped["non_positive_price"] == 0
    check_invariant(log.report)


def test_duplicates_keep_the_first_line_and_compare_canonical_values(tmp_path: Path) -> None:
    log = retail(
        tmp_path,
        "1,22222,MUG,2,2010-12-01 08:00:00,1.5,7,United Kingdom",
        "1,22222,MUG,2,2010-12-01 08:00:00,1.5,7,France",  # only an unmapped column differs
        "1,22222,MUG,3,2010-12-01 08:00:00,1.5,7,United Kingdom",  # quantity differs: kept
        "2,22222,MUG,2,2010-12-01 08:00:00,1.5,7,United Kingdom",  # basket differs: kept
        "1,22222,MUG ,2,2010-12-01 08:00:00,1.5,7,United Kingdom",  # trailing blank: duplicate
    )
    assert log.report.dropped["duplicate"] == 2
    assert log.table.column("quantity").to_pylist() == [2.0, 3.0, 2.0]
    assert log.table.column("basket").to_pylist() == ["1", "1", "2"]


@pytest.mark.parametrize("with_quantity", [True, False])
def test_duplicate_candidates_are_exactly_the_rows_whose_keys_repeat(with_quantity: bool) -> None:
    # Against a count of the (time, item, quantity) triples themselves, nulls counted as zero.
    rng = np.random.default_rng(11)
    n = 5_000
    seconds = rng.integers(-50, 400, n)
    items = rng.integers(0, 40, n)
    units = rng.integers(0, 3, n).astype(float)
    nulls = rng.random(n) < 0.02
    time = pa.chunked_array([pa.array(seconds, mask=nulls).cast(pa.timestamp("s"))])
    item = pa.DictionaryArray.from_arrays(
        pa.array(items, pa.int32(), mask=rng.random(n) < 0.02),
        pa.array([str(i) for i in range(40)]),
    )
    quantity = pa.chunked_array([pa.array(units, mask=rng.random(n) < 0.02)])
    triples = list(zip(
        pc.fill_null(time.cast(pa.int64()), 0).to_pylist(),
        pc.fill_null(item.indices, 0).to_pylist(),
        pc.fill_null(quantity, 0.0).to_pylist() if with_quantity else [0] * n,
        strict=True,
    ))  # fmt: skip
    counts = Counter(triples)
    expected = [counts[triple] > 1 for triple in triples]
    found = duplicates.candidates(time, item, quantity if with_quantity else None)
    assert found.tolist() == expected
    assert 0 < sum(expected) < n


@pytest.mark.parametrize("n", [2, 3, 63, 64, 1_000, 70_000])
@pytest.mark.parametrize("kind", ["spread", "few values", "all equal"])
def test_repeated_hashes_are_found_whatever_their_buckets(n: int, kind: str) -> None:
    # The hashes are bucketed by their top bits before each bucket is sorted: every value
    # occurring twice or more must come out once, in ascending order, as a full count says.
    rng = np.random.default_rng(n)
    if kind == "spread":
        keys = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
        keys[rng.integers(0, n, n // 10 + 1)] = keys[rng.integers(0, n, n // 10 + 1)]
    elif kind == "few values":
        keys = rng.integers(0, 2**63, 5, dtype=np.int64).astype(np.uint64)[rng.integers(0, 5, n)]
    else:
        keys = np.full(n, 2**64 - 1, dtype=np.uint64)
    values, counts = np.unique(keys, return_counts=True)
    np.testing.assert_array_equal(duplicates._repeated(keys), values[counts > 1])


def test_unparsable_lines_report_the_first_ten_line_numbers(tmp_path: Path) -> None:
    good = "1,22222,MUG,1,2010-12-01 08:00:00,1.5,7,UK"
    lines = [good.replace("08:00", f"08:{minute:02d}") for minute in range(5)]
    lines += ["too,few"] * 3 + ["1,22222,MUG,x,2010-12-01 09:00:00,1.5,7,UK"] * 6
    lines += ["1,2,3,4,5,6,7,8,9"] * 3
    log = retail(tmp_path, *lines)
    assert log.report.dropped["unparsable"] == 12
    assert log.report.unparsable_lines == [7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    assert log.report.rows_kept == 5
    check_invariant(log.report)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("chunk", [5, 1 << 22])
def test_unparsable_line_numbers_count_blank_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, newline: str, chunk: int
) -> None:
    # Tiny chunks split lines (and CRLF pairs) across reads.
    monkeypatch.setattr("training.logs.lines._CHUNK", chunk)
    text = newline.join(
        [GENERIC_HEADER, "u,i,2020-01-01", "", "u,j,2020-01-02", "bad", "", "", "u,k,nope", ""]
    )
    path = tmp_path / "blank.csv"
    path.write_bytes(text.encode())
    report = read_purchase_log(path, PRESETS["generic"]).report
    assert (report.rows_read, report.rows_kept) == (4, 2)
    assert report.unparsable_lines == [5, 8]


def test_a_stray_nul_byte_is_an_unparsable_line_not_a_binary_file(tmp_path: Path) -> None:
    good = [f"u,i{n},2020-01-01" for n in range(20)]
    path = write(tmp_path / "nul.csv", GENERIC_HEADER, "u,i,2020-01-01", "\x00\x01", *good)
    report = read_purchase_log(path, PRESETS["generic"]).report
    assert (report.rows_kept, report.unparsable_lines) == (21, [3])


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_utf16_is_not_accepted(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes(f"{GENERIC_HEADER}\nu,i,2020-01-01\n".encode(encoding))
    assert "not a text CSV" in raises_log_error(path, PRESETS["generic"])


def test_empty_numbers_and_non_finite_values_are_unparsable(tmp_path: Path) -> None:
    log = retail(
        tmp_path,
        "1,22222,MUG,,2010-12-01 08:00:00,1.5,7,UK",
        "1,22222,MUG,1,2010-12-01 08:00:00,nan,7,UK",
        "1,22222,MUG,inf,2010-12-01 08:00:00,1.5,7,UK",
        "1,22222,MUG,1,,1.5,7,UK",
        "1,22222,MUG, 4 ,2010-12-01 08:00:00, 1.5 ,7,UK",
    )
    assert log.report.dropped["unparsable"] == 4
    assert log.report.unparsable_lines == [2, 3, 4, 5]
    assert log.table.column("quantity").to_pylist() == [4.0]


def test_table_has_the_canonical_schema_sorted_by_time_stably(tmp_path: Path) -> None:
    log = retail(
        tmp_path,
        "3,33333,C,1,2010-12-02 10:00:00,1.0,7,UK",
        "1,11111,A,1,2010-12-01 10:00:00,1.0,7,UK",
        "2,22222,B,1,2010-12-02 10:00:00,1.0,7,UK",
        "0,00000,Z,1,2010-12-01 10:00:00,1.0,7,UK",
    )
    assert log.table.schema == LOG_SCHEMA
    assert log.table.column("item").to_pylist() == ["11111", "00000", "33333", "22222"]
    assert log.table.column("time").type == pa.timestamp("s")
    assert log.table.column("category").null_count == 4


@pytest.mark.parametrize("dropped_at", [0, 2, 4])
def test_dropped_rows_leave_the_rest_sorted_by_time_stably(tmp_path: Path, dropped_at: int) -> None:
    lines = [
        "3,33333,C,1,2010-12-02 10:00:00,1.0,7,UK",
        "1,11111,A,1,2010-12-01 10:00:00,1.0,7,UK",
        "2,22222,B,1,2010-12-02 10:00:00,1.0,7,UK",
        "0,00000,Z,1,2010-12-01 10:00:00,1.0,7,UK",
    ]
    lines.insert(dropped_at, "C9,44444,D,-1,2010-12-01 09:00:00,1.0,7,UK")  # a cancellation
    log = retail(tmp_path, *lines)
    assert log.report.dropped["cancellation_or_return"] == 1
    assert log.table.column("item").to_pylist() == ["11111", "00000", "33333", "22222"]
    assert log.table.column("description").to_pylist() == ["A", "Z", "C", "B"]


def test_ids_are_trimmed_and_items_upper_cased_for_online_retail(tmp_path: Path) -> None:
    log = retail(
        tmp_path,
        " 536365 , 85123a ,HEART,1,2010-12-01 08:26:00,2.55, 17850 ,UK",
        "536366,15056bl,  UMBRELLA  ,1,2010-12-01 08:27:00,2.55,17850,UK",
    )
    assert log.table.column("user").to_pylist() == ["17850", "17850"]
    assert log.table.column("item").to_pylist() == ["85123A", "15056BL"]
    assert log.table.column("basket").to_pylist() == ["536365", "536366"]
    assert log.table.column("description").to_pylist() == ["HEART", "UMBRELLA"]
    assert log.report.dropped["non_product"] == 0


def test_generic_ids_keep_their_case(tmp_path: Path) -> None:
    path = write(tmp_path / "g.csv", GENERIC_HEADER, "u1, Ab ,2020-01-01", "u1,ab,2020-01-01")
    log = read_purchase_log(path, PRESETS["generic"])
    assert log.table.column("item").to_pylist() == ["Ab", "ab"]
    assert log.report.items == 2


def test_the_report_counts_the_ids_of_kept_lines_only(tmp_path: Path) -> None:
    path = write(
        tmp_path / "g.csv",
        "user_id,item_id,timestamp,quantity,basket_id",
        "u3,b,2024-01-05,1,k3",
        "u1,gone,2024-01-01,-1,C9",  # a return: its item and basket are on no kept line
        ",a,2024-01-01,1,k0",  # no customer
        "u1,a,2024-01-01,1,k1",
        "u1,c,2024-01-01,2,k1",
        "u2,b,2024-01-03,1,",  # kept, without a basket
    )
    report = read_purchase_log(path, PRESETS["generic"]).report
    assert (report.rows_kept, report.users, report.items, report.baskets) == (4, 3, 3, 2)


def test_generic_log_without_quantity_or_price(tmp_path: Path) -> None:
    path = write(
        tmp_path / "g.csv", GENERIC_HEADER, "u1,i1,2020-01-01 10:00:00", "u2,i1,2020-01-02"
    )
    log = read_purchase_log(path, PRESETS["generic"])
    assert log.table.schema == LOG_SCHEMA
    assert log.table.column("quantity").to_pylist() == [1.0, 1.0]
    assert log.table.column("price").null_count == 2
    assert log.table.column("basket").to_pylist() == [
        "u1@2020-01-01 10:00:00",
        "u2@2020-01-02 00:00:00",
    ]
    assert log.report.dropped["non_positive_price"] == 0
    check_invariant(log.report)


def test_column_overrides_map_any_header(tmp_path: Path) -> None:
    path = write(
        tmp_path / "shop.csv",
        "who,what,when,n,cost,order",
        "a,x,2021-05-01 12:00:00,2,3.5,o1",
        "b,y,2021-05-01 13:00:00,1,0,o2",
    )
    fmt = resolve_format(
        "generic",
        user_col="who",
        item_col="what",
        time_col="when",
        quantity_col="n",
        price_col="cost",
        basket_col="order",
        time_format=None,
    )
    log = read_purchase_log(path, fmt)
    assert log.table.to_pylist()[0] == {
        "user": "a",
        "item": "x",
        "time": datetime(2021, 5, 1, 12),
        "quantity": 2.0,
        "price": 3.5,
        "basket": "o1",
        "description": None,
        "category": None,
    }
    assert log.report.dropped["non_positive_price"] == 1


def test_an_empty_override_means_the_log_has_no_such_column(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", RETAIL_HEADER, "1,22222,MUG,3,2010-12-01 08:00:00,-1,7,UK")
    fmt = resolve_format("online-retail", price_col="", quantity_col=None)
    log = read_purchase_log(path, fmt)
    assert log.table.column("price").to_pylist() == [None]
    assert log.table.column("quantity").to_pylist() == [3.0]


@pytest.mark.parametrize(
    ("time_format", "values"),
    [
        (
            None,
            [
                "2011-03-04 05:06:07",
                "2011-03-04T05:06:07",
                "2011-03-04T05:06:07.890Z",
                " 2011-03-04 05:06:07 ",
                "2011-03-04 05:06",
            ],
        ),
        ("unix", ["1299215167", "1299215167.9", " 1299215167 "]),
        ("%d/%m/%Y %H:%M:%S", ["04/03/2011 05:06:07", "4/3/2011 05:06:07"]),
    ],
)
def test_time_formats(tmp_path: Path, time_format: str | None, values: list[str]) -> None:
    lines = [f"u,i{n},{value}" for n, value in enumerate(values)]
    path = write(tmp_path / "t.csv", GENERIC_HEADER, *lines, "u,bad,not a time")
    log = read_purchase_log(path, resolve_format("generic", time_format=time_format))
    times = set(log.table.column("time").to_pylist())
    assert times <= {datetime(2011, 3, 4, 5, 6, 7), datetime(2011, 3, 4, 5, 6)}
    assert log.report.rows_kept == len(values)
    assert log.report.unparsable_lines == [len(values) + 2]


def test_gzip_input_matches_plain_and_is_fingerprinted_by_file_bytes(tmp_path: Path) -> None:
    plain = write(tmp_path / "r.csv", RETAIL_HEADER, *RULE_LINES)
    packed = tmp_path / "r.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a = read_purchase_log(plain, PRESETS["online-retail"])
    b = read_purchase_log(packed, PRESETS["online-retail"])
    assert a.table.equals(b.table)
    assert a.report.dropped == b.report.dropped
    assert a.report.unparsable_lines == b.report.unparsable_lines
    assert b.report.fingerprint == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert b.report.source == str(packed)


def test_compression_is_detected_from_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(gzip.compress(b"user_id,item_id,timestamp\nu,i,2020-01-01\n"))
    assert read_purchase_log(path, PRESETS["generic"]).report.rows_kept == 1


def test_parquet_input_with_typed_columns(tmp_path: Path) -> None:
    table = pa.table(
        {
            "InvoiceNo": ["1", "C2", "3"],
            "StockCode": ["22222", "22222", "post"],
            "Description": ["MUG", "MUG", "POSTAGE"],
            "Quantity": pa.array([2, -2, 1], pa.int64()),
            "InvoiceDate": pa.array(
                [datetime(2010, 12, 1, 8, 0, 0, 500000)] * 3, pa.timestamp("us", tz="UTC")
            ),
            "UnitPrice": [1.5, 1.5, 18.0],
            "CustomerID": pa.array([17850.0, 17850.0, None]),
        }
    )
    path = tmp_path / "retail.parquet"
    pq.write_table(table, path)
    log = read_purchase_log(path, PRESETS["online-retail"])
    assert log.table.schema == LOG_SCHEMA
    assert log.table.to_pylist() == [
        {
            "user": "17850",
            "item": "22222",
            "time": datetime(2010, 12, 1, 8),
            "quantity": 2.0,
            "price": 1.5,
            "basket": "1",
            "description": "MUG",
            "category": None,
        }
    ]
    assert log.report.dropped["missing_user"] == 1
    assert log.report.dropped["cancellation_or_return"] == 1
    check_invariant(log.report)


def test_parquet_bad_values_are_unparsable_rows(tmp_path: Path) -> None:
    times = ["2020-01-01", "?"]
    table = pa.table({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": times})
    pq.write_table(table, tmp_path / "g.parquet")
    log = read_purchase_log(tmp_path / "g.parquet", PRESETS["generic"])
    assert log.report.dropped["unparsable"] == 1
    assert log.report.unparsable_lines == [2]  # Parquet rows are numbered from 1


def test_complete_journey_unit_price_numeric_ids_and_catalog(tmp_path: Path) -> None:
    header = "household_id,store_id,basket_id,product_id,quantity,sales_value,transaction_timestamp"
    write(
        tmp_path / "transactions.csv",
        header,
        "2261,309,31625220889,940996,2.0,3.86,2017-01-28 19:06:53",
        "2223,381,4.0128e+10,900000,1.0,1.00,2017-09-28 05:22:06",
        "2223,381,40128000000,123,0.0,0.0,2017-09-28 05:22:06",
    )
    path = tmp_path / "transactions.csv"
    bare = read_purchase_log(path, PRESETS["complete-journey"])
    assert bare.table.column("basket").to_pylist() == ["31625220889", "40128000000"]
    assert bare.table.column("price").to_pylist() == [1.93, 1.0]
    assert bare.table.column("category").null_count == 2
    assert bare.report.dropped["non_positive_quantity"] == 1
    products = "product_id,department,brand,product_category,product_type\n"
    products += "940996,GROCERY,National,FRZN ICE,ICE - CRUSHED/CUBED\n"
    products += "9e+05,COSMETICS,National,,\n"
    (tmp_path / "products.csv.gz").write_bytes(gzip.compress(products.encode()))
    joined = read_purchase_log(path, PRESETS["complete-journey"])
    assert joined.table.column("description").to_pylist() == ["ICE - CRUSHED/CUBED", None]
    assert joined.table.column("category").to_pylist() == ["FRZN ICE", "COSMETICS"]
    assert joined.report.fingerprint == bare.report.fingerprint


def test_nothing_kept_still_reports(tmp_path: Path) -> None:
    log = retail(tmp_path, "1,22222,MUG,1,2010-12-01 08:00:00,1.5,,UK")
    assert log.report.rows_kept == 0
    assert log.table.num_rows == 0
    assert log.table.schema == LOG_SCHEMA
    assert (log.report.time_min, log.report.time_max) == ("", "")
    check_invariant(log.report)


def test_utf8_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfuser_id,item_id,timestamp\r\nu,i,2020-01-01\r\n")
    assert read_purchase_log(path, PRESETS["generic"]).table.column("user").to_pylist() == ["u"]


def test_report_serialises_and_prints(tmp_path: Path) -> None:
    report = retail(tmp_path, *RULE_LINES).report
    data = json.loads(json.dumps(report.to_dict()))
    assert data["dropped"]["duplicate"] == 2
    assert data["unparsable_lines"] == [13, 14, 15]
    table = report.format_table()
    for rule in RULES:
        assert rule in table
    assert "15" in table and report.fingerprint in table


def test_progress_bar_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "r.csv", RETAIL_HEADER, *RULE_LINES)
    quiet = read_purchase_log(path, PRESETS["online-retail"])
    assert capsys.readouterr().err == ""
    loud = read_purchase_log(path, PRESETS["online-retail"], progress=True)
    captured = capsys.readouterr()
    assert "r.csv" in captured.err and captured.out == ""
    assert quiet.table.equals(loud.table)


def test_presets_and_resolve_format() -> None:
    assert {"online-retail", "complete-journey", "generic"} <= set(PRESETS)
    fmt = resolve_format("generic", user_col="customer", quantity_col="qty")
    assert isinstance(fmt, LogFormat)
    assert (fmt.user_col, fmt.item_col, fmt.quantity_col) == ("customer", "item_id", "qty")
    # Naming a column makes it required; the ones left alone stay optional.
    assert "quantity_col" not in fmt.lenient_cols
    assert {"price_col", "basket_col", "description_col", "category_col"} <= set(fmt.lenient_cols)
    assert resolve_format("online-retail") == PRESETS["online-retail"]


# ---- bad input: always a one-line LogError naming the problem -------------------------------


def raises_log_error(path: Path, fmt: LogFormat | None = None) -> str:
    with pytest.raises(LogError) as caught:
        read_purchase_log(path, fmt or PRESETS["online-retail"])
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    message = raises_log_error(tmp_path / "nope.csv")
    assert "nope.csv" in message and "no such file" in message


def test_directory(tmp_path: Path) -> None:
    assert "directory" in raises_log_error(tmp_path)


@pytest.mark.parametrize("content", [b"", b"\n\n", gzip.compress(b"")])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    assert "empty" in raises_log_error(path)


def test_header_without_data(tmp_path: Path) -> None:
    assert "no data lines" in raises_log_error(write(tmp_path / "h.csv", RETAIL_HEADER))


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)) * 4, gzip.compress(bytes(range(256)) * 4), "caf\xe9,x\n".encode("latin-1")],
)
def test_binary_or_non_utf8_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "blob.csv"
    path.write_bytes(content)
    message = raises_log_error(path)
    assert "blob.csv" in message and "not a text CSV" in message


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(gzip.compress(("\n".join([RETAIL_HEADER, *RULE_LINES]) * 50).encode())[:300])
    assert "bad.csv.gz" in raises_log_error(path)


def test_non_utf8_data_after_the_header(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"user_id,item_id,timestamp\n" + "caf\xe9,i,2020-01-01\n".encode("latin-1"))
    assert "latin.csv" in raises_log_error(path, PRESETS["generic"])


def test_missing_required_column_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "g.csv", GENERIC_HEADER, "u,i,2020-01-01")
    message = raises_log_error(path)
    assert "'CustomerID'" in message
    assert "user_id, item_id, timestamp" in message
    assert "--format" in message and "--user-col" in message


def test_overridden_optional_column_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path / "g.csv", GENERIC_HEADER, "u,i,2020-01-01")
    message = raises_log_error(path, resolve_format("generic", quantity_col="qty"))
    assert "'qty'" in message and "--quantity-col" in message


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00garbage" * 10)
    message = raises_log_error(path)
    assert "broken.parquet" in message and "Parquet" in message


def test_parquet_missing_column(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1]}), tmp_path / "a.parquet")
    message = raises_log_error(tmp_path / "a.parquet")
    assert "'CustomerID'" in message and "columns: a" in message


def test_parquet_decimal_prices_load(tmp_path: Path) -> None:
    table = pa.table(
        {
            "user_id": ["u"],
            "item_id": ["i"],
            "timestamp": pa.array([datetime(2020, 1, 1)], pa.timestamp("ms")),
            "price": pa.array([Decimal("2.50")], pa.decimal128(6, 2)),
        }
    )
    pq.write_table(table, tmp_path / "g.parquet")
    log = read_purchase_log(tmp_path / "g.parquet", PRESETS["generic"])
    assert log.table.column("price").to_pylist() == [2.5]


def test_parquet_id_column_of_unusable_type(tmp_path: Path) -> None:
    table = pa.table({"user_id": [[1, 2]], "item_id": ["i"], "timestamp": ["2020-01-01"]})
    pq.write_table(table, tmp_path / "g.parquet")
    message = raises_log_error(tmp_path / "g.parquet", PRESETS["generic"])
    assert "'user_id'" in message and "cannot convert" in message


def test_numeric_time_column_without_unix_format(tmp_path: Path) -> None:
    table = pa.table({"user_id": ["u"], "item_id": ["i"], "timestamp": [1299215167]})
    pq.write_table(table, tmp_path / "g.parquet")
    message = raises_log_error(tmp_path / "g.parquet", PRESETS["generic"])
    assert "'timestamp'" in message and "--time-format unix" in message


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(LogError, match=r"unknown log format 'nope'.*complete-journey, generic"):
        resolve_format("nope")


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [({"user": "x"}, "cannot override user"), ({"item_col": ""}, "item_col cannot be empty")],
)
def test_bad_overrides(overrides: dict[str, str], pattern: str) -> None:
    with pytest.raises(LogError, match=pattern):
        resolve_format("generic", **overrides)
