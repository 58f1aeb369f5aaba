"""The trainer's commands of ``personalize``: train, evaluate, models, publish, recommend,
generate-shop. ``personalize.cli`` assembles them with the serving commands.

Handlers raise LogError, ArtifactError or ValueError for anything a user can get wrong; the
entry point turns those into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.artifacts import current_version, list_versions, publish
from engine.matrix import Weighting
from engine.model import load_model
from engine.profiles import Profile
from engine.recommender import Query, Recommender
from engine.session import EVENT_WEIGHTS
from training.dataset import interactions_from_table
from training.device import resolve_device
from training.evaluate import evaluate, format_table
from training.events.feedback import EventInput, event_weights, split_events
from training.events.reader import read_event_log
from training.logs import PRESETS, PurchaseLog, read_purchase_log, resolve_format
from training.logs.formats import LogFormat
from training.params import BasketParams, FactorParams, FusionParams, KnnParams, ModelParams
from training.pipeline import train_model
from training.retrain import retrain
from training.settings import TrainerSettings
from training.synthetic import ShopSpec, generate_shop, write_log

Handler = Callable[[argparse.Namespace], int]
Subparsers = argparse._SubParsersAction  # argparse exposes no public name for it


def register(sub: Subparsers) -> None:
    """Add the training commands to the ``personalize`` parser."""
    train = sub.add_parser(
        "train",
        help="train on a purchase log and write a versioned model",
        description="Clean a purchase log, evaluate the default repeat-aware model against the "
        "baselines on a time-ordered hold-out, refit on the whole log, and write a versioned "
        "artifact under --models (published as 'current' unless --no-publish).",
    )
    _log_args(train)
    _event_args(train)
    _model_args(train)
    _run_args(train)
    train.add_argument(
        "--out",
        "--models",
        dest="models_dir",
        type=Path,
        help="models directory (env PERSONALIZE_MODELS_DIR; default ./models)",
    )
    train.add_argument("--no-evaluate", action="store_true", help="skip the hold-out evaluation")
    scale = train.add_argument_group("training at scale (docs/training-at-scale.md)")
    scale.add_argument(
        "--trainer",
        choices=["implicit", "spark"],
        default="implicit",
        help="implicit: in this process, on the CPU or a GPU (--device; default); spark: "
        "pyspark's ALS on --spark-master, same artifact, no hold-out evaluation "
        "(pip install 'personalize[spark]', Java 17+)",
    )
    scale.add_argument(
        "--spark-master",
        default="local[*]",
        help="Spark master URL for --trainer spark (default local[*]: this machine's cores)",
    )
    scale.add_argument(
        "--spark-driver-memory",
        default="4g",
        help="memory of the Spark driver, which holds the artifact's arrays (default 4g)",
    )
    scale.add_argument(
        "--spark-checkpoint-dir",
        help="where Spark's ALS checkpoints (default: the temp dir, for local masters; a "
        "cluster needs a shared path such as hdfs://...)",
    )
    train.add_argument(
        "--no-publish",
        action="store_true",
        help="write the version but leave 'current' where it is",
    )
    train.set_defaults(handler=_with_settings(_train))

    re_ = sub.add_parser(
        "retrain",
        help="train a new version and publish it only if it is not worse than the live one",
        description="Train a new version (with exported events if given) without publishing "
        "it, score it and the live ('current') model on the same hold-out (purchases neither "
        "was fitted on), and publish it only if its ndcg@k is at least --min-ratio times the "
        "live model's. Exit status 0: published; 1: not published (the live model stays); "
        "2: bad input. See docs/retrain.md for a cron line and a systemd timer.",
    )
    _log_args(re_)
    _event_args(re_)
    _model_args(re_)
    _run_args(re_)
    re_.add_argument("--models", dest="models_dir", type=Path, help="models directory")
    re_.add_argument(
        "--min-ratio",
        type=float,
        default=1.0,
        help="publish when new ndcg@k >= this x live ndcg@k (default 1.0: not worse)",
    )
    re_.set_defaults(handler=_with_settings(_retrain))

    ev = sub.add_parser(
        "evaluate",
        help="compare the default model with the baselines on a hold-out",
        description="Hold out the last --holdout-days of the log, fit on the rest, and print "
        "precision, recall, MAP, NDCG, hit rate and coverage at k for all items and for new "
        "items only, for the default model and each baseline.",
    )
    _log_args(ev)
    _model_args(ev)
    _run_args(ev)
    ev.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object {"model", "baselines", "data"} instead of tables',
    )
    ev.set_defaults(handler=_with_settings(_evaluate))

    models = sub.add_parser(
        "models",
        help="list model versions and the current one",
        description="List the versions under a models directory.",
    )
    models.add_argument("--models", dest="models_dir", type=Path, help="models directory")
    models.set_defaults(handler=_with_settings(_models))

    pub = sub.add_parser(
        "publish",
        help="make a version current (atomic pointer flip)",
        description="Validate a version and point 'current' at it.",
    )
    pub.add_argument("version", help="version directory name, as listed by 'personalize models'")
    pub.add_argument("--models", dest="models_dir", type=Path, help="models directory")
    pub.set_defaults(handler=_with_settings(_publish))

    gen = sub.add_parser(
        "generate-shop",
        help="write a generated shop's purchase log (for demos with no log at hand)",
        description="Write a realistic synthetic purchase log in the generic format: power-law "
        "item popularity, repeat-buying customers with favourite categories, items launching "
        "over time. Train on it with `personalize train --log PATH`.",
    )
    gen.add_argument(
        "--out", required=True, type=Path, help="output file: .parquet, .csv or .csv.gz"
    )
    defaults = ShopSpec()
    for name, help_text in (
        ("customers", "number of customers"),
        ("items", "catalog size"),
        ("days", "length of the log in days"),
        ("seed", "random seed"),
    ):
        default = getattr(defaults, name)
        gen.add_argument(
            f"--{name}", type=int, default=default, help=f"{help_text} (default {default})"
        )
    gen.set_defaults(handler=_with_settings(_generate_shop))

    rec = sub.add_parser(
        "recommend",
        help="print recommendations for a customer",
        description="Load a model (validating it) and print a customer's top k as the API "
        "would serve it at the end of the training log: past purchases only when due again.",
    )
    rec.add_argument(
        "--models", dest="models_dir", type=Path, help="models directory or a version directory"
    )
    rec.add_argument("--customer", help="customer id; omit for an anonymous visitor")
    rec.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    rec.set_defaults(handler=_with_settings(_recommend))


def _with_settings(handler: Callable[[argparse.Namespace, TrainerSettings], int]) -> Handler:
    """Build the settings from environment and flags before the handler runs."""
    return lambda args: handler(args, _settings(args))


def _log_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("purchase log")
    g.add_argument("--log", required=True, type=Path, help="CSV (plain or .gz) or Parquet file")
    g.add_argument(
        "--format",
        default="generic",
        choices=sorted(PRESETS),
        help="column preset (default generic: user_id,item_id,timestamp,...)",
    )
    for col in ("user", "item", "time", "quantity", "price", "basket"):
        g.add_argument(f"--{col}-col", help=f"name of the {col} column (overrides the preset)")
    g.add_argument(
        "--time-format", help="'unix' for epoch seconds, or a strptime format; default ISO 8601"
    )


def _event_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("exported events (personalize export-events)")
    g.add_argument("--events", type=Path, help="event log directory to train on beside the log")
    for kind, flag in (("view", "view"), ("click", "click"), ("add_to_cart", "cart")):
        g.add_argument(
            f"--{flag}-weight",
            type=float,
            help=f"weight of a {kind} relative to a purchase (default {EVENT_WEIGHTS[kind]:g}, "
            "as in live sessions)",
        )


def _event_input(
    args: argparse.Namespace, log: PurchaseLog, settings: TrainerSettings
) -> EventInput | None:
    if args.events is None:
        return None
    weights = event_weights(
        {"view": args.view_weight, "click": args.click_weight, "add_to_cart": args.cart_weight}
    )
    events = read_event_log(args.events)
    _say(settings, events.report.format_table())
    event_input = split_events(events.table, log, weights)
    event_input.report["log"] = events.report.to_dict()
    return event_input


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--factor-model", choices=["als", "bpr"], help="latent-factor algorithm")
    g.add_argument("--factors", type=int, help="latent dimensions (default 64)")
    g.add_argument("--iterations", type=int, help="ALS sweeps or BPR epochs (default 15)")
    g.add_argument("--regularization", type=float, help="L2 penalty (default 0.05)")
    g.add_argument(
        "--weighting",
        choices=[w.value for w in Weighting],
        help="confidence weighting for the factor model (default bm25)",
    )
    g.add_argument("--knn", choices=["bm25", "cosine"], help="item-kNN similarity (default bm25)")
    g.add_argument("--neighbours", type=int, help="neighbours per item (default 100)")
    g.add_argument(
        "--min-support",
        type=int,
        help="baskets a bought-together pair needs to be kept (default 3)",
    )
    g.add_argument(
        "--validation-days",
        type=int,
        help="window cut from the end of training to fit the fusion weights (default 30)",
    )
    g.add_argument(
        "--trend-days", type=int, help="window of the 'trending' item feature (default 30)"
    )
    g.add_argument("--seed", type=int, help="random seed (default 0)")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--holdout-days",
        type=int,
        help="days at the end of the log held out (env PERSONALIZE_HOLDOUT_DAYS; 30)",
    )
    p.add_argument("-k", "--k", dest="k", type=int, help="metrics at k (default 10)")
    p.add_argument(
        "--test-customers",
        type=int,
        help="hold-out customers scored at most, a seeded sample beyond; 0 scores all "
        "(env PERSONALIZE_TEST_CUSTOMERS; 20000)",
    )
    p.add_argument("--threads", type=int, help="fitting threads, 0 = all cores (default 0)")
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "gpu"],
        help="where ALS is fitted: auto = a CUDA GPU if implicit sees one, else the CPU; "
        "gpu without one is an error (env PERSONALIZE_DEVICE; default auto)",
    )
    p.add_argument("--quiet", action="store_true", default=None, help="no progress output")


def _settings(args: argparse.Namespace) -> TrainerSettings:
    fields = ("models_dir", "holdout_days", "k", "test_customers", "threads", "device", "quiet")
    given = {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}
    try:
        return TrainerSettings(**given)
    except ValidationError as exc:
        raise ValueError(_validation_message(exc)) from None


def _params(args: argparse.Namespace) -> ModelParams:
    def pick(**names: str) -> dict[str, Any]:
        return {
            key: getattr(args, attr)
            for key, attr in names.items()
            if getattr(args, attr) is not None
        }

    try:
        return ModelParams(
            factors=FactorParams(
                **pick(
                    algorithm="factor_model",
                    factors="factors",
                    iterations="iterations",
                    regularization="regularization",
                    weighting="weighting",
                )
            ),
            knn=KnnParams(**pick(similarity="knn", neighbours="neighbours")),
            fusion=FusionParams(**pick(validation_days="validation_days", trend_days="trend_days")),
            baskets=BasketParams(**pick(min_support="min_support")),
            **pick(seed="seed"),
        )
    except ValidationError as exc:
        raise ValueError(_validation_message(exc)) from None


def _format(args: argparse.Namespace) -> LogFormat:
    return resolve_format(
        args.format,
        user_col=args.user_col, item_col=args.item_col, time_col=args.time_col,
        quantity_col=args.quantity_col, price_col=args.price_col, basket_col=args.basket_col,
        time_format=args.time_format,
    )  # fmt: skip


def _read(args: argparse.Namespace, settings: TrainerSettings) -> PurchaseLog:
    fmt = _format(args)
    clock = time.perf_counter()
    log = read_purchase_log(args.log, fmt, progress=_progress(settings))
    _say(settings, f"read {args.log} in {time.perf_counter() - clock:.2f}s")
    return log


def _train(args: argparse.Namespace, settings: TrainerSettings) -> int:
    params = _params(args)
    if args.trainer == "spark":
        return _train_spark(args, settings, params)
    resolve_device(settings.device)  # a missing GPU fails before the log is read
    log = _read(args, settings)
    _say(settings, log.report.format_table())
    result = train_model(
        log,
        params,
        models_dir=settings.models_dir,
        holdout_days=settings.holdout_days,
        k=settings.k,
        test_customers=settings.test_customer_limit,
        run_evaluation=not args.no_evaluate,
        publish_model=not args.no_publish,
        threads=settings.threads,
        progress=_progress(settings),
        device=settings.device,
        say=lambda line: _say(settings, line),
        event_input=_event_input(args, log, settings),
    )
    if result.evaluation is not None:
        print(format_table(result.evaluation, settings.k))
    print(
        f"model {result.version} written to {result.path}"
        + (" (current)" if result.published else "")
    )
    return 0


def _retrain(args: argparse.Namespace, settings: TrainerSettings) -> int:
    if args.min_ratio <= 0:
        raise ValueError("--min-ratio must be positive")
    params = _params(args)
    log = _read(args, settings)
    outcome = retrain(
        log,
        params,
        models_dir=settings.models_dir,
        event_input=_event_input(args, log, settings),
        holdout_days=settings.holdout_days,
        k=settings.k,
        test_customers=settings.test_customer_limit,
        min_ratio=args.min_ratio,
        threads=settings.threads,
        progress=_progress(settings),
        say=lambda line: _say(settings, line),
    )
    if outcome.result is not None and outcome.result.evaluation is not None:
        print(format_table(outcome.result.evaluation, settings.k))
    if outcome.published:
        print(outcome.message)
        return 0
    print(f"personalize: {outcome.message}", file=sys.stderr)
    return 1


def _train_spark(args: argparse.Namespace, settings: TrainerSettings, params: ModelParams) -> int:
    """The same artifact from pyspark's ALS (training.spark_trainer), without an evaluation."""
    if settings.device == "gpu":
        raise ValueError("--device gpu is implicit's; --trainer spark runs where Spark runs")
    try:
        from training import spark_trainer
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "pyspark":
            raise  # a fault of the trainer's own, not a missing extra
        raise ValueError(
            "--trainer spark needs pyspark: pip install 'personalize[spark]'"
        ) from None
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise ValueError("--trainer spark needs Java 17+: no java on PATH and no JAVA_HOME")
    fmt = _format(args)
    spark_trainer.check_supported(fmt, params)
    if not args.no_evaluate:
        _say(settings, "--trainer spark skips the hold-out evaluation (personalize evaluate "
             "on a sample of the log measures the model)")  # fmt: skip
    spark = spark_trainer.spark_session(
        args.spark_master, args.spark_driver_memory, args.spark_checkpoint_dir
    )
    try:
        clock = time.perf_counter()
        log = spark_trainer.read_log(spark, args.log, fmt)
        _say(settings, f"read {args.log} with Spark in {time.perf_counter() - clock:.2f}s")
        _say(settings, log.report.format_table())
        result = spark_trainer.train_spark(
            spark,
            log,
            params,
            models_dir=settings.models_dir,
            publish_model=not args.no_publish,
            threads=settings.threads,
            say=lambda line: _say(settings, line),
        )
    finally:
        spark.stop()
    print(
        f"model {result.version} written to {result.path}"
        + (" (current)" if result.published else "")
    )
    return 0


