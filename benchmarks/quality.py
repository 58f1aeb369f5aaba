"""Recommendation quality on every shared dataset that fits: the default model against baselines.

    python -m benchmarks.quality [--quick] [--json OUT]

Each dataset goes through the trainer's own reader and evaluation (``training.evaluate``): a
time-ordered hold-out of the last days, test users those seen before the cut who interacted
after it, metrics at 10 over all items and over new items (items the user never had before).
Baselines: popularity, buy-again, implicit ALS and implicit item-kNN, fitted on the same split.

* Online Retail (purchases of a gift-ware shop; 30-day hold-out);
* Complete Journey sample (grocery baskets; 30-day hold-out);
* MovieLens latest-small (ratings as implicit feedback; a 365-day hold-out). Its users rate in
  bursts, so few of them span any global time cut: 25 test users here, and the figures are
  noisy. A per-user leave-last-out split (the usual protocol for published MovieLens figures)
  is not what a shop's time-ordered hold-out measures, and is not implemented.

``--quick`` (for CI) evaluates Online Retail only.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.fixtures import ONLINE_RETAIL, SHARED_DATA, write_json
from training.dataset import interactions_from_table
from training.evaluate import evaluate
from training.logs import PRESETS, LogFormat, read_purchase_log
from training.params import ModelParams

METRICS = ("ndcg@10", "hit_rate@10", "ndcg@10_new", "hit_rate@10_new")


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path
    fmt: LogFormat
    holdout_days: int


DATASETS = (
    Dataset(
        "online-retail",
        ONLINE_RETAIL,
        PRESETS["online-retail"],
        30,
    ),
    Dataset(
        "complete-journey",
        SHARED_DATA / "completejourney-sample/transactions_sample.csv.gz",
        PRESETS["complete-journey"],
        30,
    ),
    Dataset(
        "movielens-small",
        SHARED_DATA / "ml-latest-small/ratings.csv",
        replace(
            PRESETS["generic"],
            name="movielens",
            user_col="userId",
            item_col="movieId",
            time_col="timestamp",
            time_format="unix",
        ),
        365,
    ),
)


def evaluate_dataset(dataset: Dataset) -> dict[str, Any]:
    start = time.perf_counter()
    log = read_purchase_log(dataset.path, dataset.fmt)
    events = interactions_from_table(log.table)
    result = evaluate(events, ModelParams(), holdout_days=dataset.holdout_days)
    arms = {"model": result.model, **result.baselines}
    return {
        "rows_read": log.report.rows_read,
        "rows_kept": log.report.rows_kept,
        "users": len(events.users),
        "items": len(events.items),
        "holdout_days": dataset.holdout_days,
        "split": result.split,
        "metrics": {arm: {m: values.get(m) for m in METRICS} for arm, values in arms.items()},
        "seconds": time.perf_counter() - start,
    }


def run(quick: bool) -> dict[str, Any]:
    chosen = DATASETS[:1] if quick else DATASETS
    results: dict[str, Any] = {}
    for dataset in chosen:
        if not dataset.path.is_file():
            results[dataset.name] = {"skipped": f"{dataset.path} not found"}
            continue
        results[dataset.name] = evaluate_dataset(dataset)
    return {"datasets": results}


def print_table(result: dict[str, Any]) -> None:
    for name, data in result["datasets"].items():
        if "skipped" in data:
            print(f"{name}: skipped ({data['skipped']})")
            continue
        arms = list(data["metrics"])
        print(f"\n{name}: {data['users']} users, {data['items']} items, "
              f"{data['holdout_days']}-day hold-out")  # fmt: skip
        print(f"{'metric':<17}" + "".join(f"{arm:>11}" for arm in arms))
        for metric in METRICS:
            values = [data["metrics"][arm][metric] for arm in arms]
            print(f"{metric:<17}" + "".join(f"{v:11.4f}" for v in values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Online Retail only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(args.quick)
    print_table(result)
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
