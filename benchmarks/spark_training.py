"""The factor fit at scale: implicit's CPU ALS against Spark's ALS (local mode) on one matrix.

    python -m benchmarks.spark_training [--sizes 1m 10m] [--master local[2]] [--timeout S]

Needs ``personalize[spark]`` and Java 17+; not part of ``python -m benchmarks`` (pyspark is an
optional extra). Both fit the model's own weighted users x items matrix of the generated shops
that :mod:`benchmarks.training` caches (about 1M and 10M purchase lines), with the model's rank,
iterations and regularization, each in a fresh process killed after ``--timeout`` seconds:

* ``implicit``: implicit's CPU ALS on the matrix loaded from ``.npz`` (all cores);
* ``spark``: the matrix's cells written once to Parquet (untimed), then a Spark session
  (``start``), then reading the cells, ``pyspark.ml.recommendation.ALS(implicitPrefs=True)`` and
  both factor tables collected to numpy (``fit``: :func:`training.spark_trainer.fit_als`).

Peak memory: this process's ``VmHWM``, plus for Spark that of its JVM (a child process), read
just before the session stops. docs/training-at-scale.md reads the results.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.fixtures import REPO, write_json
from benchmarks.training import CACHE, SHOPS, _matrix_path, _peak_rss_mb, _subprocess

DEFAULT_JSON = REPO / "benchmarks" / "results" / "spark_training.json"
MODULE = "benchmarks.spark_training"
SIZES = {"1m": "synthetic-1m", "10m": "synthetic-10m"}


def run(sizes: list[str], master: str, timeout: float) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    for size in sizes:
        customers, items = SHOPS[SIZES[size]]
        matrix = _matrix_path(CACHE / f"shop-{customers}-{items}.parquet")
        if not matrix.exists():
            cases[size] = {"error": f"{matrix} missing: run python -m benchmarks.training first"}
            continue
        cases[size] = {
            trainer: _subprocess(["--step", trainer, str(matrix), master], timeout, module=MODULE)
            for trainer in ("implicit", "spark")
        }
    return {"master": master, "cases": cases}


def _implicit(matrix_path: Path) -> dict[str, Any]:
    import scipy.sparse as sp

    from engine.matrix import InteractionMatrix
    from engine.vocab import Vocabulary
    from training.fit import fit_factors
    from training.params import ModelParams

    user_items = sp.load_npz(matrix_path).tocsr()
    users = Vocabulary([str(u) for u in range(user_items.shape[0])])
    items = Vocabulary([str(i) for i in range(user_items.shape[1])])
    start = time.perf_counter()
    fit_factors(InteractionMatrix(users, items, user_items), ModelParams().factors, device="cpu")
    return {
        "seconds": {"fit": time.perf_counter() - start},
        "nnz": int(user_items.nnz),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _spark(matrix_path: Path, master: str) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import scipy.sparse as sp

    from training.params import ModelParams
    from training.spark_trainer import fit_als, spark_session

    coo = sp.load_npz(matrix_path).tocoo()
    cells = matrix_path.with_suffix(".cells.parquet")
    if not cells.exists():
        table = pa.table({"u": coo.row.astype(np.int32), "i": coo.col.astype(np.int32)})
        pq.write_table(table.append_column("weight", pa.array(coo.data)), cells)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    spark = spark_session(master, driver_memory="8g")
    seconds["start"] = time.perf_counter() - clock
    try:
        clock = time.perf_counter()
        fit_als(spark.read.parquet(str(cells)), ModelParams(), coo.shape)
        seconds["fit"] = time.perf_counter() - clock
        jvm = _children_peak_mb()
    finally:
        spark.stop()
    python = _peak_rss_mb()
    return {
        "seconds": seconds,
        "peak_rss_mb": python + jvm,
        "peak_python_mb": python,
        "peak_jvm_mb": jvm,
    }


def _children_peak_mb() -> float:
    """Sum of ``VmHWM`` over this process's direct children (the Spark JVM)."""
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["1m", "10m"])
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per fit process")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="write the results here")
    parser.add_argument("--step", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        trainer, path = args.step[0], Path(args.step[1])
        out = _implicit(path) if trainer == "implicit" else _spark(path, args.step[2])
        print(json.dumps(out))
        return
    result = run(args.sizes, args.master, args.timeout)
    print(json.dumps(result, indent=2))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
