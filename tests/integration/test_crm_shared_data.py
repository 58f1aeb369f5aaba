"""Customer segments and bought-together pairs on the real Online Retail log, through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from engine.model import Model, load_model
from engine.recommender import Recommender
from personalize.cli import main
from training.crm.segments import SEGMENTS, Segments, compute_segments
from training.logs import PurchaseLog, read_purchase_log, resolve_format

pytestmark = pytest.mark.shared_data


def _path(shared_data: Path) -> str:
    return str(shared_data / "online-retail" / "online_retail.csv.gz")


@pytest.fixture(scope="module")
def log(shared_data: Path) -> PurchaseLog:
    return read_purchase_log(_path(shared_data), resolve_format("online-retail"))


@pytest.fixture(scope="module")
def segments(log: PurchaseLog) -> Segments:
    return compute_segments(log.table)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Model:
    models = tmp_path_factory.mktemp("models")
    code = main(
        ["train", "--log", _path(shared_data), "--format", "online-retail", "--out", str(models),
         "--no-evaluate", "--min-support", "5", "--quiet"]
    )  # fmt: skip
    assert code == 0
    return load_model(models)


def test_segments_add_up_to_the_customers(log: PurchaseLog, segments: Segments) -> None:
    customers = len(set(log.table["user"].to_pylist()))
    rows = segments.summary()
    assert len(segments.customers) == customers
    assert sum(row.customers for row in rows) == customers
    assert {row.segment for row in rows} <= set(SEGMENTS)
    assert sum(row.customer_share for row in rows) == pytest.approx(1.0)
    assert sum(row.revenue_share for row in rows) == pytest.approx(1.0)
    revenue = log.table["quantity"].to_numpy() * log.table["price"].to_numpy()
    assert sum(row.revenue for row in rows) == pytest.approx(revenue.sum())
    assert sum(row.win_back for row in rows) == int(segments.lapsed.sum()) > 0
    assert segments.no_revenue == 0  # the cleaner drops non-positive prices and quantities
    # The 80/20 view: a gift-ware wholesaler's revenue is concentrated, but not entirely.
    assert 0.6 < segments.top20_share < 0.9
    assert np.all(np.diff(segments.top_share_curve()) >= 0)


def test_scores_are_quintiles(segments: Segments) -> None:
    n = len(segments.customers)
    for column in (0, 2):  # recency and monetary have few ties: close to n / 5 each
        counts = np.bincount(segments.scores[:, column], minlength=6)[1:]
        assert np.all(np.abs(counts - n / 5) < n / 50), counts
    assert set(np.unique(segments.scores)) <= {1, 2, 3, 4, 5}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_writes_segments(
    shared_data: Path,
    segments: Segments,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    suffix: str,
) -> None:
    out = tmp_path / f"segments{suffix}"
    code = main(
        ["segments", "--log", _path(shared_data), "--format", "online-retail", "--out",
         str(out), "--quiet"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    table = pa_csv.read_csv(out) if suffix == ".csv" else pq.read_table(out)
    assert table.num_rows == len(segments.customers)
    assert sorted(table["customer"].cast("string").to_pylist()) == sorted(segments.customers)
    assert "champions" in printed
    assert f"bring {segments.top20_share:.1%} of revenue" in printed
    total = next(line for line in printed.splitlines() if line.startswith("total"))
    assert f"{len(segments.customers):,}" in total


def test_cli_writes_a_win_back_list_as_of_a_date(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "win_back.parquet"
    code = main(
        ["segments", "--log", _path(shared_data), "--format", "online-retail", "--out",
         str(out), "--as-of", "2011-06-30", "--win-back", "--quiet"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "as of 2011-06-30" in printed
    table = pq.read_table(out)
    assert table.num_rows > 0
    assert all(table["lapsed"].to_pylist())
    monetary = table["monetary"].to_numpy()
    assert np.all(np.diff(monetary) <= 0)  # biggest spenders first


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--as-of", "2010-11-30"], "before the log's first purchase"),
        (["--out", "segments.json"], "must end in .csv or .parquet"),
        (["--tolerance", "0"], "tolerance must be positive"),
    ],
)
def test_cli_refuses_bad_input(
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    argv = ["segments", "--log", _path(shared_data), "--format", "online-retail", "--quiet"]
    argv += ["--out", str(tmp_path / "s.csv"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("personalize: error:")
    assert message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_model_stores_each_customers_segment(model: Model, segments: Segments) -> None:
    assert model.segments.shape == (len(model.users),)
    assert model.rfm.shape == (len(model.users), 3)
    expected = dict(zip(segments.customers.tolist(), segments.segment.tolist(), strict=True))
    for customer in model.users.ids[:: max(1, len(model.users) // 200)]:
        assert model.segment_of(str(customer)) == expected[str(customer)]
    assert model.segment_of("no such customer") is None
    stored = model.manifest["segments"]
    assert stored["customers"] == len(model.users)
    assert stored["top20_share"] == pytest.approx(segments.top20_share)
    for name, entry in stored["segments"].items():
        assert entry["customers"] == int(np.sum(model.segments == name))


@pytest.mark.slow
def test_min_support_is_a_training_parameter(model: Model) -> None:
    assert model.manifest["params"]["baskets"] == {"min_support": 5, "per_item": 50}
    assert model.together.data.min() >= 5


@pytest.mark.slow
def test_bought_together_cli_matches_the_api(
    model: Model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pairs.csv"
    code = main(["bought-together", "--models", str(model.artifact.path), "--out", str(out)])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len([line for line in printed if line[:4].strip().endswith(".")]) == 10
    ids = {"item": pa.string(), "partner": pa.string()}
    table = pa_csv.read_csv(out, convert_options=pa_csv.ConvertOptions(column_types=ids))
    assert table.num_rows == model.together.nnz
    reasons = {(r["item"], r["partner"]): r["reason"] for r in table.to_pylist()}
    # The export's reasons are the ones the API gives for the same pair.
    served = Recommender(model).bought_together("22697", k=5)  # GREEN REGENCY TEACUP AND SAUCER
    assert len(served) == 5
    for rec in served:
        assert reasons[("22697", rec.item_id)] == rec.reason
