"""Train the default model with Spark, for purchase logs larger than one machine's memory.

``personalize train --trainer spark`` (extra ``personalize[spark]``, Java 17+). The split of work
follows what grows with what:

* **Spark** does everything that grows with the number of purchase lines: reading the Parquet or
  CSV log, the cleaning rules (:mod:`training.logs.clean`'s order and names), numbering customers
  and items, summing lines into one row per (customer, item) cell, the confidence weighting, ALS
  (``pyspark.ml.recommendation.ALS``, implicit preferences), the bought-together pairs (a
  self-join on baskets) and one row per (customer, basket, day) for the RFM segments.
* **The driver** gets only what the artifact stores anyway, which must fit the serving machine:
  the cells (the purchase history matrices), the factors, the top pairs. From those it fits the
  item-kNN similarities with implicit, as the default trainer does, and the repeat-aware weights
  (the same logistic regression and history multiplier, :func:`training.fusion.fusion_weights`,
  on a validation fit).

The artifact is written by the same code as the default trainer's (:func:`training.pipeline.
model_arrays`), so the engine serves it unchanged. What differs, and why, is in
docs/training-at-scale.md: Spark's ALS confidence is ``1 + alpha * r`` where implicit's is
``alpha * r``, its L2 penalty is scaled by each row's count of cells, and it has no warm start,
so the final fit runs every iteration; BPR and the hold-out evaluation are not offered here.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark.ml.recommendation import ALS
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as sf

from engine.artifacts import publish, write_artifact
from engine.matrix import (
    BM25_B,
    BM25_K1,
    HALF_LIFE_DAYS,
    SECONDS_PER_DAY,
    InteractionMatrix,
    PurchaseHistory,
    Weighting,
)
from engine.models import FactorScorer
from engine.vocab import Vocabulary
from training.baskets import BasketPairs
from training.crm.segments import compute_segments
from training.fit import Signals, fit_item_knn
from training.fusion import MIN_EARLIER_SHARE, fusion_weights
from training.logs.formats import LogFormat
from training.logs.report import LoadReport
from training.logs.source import fingerprint
from training.params import ModelParams
from training.pipeline import TrainResult, model_arrays, model_manifest

# Spark's implicit ALS confidence is 1 + ALPHA * r; implicit's default alpha is 1 as well.
ALPHA = 1.0
_RULES = (
    "unparsable",
    "missing_user",
    "missing_item",
    "cancellation_or_return",
    "non_product",
    "non_positive_quantity",
    "non_positive_price",
)


def spark_session(
    master: str = "local[*]", driver_memory: str = "4g", checkpoint_dir: str | None = None
) -> SparkSession:
    """A Spark session in UTC (epoch seconds must not shift with the machine's zone).

    ``master``: ``local[N]`` runs in this process's JVM; a cluster URL (``spark://``, ``yarn``)
    sends the work to executors, while the driver keeps this process.
    ``checkpoint_dir``: where ALS checkpoints its factors every ten sweeps (default: a folder in
    this machine's temp dir, which serves local masters; a cluster needs a path every executor
    shares, such as ``hdfs://``). Without checkpoints each sweep lengthens the lineage Spark
    serializes with every task: at 10M lines the 15 sweeps failed while deserializing a task
    (in ``java.io.ObjectInputStream``), and with them the same fit completes (369 s, local[2]).
    Checkpoint files are removed as their data is released.
    """
    spark = (
        SparkSession.builder.master(master)
        .appName("personalize-train")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4" if master.startswith("local") else "200")
        .config("spark.cleaner.referenceTracking.cleanCheckpoints", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")  # its warnings drown the trainer's own lines
    spark.sparkContext.setCheckpointDir(
        checkpoint_dir or str(Path(tempfile.gettempdir()) / "personalize-spark-checkpoints")
    )
    return spark


def check_supported(fmt: LogFormat | None, params: ModelParams) -> None:
    """Refuse, before any Spark work, what only the default trainer does."""
    if fmt is not None and fmt.time_format not in (None, "unix"):
        raise ValueError(
            f"--trainer spark reads ISO 8601 or unix times; --time-format {fmt.time_format!r} "
            "needs the default trainer"
        )
    if params.factors.algorithm != "als":
        raise ValueError("--trainer spark fits ALS only (Spark has no BPR): use --factor-model als")


@dataclass(frozen=True)
class SparkLog:
    """A cleaned log in Spark: one row per kept line, customers and items already numbered."""

    lines: DataFrame  # u, i (int), t (epoch s), quantity, price, basket, description, category
    users: Vocabulary
    items: Vocabulary
    report: LoadReport
    as_of: int  # one second after the last kept line, as in the default trainer
    has_price: bool


def read_log(spark: SparkSession, path: Path, fmt: LogFormat) -> SparkLog:
    """Read and clean ``path`` with Spark under ``fmt``'s columns and rules.

    Supported: Parquet or CSV (plain or compressed) with times as Parquet timestamps, epoch
    seconds or ISO 8601 text. Not supported (the default reader's): strptime time formats and
    item catalog files beside the log.
    """
    check_supported(fmt, ModelParams())
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.suffix == ".parquet":
        raw = spark.read.parquet(str(path))
    else:
        # escape='"': quotes inside a field are doubled (RFC 4180), not backslashed
        raw = spark.read.csv(str(path), header=True, sep=fmt.delimiter, escape='"')
    lines = _canonical(raw, fmt)
    rule = sf.lit(None).cast("string")
    for name, broken in reversed(list(_rule_masks(lines, fmt))):
        rule = sf.when(broken, sf.lit(name)).otherwise(rule)
    lines = lines.withColumn("rule", rule).cache()
    counts = {row["rule"]: row["count"] for row in lines.groupBy("rule").count().collect()}
    canonical = [c for c in lines.columns if c not in ("line", "rule")]
    kept = (  # the first of identical lines
        lines.where(sf.col("rule").isNull()).groupBy(*canonical).agg(sf.min("line").alias("line"))
    )
    kept = kept.withColumn(
        "basket",
        sf.coalesce(sf.col("basket"), sf.concat_ws("@", "user", sf.col("t").cast("string"))),
    ).cache()
    rows_read = sum(counts.values())
    users = _vocabulary(kept, "user")
    items = _vocabulary(kept, "item")
    numbered = (
        kept.join(_codes(spark, users, "user", "u"), "user")
        .join(sf.broadcast(_codes(spark, items, "item", "i")), "item")
        .drop("user", "item")
        .cache()
    )
    summary = numbered.agg(  # one row, always
        sf.count("*").alias("kept"),
        sf.min("t").alias("first"),
        sf.max("t").alias("last"),
        sf.count("price").alias("priced"),
        sf.countDistinct("basket").alias("baskets"),
    ).collect()[0]
    rows_kept = int(summary["kept"])
    if rows_kept == 0:
        raise ValueError(f"{path}: no purchase line survived cleaning")
    dropped = {name: int(counts.get(name, 0)) for name in _RULES}
    dropped["duplicate"] = rows_read - sum(dropped.values()) - rows_kept
    report = LoadReport(
        source=str(path),
        fingerprint=fingerprint(path),
        format=fmt.name,
        rows_read=rows_read,
        rows_kept=rows_kept,
        dropped=dropped,
        unparsable_lines=[],
        users=len(users),
        items=len(items),
        baskets=int(summary["baskets"]),
        time_min=_iso(int(summary["first"])),
        time_max=_iso(int(summary["last"])),
    )
    lines.unpersist()
    kept.unpersist()
    as_of = int(summary["last"]) + 1
    return SparkLog(numbered, users, items, report, as_of, int(summary["priced"]) > 0)


def train_spark(
    spark: SparkSession,
    log: SparkLog,
    params: ModelParams,
    *,
    models_dir: Path,
    publish_model: bool = True,
    threads: int = 0,
    say: Callable[[str], None] = lambda _: None,
) -> TrainResult:
    """Fit every signal and the fusion weights, write the artifact and publish it."""
    check_supported(None, params)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    report, as_of = log.report, log.as_of
    start = as_of - params.fusion.validation_days * SECONDS_PER_DAY
    earlier_lines = log.lines.where(sf.col("t") < start).count()
    if earlier_lines < MIN_EARLIER_SHARE * report.rows_kept:
        raise ValueError(
            f"only {earlier_lines:,} of {report.rows_kept:,} lines come before the "
            f"{params.fusion.validation_days}-day validation window: the signals the weights "
            "are fitted on would be fitted on almost nothing; choose a shorter --validation-days"
        )
    say("fitting the validation signals with Spark ...")
    validation = _signals(log, params, as_of=start, threads=threads)
    full = _cells(log, params, as_of=as_of)
    window = (full.last >= start).nonzero()[0]
    n = len(log.users)  # counted, not np.unique'd (see Interactions.active_users)
    earlier = np.bincount(full.u[full.first < start], minlength=n) > 0
    recent = np.bincount(full.u[window], minlength=n) > 0
    users = np.flatnonzero(earlier & recent)
    if len(users) == 0:
        raise ValueError(
            f"no customer bought both before and within the last {params.fusion.validation_days} "
            "days of the training data: the log is too short to fit the repeat-aware weights"
        )
    bought = sp.csr_matrix(
        (np.ones(len(window), np.float32), (full.u[window], full.i[window])),
        shape=(len(log.users), len(log.items)),
    )
    weights = fusion_weights(validation.scorer(), users, bought, as_of=start, params=params)
    say("fitting on the whole log with Spark ...")
    signals = _signals(log, params, as_of=as_of, threads=threads, cells=full)
    seconds["fit"] = time.perf_counter() - clock
    clock = time.perf_counter()
    together = _basket_pairs(log, params)
    segments = compute_segments(_basket_days(log), as_of=as_of)
    meta = _item_metadata(log)
    seconds["pairs_segments_metadata"] = time.perf_counter() - clock
    clock = time.perf_counter()
    manifest: dict[str, Any] = model_manifest(report, params, weights, as_of, None, 0, 0, seconds)
    manifest.update(
        confidence_scale=signals.confidence_scale,
        trainer={"name": "spark", "master": spark.sparkContext.master, "spark": spark.version},
        segments=segments.to_manifest(),
    )
    arrays = model_arrays(log.users, log.items, signals, meta, together, segments, params)
    path = write_artifact(models_dir, arrays, manifest)
    if publish_model:
        publish(models_dir, path.name)
    seconds["write"] = time.perf_counter() - clock
    say(f"wrote {path}" + (" and published it as current" if publish_model else ""))
    return TrainResult(path, path.name, publish_model, None, seconds)


# --- reading ------------------------------------------------------------------------------------


def _canonical(raw: DataFrame, fmt: LogFormat) -> DataFrame:
    """The format's columns under canonical names and types; absent optional ones are null."""

    def column(attr: str) -> Column | None:
        name = getattr(fmt, attr)
        if name is None or (attr in fmt.lenient_cols and name not in raw.columns):
            return None
        if name not in raw.columns:
            raise ValueError(f"{fmt.name} log: column {name!r} ({attr}) is missing")
        return sf.col(f"`{name}`")

    def text(attr: str) -> Column:
        """Trimmed text, null when absent or blank; ids normalised as the format says."""
        col = column(attr)
        if col is None:
            return sf.lit(None).cast("string")
        value = sf.trim(col.cast("string"))
        if fmt.upper_items and attr == "item_col":
            value = sf.upper(value)
        if fmt.numeric_ids and attr in ("user_col", "item_col"):
            number = value.try_cast("double")
            value = sf.when(number.isNotNull(), number.cast("long").cast("string")).otherwise(value)
        return sf.when(value != "", value)

    time_col = column("time_col")
    assert time_col is not None  # required by LogFormat
    kind = raw.schema[fmt.time_col].dataType.typeName()
    if kind in ("timestamp", "timestamp_ntz", "date"):
        seconds = sf.unix_timestamp(time_col)
    elif kind == "string" and fmt.time_format is None:
        seconds = sf.unix_timestamp(sf.try_to_timestamp(time_col))
    else:
        seconds = time_col.try_cast("double").cast("long")

    def number(attr: str, default: float | None) -> Column:
        col = column(attr)
        return sf.lit(default).cast("double") if col is None else col.try_cast("double")

    quantity = number("quantity_col", 1.0)
    price = number("price_col", None)
    if fmt.price_is_total:
        price = price / quantity
    return raw.select(
        # Increasing in file order (partition, then row): ties in time keep the file's order.
        sf.monotonically_increasing_id().alias("line"),
        text("user_col").alias("user"),
        text("item_col").alias("item"),
        seconds.alias("t"),
        quantity.alias("quantity"),
        price.alias("price"),
        text("basket_col").alias("basket"),
        text("description_col").alias("description"),
        text("category_col").alias("category"),
    )


def _rule_masks(lines: DataFrame, fmt: LogFormat) -> list[tuple[str, Column]]:
    """Each cleaning rule as a condition, in :mod:`training.logs.clean`'s order."""
    cancelled = sf.col("quantity") < 0
    if fmt.cancel_prefix:
        cancelled = cancelled | sf.col("basket").startswith(fmt.cancel_prefix)
    non_product = sf.lit(False)
    if fmt.product_pattern:
        non_product = ~sf.col("item").rlike(f"^(?:{fmt.product_pattern})$")
    return [
        ("unparsable", sf.col("t").isNull() | sf.col("quantity").isNull()),
        ("missing_user", sf.col("user").isNull()),
        ("missing_item", sf.col("item").isNull()),
        ("cancellation_or_return", sf.coalesce(cancelled, sf.lit(False))),
        ("non_product", non_product),
        ("non_positive_quantity", sf.col("quantity") <= 0),
        ("non_positive_price", sf.coalesce(sf.col("price") <= 0, sf.lit(False))),
    ]


def _vocabulary(lines: DataFrame, column: str) -> Vocabulary:
    """Ids in order of first purchase, ties in file order: the default trainer's order."""
    first = (
        lines.groupBy(column)
        .agg(sf.min(sf.struct("t", "line")).alias("first"))
        .select(column, "first.t", "first.line")
        .toArrow()
    )
    order = np.lexsort((first["line"].to_numpy(), first["t"].to_numpy()))
    return Vocabulary(first[column].to_numpy(zero_copy_only=False)[order])


def _codes(spark: SparkSession, vocab: Vocabulary, column: str, code: str) -> DataFrame:
    table = pa.table({column: vocab.ids, code: np.arange(len(vocab), dtype=np.int32)})
    return spark.createDataFrame(table)


# --- signals ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cells:
    """One row per (customer, item) cell with a purchase before ``as_of``, sorted by u then i."""

    u: np.ndarray
    i: np.ndarray
    count: np.ndarray  # purchase lines
    first: np.ndarray  # epoch seconds
    last: np.ndarray
    weight: np.ndarray  # float32 confidence under the model's weighting
    frame: DataFrame  # the same cells in Spark (u, i, weight), for ALS


def _cells(log: SparkLog, params: ModelParams, *, as_of: int) -> _Cells:
    """Sum lines before ``as_of`` into weighted cells in Spark; bring them to the driver."""
    age_days = (sf.lit(as_of) - sf.col("t")) / SECONDS_PER_DAY
    cells = (
        log.lines.where(sf.col("t") < as_of)
        .groupBy("u", "i")
        .agg(
            sf.count("*").alias("count"),
            sf.sum("quantity").alias("units"),
            sf.min("t").alias("first"),
            sf.max("t").alias("last"),
            sf.sum(sf.pow(sf.lit(2.0), -age_days / HALF_LIFE_DAYS)).alias("decay"),
        )
    )
    frame = _weigh(cells, params.factors.weighting, n_users=len(log.users)).cache()
    table = frame.orderBy("u", "i").toArrow()
    return _Cells(
        table["u"].to_numpy(),
        table["i"].to_numpy(),
        table["count"].to_numpy().astype(np.float32),
        table["first"].to_numpy().astype(np.float64),
        table["last"].to_numpy().astype(np.float64),
        table["weight"].to_numpy().astype(np.float32),
        frame.select("u", "i", "weight"),
    )


def _weigh(cells: DataFrame, weighting: Weighting, *, n_users: int) -> DataFrame:
    """:func:`engine.matrix.weigh` on cells: the same schemes and constants, in Spark."""
    count = sf.col("count").cast("double")
    if weighting is Weighting.BM25:
        # implicit's bm25_weight over the users x items counts: idf per item from the number of
        # customers who bought it, length per customer against the mean over every customer.
        per_item = cells.groupBy("i").agg(sf.count("*").alias("df"))
        per_user = cells.groupBy("u").agg(sf.sum("count").alias("length"))
        total = float(cells.agg(sf.sum("count")).collect()[0][0])
        norm = (1.0 - BM25_B) + BM25_B * sf.col("length") / (total / n_users)
        idf = sf.log(sf.lit(float(n_users))) - sf.log1p(sf.col("df"))
        weight = count * (BM25_K1 + 1.0) / (BM25_K1 * norm + count) * idf
        cells = cells.join(sf.broadcast(per_item), "i").join(per_user, "u")
    elif weighting is Weighting.BINARY:
        weight = sf.lit(1.0)
    elif weighting is Weighting.LOG_QUANTITY:
        weight = sf.log1p(sf.col("units"))
    elif weighting is Weighting.TIME_DECAY:
        weight = sf.col("decay")
    else:
        weight = count
    return cells.select("u", "i", "count", "first", "last", weight.cast("float").alias("weight"))


def _signals(
    log: SparkLog,
    params: ModelParams,
    *,
    as_of: int,
    threads: int,
    cells: _Cells | None = None,
) -> Signals:
    """Every signal as of ``as_of``: ALS in Spark, kNN on the driver."""
    cells = cells or _cells(log, params, as_of=as_of)
    shape = (len(log.users), len(log.items))

    def matrix(values: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix((values, (cells.u, cells.i)), shape=shape)  # cells are sorted by u, i
        m.sort_indices()
        return m

    history = PurchaseHistory(matrix(cells.count), matrix(cells.last), matrix(cells.first))
    n_items = len(log.items)
    popularity = np.bincount(cells.i, minlength=n_items).astype(np.float32)
    trend_start = as_of - params.fusion.trend_days * SECONDS_PER_DAY
    recent = cells.i[cells.last >= trend_start]
    trending = np.bincount(recent, minlength=n_items).astype(np.float32)
    factors = fit_als(cells.frame, params, shape)
    counts = InteractionMatrix(log.users, log.items, history.counts)
    knn = fit_item_knn(counts, params.knn, threads=threads)
    scale = float(np.median(cells.weight)) if len(cells.weight) else 1.0
    cells.frame.unpersist()
    return Signals(as_of, history, popularity, trending, factors, knn, scale)


def fit_als(cells: DataFrame, params: ModelParams, shape: tuple[int, int]) -> FactorScorer:
    """Spark's implicit-preference ALS on the weighted cells, factors placed by index (a row
    Spark never saw, a customer with no cell yet, stays zero)."""
    model = ALS(
        rank=params.factors.factors,
        maxIter=params.factors.iterations,
        regParam=params.factors.regularization,
        alpha=ALPHA,
        implicitPrefs=True,
        userCol="u",
        itemCol="i",
        ratingCol="weight",
        seed=params.seed,
    ).fit(cells)

    def place(frame: DataFrame, rows: int) -> np.ndarray:
        table = frame.toArrow()
        out = np.zeros((rows, params.factors.factors), dtype=np.float32)
        features = table["features"].combine_chunks().flatten().to_numpy()
        values = features.reshape(len(table), params.factors.factors)
        out[table["id"].to_numpy()] = values
        return out

    return FactorScorer(place(model.userFactors, shape[0]), place(model.itemFactors, shape[1]))


# --- pairs, segments, metadata -------------------------------------------------------------------


def _basket_pairs(log: SparkLog, params: ModelParams) -> BasketPairs:
    """:func:`training.baskets.basket_pairs` as a self-join: pairs in at least ``min_support``
    baskets, each item's ``per_item`` partners by support (ties by the partner's index)."""
    lines = log.lines.select("basket", "i").distinct().cache()
    n_items = len(log.items)
    per_item = lines.groupBy("i").count().toArrow()
    item_baskets = np.zeros(n_items, dtype=np.float32)
    item_baskets[per_item["i"].to_numpy()] = per_item["count"].to_numpy()
    pairs = (
        lines.alias("a")
        .join(lines.alias("b"), "basket")
        .where(sf.col("a.i") != sf.col("b.i"))
        .groupBy(sf.col("a.i").alias("row"), sf.col("b.i").alias("col"))
        .count()
        .where(sf.col("count") >= params.baskets.min_support)
    )
    rank = sf.row_number().over(Window.partitionBy("row").orderBy(sf.desc("count"), "col"))
    top = pairs.withColumn("rank", rank).where(sf.col("rank") <= params.baskets.per_item)
    table = top.select("row", "col", "count").toArrow()
    lines.unpersist()
    matrix = sp.csr_matrix(
        (
            table["count"].to_numpy().astype(np.float32),
            (table["row"].to_numpy(), table["col"].to_numpy()),
        ),
        shape=(n_items, n_items),
    )
    matrix.sort_indices()
    return BasketPairs(matrix, item_baskets, log.report.baskets)


def _basket_days(log: SparkLog) -> pa.Table:
    """One row per (customer, basket, day) with its spend: all :func:`compute_segments` reads
    (frequency counts baskets, recency and gaps count days, monetary sums), a fraction of the
    lines."""
    spend = sf.col("quantity") * sf.coalesce(sf.col("price"), sf.lit(0.0))
    rows = (
        log.lines.groupBy("u", "basket", (sf.col("t") / SECONDS_PER_DAY).cast("long").alias("day"))
        .agg(
            sf.min("t").alias("t"), sf.sum("quantity").alias("units"), sf.sum(spend).alias("spend")
        )
        .toArrow()
    )
    count = rows.num_rows
    quantity = np.ones(count) if log.has_price else rows["units"].to_numpy()
    price = rows["spend"] if log.has_price else pa.nulls(count, pa.float64())
    return pa.table(
        {
            "user": pa.array(log.users.ids[rows["u"].to_numpy()]),
            "basket": rows["basket"],
            "time": rows["t"].cast(pa.timestamp("s")),
            "quantity": quantity,
            "price": price,
        }
    )


def _item_metadata(log: SparkLog) -> dict[str, np.ndarray]:
    """:func:`training.dataset.item_metadata` in Spark: latest non-empty description and
    category, median unit price (approximate in both)."""
    n_items = len(log.items)
    out: dict[str, np.ndarray] = {}
    for name in ("description", "category"):
        latest = (
            log.lines.where(sf.col(name).isNotNull())
            .groupBy("i")
            .agg(sf.max_by(name, "t").alias(name))
            .toArrow()
        )
        values = np.full(n_items, "", dtype=object)
        values[latest["i"].to_numpy()] = latest[name].to_numpy(zero_copy_only=False)
        out[name] = values.astype(str)
    prices = (
        log.lines.where(sf.col("price").isNotNull())
        .groupBy("i")
        .agg(sf.percentile_approx("price", 0.5).alias("price"))
        .toArrow()
    )
    price = np.full(n_items, np.nan, dtype=np.float64)
    price[prices["i"].to_numpy()] = prices["price"].to_numpy()
    out["price"] = price
    return out


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")  # as LoadReport's
