"""Training wall time against calling implicit directly on the same matrix, in one run.

    python -m benchmarks.training [--log PATH] [--format NAME] [--repeat N] [--json OUT]

Measured (median of ``--repeat`` runs, each step timed on its own):

* ``read_direct``: ``pyarrow.csv.read_csv`` of the file, no cleaning (the floor for loading);
* ``read``: ``read_purchase_log`` (parse, clean, report);
* ``fit_direct``: one implicit ALS fit on the model's own weighted users x items matrix, with the
  same hyperparameters (the floor for fitting);
* ``fit_factors``: the same ALS fit through the engine's wrapper (``training.fit.fit_factors``);
* ``fit``: ``fit_repeat_aware``: everything the default model fits (validation signals, weights,
  full-log signals);
* ``train``: ``train_model`` without evaluation (fit + artifact write);
* ``evaluate``: the hold-out evaluation of the model and the four baselines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from engine.matrix import InteractionMatrix
from training.dataset import interactions_from_table
from training.evaluate import evaluate
from training.fit import fit_factors
from training.fusion import fit_repeat_aware
from training.logs import PRESETS, read_purchase_log
from training.params import ModelParams
from training.pipeline import train_model

DEFAULT_LOG = Path(__file__).resolve().parents[2] / "shared/data/online-retail/online_retail.csv.gz"


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(log_path: Path, fmt_name: str, repeat: int) -> dict[str, Any]:
    fmt = PRESETS[fmt_name]
    params = ModelParams()
    log = read_purchase_log(log_path, fmt)
    events = interactions_from_table(log.table)
    as_of = int(events.time.max()) + 1
    matrix = InteractionMatrix.from_interactions(events, params.factors.weighting, as_of=as_of)

    def fit_direct() -> None:
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=params.factors.factors,
                regularization=params.factors.regularization,
                iterations=params.factors.iterations,
                random_state=0,
            )
            model.fit(matrix.user_items, show_progress=False)

    def train() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            train_model(log, params, models_dir=Path(tmp), run_evaluation=False)

    seconds = {
        "read_direct": median_seconds(lambda: pacsv.read_csv(log_path), repeat),
        "read": median_seconds(lambda: read_purchase_log(log_path, fmt), repeat),
        "fit_direct": median_seconds(fit_direct, repeat),
        "fit_factors": median_seconds(lambda: fit_factors(matrix, params.factors), repeat),
        "fit": median_seconds(lambda: fit_repeat_aware(events, params, as_of=as_of), repeat),
        "train": median_seconds(train, repeat),
        "evaluate": median_seconds(lambda: evaluate(events, params), repeat),
    }
    return {
        "log": str(log_path),
        "rows": log.report.rows_read,
        "matrix": {
            "users": matrix.shape[0],
            "items": matrix.shape[1],
            "nnz": int(matrix.user_items.nnz),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "repeat": repeat,
        "seconds": seconds,
        "ratios": {
            "read / read_direct": seconds["read"] / seconds["read_direct"],
            "fit_factors / fit_direct": seconds["fit_factors"] / seconds["fit_direct"],
            "fit / fit_direct": seconds["fit"] / seconds["fit_direct"],
            "read+train / read_direct+fit_direct": (seconds["read"] + seconds["train"])
            / (seconds["read_direct"] + seconds["fit_direct"]),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG)
    parser.add_argument("--format", default="online-retail", choices=sorted(PRESETS))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(args.log, args.format, args.repeat)
    for name, value in result["seconds"].items():
        print(f"{name:<12} {value:8.3f} s")
    for name, value in result["ratios"].items():
        print(f"{name:<38} {value:6.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
