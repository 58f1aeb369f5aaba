"""``personalize train --trainer spark`` in Spark local mode on a real sample of Online Retail:
the same cleaning, cells, pairs and segments as the default trainer, an artifact the engine
serves, and ALS factors that fit the purchases.

One Spark run (local[2]) serves the module: a session takes tens of seconds to start.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

import training
from engine.artifacts import csr_from_arrays, load_artifact
from engine.model import Model, load_model
from personalize.cli import main

pytest.importorskip("pyspark", reason="pyspark not installed: pip install '.[spark]'")
if shutil.which("java") is None:
    pytest.skip("no java on PATH: the Spark trainer needs Java 17+", allow_module_level=True)

# Starting the JVM and some forty small Spark jobs: about 2 minutes on an idle 2-core machine.
pytestmark = [pytest.mark.shared_data, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def sample(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every line of the customers whose id ends in 17 or 42 (88 customers, a year of
    purchases, cancellations and non-product lines included) and 1 in 500 lines without a
    customer: about 5,500 real lines."""
    strings = {c: pa.string() for c in ("CustomerID", "InvoiceNo", "StockCode", "InvoiceDate")}
    table = pacsv.read_csv(
        shared_data / "online-retail" / "online_retail.csv.gz",
        convert_options=pacsv.ConvertOptions(column_types=strings),
    )
    customer = table["CustomerID"]
    anonymous = pc.equal(customer, "")
    every_500th = pc.equal(pc.bit_wise_and(pa.array(np.arange(table.num_rows)), 511), 0)
    keep = pc.or_(
        pc.or_(pc.ends_with(customer, "17"), pc.ends_with(customer, "42")),
        pc.and_(anonymous, every_500th),
    )
    path = tmp_path_factory.mktemp("sample") / "online_retail_sample.csv"
    pacsv.write_csv(table.filter(keep), path)
    return path


def _train(sample: Path, models: Path, *extra: str) -> Model:
    argv = ["train", "--log", str(sample), "--format", "online-retail", "--out", str(models)]
    assert main([*argv, "--no-evaluate", "--quiet", "--threads", "1", *extra]) == 0
    return load_model(models)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="module")
def both(
    sample: Path, checkpoints: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Model, Model]:
    default = _train(sample, tmp_path_factory.mktemp("implicit"))
    spark = _train(
        sample,
        tmp_path_factory.mktemp("spark"),
        *("--trainer", "spark", "--spark-master", "local[2]"),
        *("--spark-checkpoint-dir", str(checkpoints)),
    )
    return default, spark


def test_spark_checkpoints_where_it_is_told(both: tuple[Model, Model], checkpoints: Path) -> None:
    # ALS's lineage must be cut by checkpoints (a 10M-line fit failed without them):
    # Spark made its checkpoint folder in the given directory.
    assert any(path.is_dir() for path in checkpoints.iterdir())


def test_spark_cleans_the_log_as_the_default_reader_does(both: tuple[Model, Model]) -> None:
    default, spark = both
    report, expected = spark.manifest["load_report"], default.manifest["load_report"]
    assert report["rows_read"] > 5000
    for key in ("rows_read", "rows_kept", "dropped", "users", "items", "baskets", "time_max"):
        assert report[key] == expected[key], key
    assert report["dropped"]["missing_user"] > 0 and report["dropped"]["non_product"] > 0
    assert spark.as_of == default.as_of
    assert spark.manifest["trainer"]["name"] == "spark"
    assert spark.manifest["trainer"]["master"] == "local[2]"


def _by_id(model: Model, name: str) -> np.ndarray:
    """A users x items matrix of the artifact, rows and columns in sorted-id order."""
    m = csr_from_arrays(model.artifact.arrays, name).toarray()
    return m[np.argsort(model.users.ids)][:, np.argsort(model.items.ids)]


