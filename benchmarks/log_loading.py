"""How much slower is read_purchase_log than pyarrow's own CSV reader on the same file?

    python -m benchmarks.log_loading [--path P] [--repeat N] [--json OUT]

Both loaders run alternately in one process, so machine load affects them alike;
the figure that matters is the ratio of the medians (target: <= ~1.5).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from training.logs import PRESETS, LogError, read_purchase_log

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PATH = REPO.parent / "shared" / "data" / "online-retail" / "online_retail.csv.gz"


def _seconds(load: Callable[[], object]) -> float:
    start = time.perf_counter()
    load()
    return time.perf_counter() - start


def measure(path: Path, repeat: int) -> dict[str, Any]:
    """Median wall times of both loaders (after one warm-up each) and their ratio."""
    ours = partial(read_purchase_log, path, PRESETS["online-retail"])
    baseline = partial(pacsv.read_csv, path)
    ours(), baseline()  # warm-up; ours first, so a bad path is reported as a LogError
    times: dict[str, list[float]] = {"pyarrow_read_csv": [], "read_purchase_log": []}
    for _ in range(repeat):
        times["pyarrow_read_csv"].append(_seconds(baseline))
        times["read_purchase_log"].append(_seconds(ours))
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    return {
        "path": str(path),
        "repeat": repeat,
        "median_seconds": medians,
        "ratio": medians["read_purchase_log"] / medians["pyarrow_read_csv"],
        "pyarrow": pa.__version__,
        "python": platform.python_version(),
        "cpu_count": pa.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="an Online Retail CSV")
    parser.add_argument("--repeat", type=int, default=11, help="timed runs of each loader")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    try:
        result = measure(args.path, max(args.repeat, 1))
    except LogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, seconds in result["median_seconds"].items():
        print(f"{name:<20} {seconds * 1000:8.1f} ms (median of {result['repeat']})")
    print(f"{'ratio':<20} {result['ratio']:8.2f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