def _evaluate(args: argparse.Namespace, settings: TrainerSettings) -> int:
    params = _params(args)
    resolve_device(settings.device)
    log = _read(args, settings)
    evaluation = evaluate(
        interactions_from_table(log.table),
        params,
        holdout_days=settings.holdout_days,
        k=settings.k,
        threads=settings.threads,
        progress=_progress(settings),
        device=settings.device,
        test_customers=settings.test_customer_limit,
    )
    if args.json:
        out = {**evaluation.to_dict(), "data": log.report.to_dict(), "weights": evaluation.weights}
        print(json.dumps(out, indent=2))
    else:
        print(log.report.format_table())
        print(format_table(evaluation, settings.k))
    return 0


def _models(args: argparse.Namespace, settings: TrainerSettings) -> int:
    current = current_version(settings.models_dir)
    versions = list_versions(settings.models_dir)
    if not versions:
        print(f"no models in {settings.models_dir}")
    for version in versions:
        print(f"{'*' if version == current else ' '} {version}")
    return 0


def _publish(args: argparse.Namespace, settings: TrainerSettings) -> int:
    publish(settings.models_dir, args.version)
    print(f"{args.version} is now current in {settings.models_dir}")
    return 0


def _recommend(args: argparse.Namespace, settings: TrainerSettings) -> int:
    model = load_model(settings.models_dir)
    known = args.customer is not None and args.customer in model.users
    who = args.customer if known else "an anonymous visitor"
    if args.customer is not None and not known:
        who = f"unknown customer {args.customer} (treated as anonymous)"
    print(f"model {model.version}: top {args.k} for {who}")
    # As of the end of the training log, so "due again" is judged against the data the model saw.
    recs = Recommender(model).recommend(
        Query(k=args.k, customer_id=args.customer), Profile(visitor_id="cli"), now=model.as_of
    )
    for rank, rec in enumerate(recs.items, 1):
        price = "" if rec.price is None else f"  {rec.price:.2f}"
        print(f"{rank:>3}. {rec.item_id:<12} {rec.description[:40]:<40}{price}  ({rec.reason})")
    return 0


def _generate_shop(args: argparse.Namespace, settings: TrainerSettings) -> int:
    for name in ("customers", "items", "days"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1")
    spec = ShopSpec(customers=args.customers, items=args.items, days=args.days, seed=args.seed)
    table = generate_shop(spec)
    write_log(table, args.out)
    print(f"wrote {table.num_rows:,} purchase lines to {args.out}")
    return 0


def _progress(settings: TrainerSettings) -> bool:
    """Progress bars only on a terminal: in a log file they are carriage-return noise."""
    return not settings.quiet and sys.stderr.isatty()


def _say(settings: TrainerSettings, line: str) -> None:
    if not settings.quiet:
        print(line, file=sys.stderr)


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