def test_history_pairs_and_segments_match_the_default_trainer(both: tuple[Model, Model]) -> None:
    default, spark = both
    # The same order too (first purchase, ties in file order), so ties in pair support are
    # cut alike.
    np.testing.assert_array_equal(spark.users.ids, default.users.ids)
    np.testing.assert_array_equal(spark.items.ids, default.items.ids)
    for name in ("history_counts", "history_first_time", "history_last_time"):
        np.testing.assert_array_equal(_by_id(spark, name), _by_id(default, name))
    items = spark.items.indices(default.items.ids)
    users = spark.users.indices(default.users.ids)
    for name in ("popularity", "trending", "item_baskets", "item_description"):
        got, expected = spark.artifact.arrays[name][items], default.artifact.arrays[name]
        np.testing.assert_array_equal(got, expected, err_msg=name)
    together = csr_from_arrays(spark.artifact.arrays, "together").toarray()[items][:, items]
    expected_pairs = csr_from_arrays(default.artifact.arrays, "together").toarray()
    assert expected_pairs.sum() > 0
    np.testing.assert_array_equal(together, expected_pairs)
    np.testing.assert_array_equal(spark.segments[users], default.segments)
    np.testing.assert_array_equal(spark.rfm[users], default.rfm)
    assert spark.manifest["segments"] == default.manifest["segments"]
    # The BM25 weighting done in Spark: the median confidence of the final matrix agrees.
    assert spark.confidence_scale == pytest.approx(default.confidence_scale, rel=1e-5)


def test_spark_factors_fit_the_purchases(both: tuple[Model, Model]) -> None:
    """For most customers, the factors score what they bought above what they did not."""
    _, spark = both
    factors = spark.scorer.factors
    scores = factors.user_factors @ factors.item_factors.T
    bought = csr_from_arrays(spark.artifact.arrays, "history_counts").toarray() > 0
    above = [
        scores[u, bought[u]].mean() > scores[u, ~bought[u]].mean()
        for u in range(len(spark.users))
        if bought[u].any()
    ]
    assert np.mean(above) > 0.9
    assert factors.user_factors.dtype == np.float32
    assert factors.user_factors.shape == (len(spark.users), 64)


def test_the_engine_serves_the_spark_artifact(
    both: tuple[Model, Model], capsys: pytest.CaptureFixture[str]
) -> None:
    _, spark = both
    assert set(spark.manifest["weights"]) == set(both[0].manifest["weights"])
    load_artifact(spark.artifact.path, verify=True)
    customer = str(spark.users.ids[0])
    capsys.readouterr()
    code = main(["recommend", "--models", str(spark.artifact.path), "--customer", customer])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert out[0].endswith(f"top 10 for {customer}")
    assert len(out) == 11


def test_spark_refuses_what_it_cannot_fit(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--log", str(sample), "--format", "online-retail", "--out", str(tmp_path)]
    assert main([*argv, "--trainer", "spark", "--device", "gpu"]) == 2
    assert "--device gpu is implicit's" in capsys.readouterr().err
    assert main([*argv, "--trainer", "spark", "--time-format", "%d/%m/%Y %H:%M"]) == 2
    assert "ISO 8601 or unix times" in capsys.readouterr().err


def test_without_pyspark_the_spark_trainer_says_which_extra_to_install(
    sample: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["train", "--log", str(sample), "--format", "online-retail", "--out", str(tmp_path)]
    # A fresh import of the trainer (the package keeps an imported submodule as an attribute),
    # whose ``import pyspark`` then raises ModuleNotFoundError.
    monkeypatch.delattr(training, "spark_trainer", raising=False)
    monkeypatch.delitem(sys.modules, "training.spark_trainer", raising=False)
    for name in [name for name in sys.modules if name.split(".")[0] == "pyspark"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyspark", None)
    assert main([*argv, "--trainer", "spark"]) == 2
    assert "pip install 'personalize[spark]'" in capsys.readouterr().err


def test_a_missing_module_other_than_pyspark_is_not_reported_as_pyspark(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["train", "--log", str(sample), "--format", "online-retail", "--out", str(tmp_path)]
    monkeypatch.delattr(training, "spark_trainer", raising=False)
    monkeypatch.setitem(sys.modules, "training.spark_trainer", None)
    with pytest.raises(ModuleNotFoundError, match=r"training\.spark_trainer"):
        main([*argv, "--trainer", "spark"])
