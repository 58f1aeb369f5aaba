"""Training wall time and peak memory against a direct implicit fit on the same matrix.

    python -m benchmarks.training [--quick] [--repeat N] [--timeout S] [--json OUT]

Cases: the Online Retail log, and generated shops (power-law item popularity,
:mod:`training.synthetic`) of about 1M and (unless ``--quick``) 10M purchase lines, written once to
Parquet in a cache folder and reused. Every measurement runs in a fresh process, so peak RSS
(``VmHWM``) is the step's own and does not accumulate:

* ``direct``: ``pyarrow`` read of the file, no cleaning (``read_direct``), then one implicit ALS fit
  with the model's hyperparameters on the model's own weighted users x items matrix
  (``fit_direct``; the matrix is built once by another process and loaded untimed): the floor
  for loading and fitting;
* ``train``: ``read_purchase_log`` (``read``: parse, clean, report), then ``train_model`` without
  evaluation (``train``: everything the default model fits, the bought-together pairs, segments
  and the artifact write; split into ``fit`` and ``write``);
* ``evaluated``: the default ``personalize train``: the same read, then ``train_model`` with
  its hold-out evaluation first (``evaluate``: the model's hold-out fit, the four baselines
  scored beside it; then ``fit`` and ``write``, the fit's weights on the hold-out's signals when
  the hold-out and the validation window are as long, as by default); ``total`` is all of it.

Each ratio is the median over the ``--repeat`` rounds of a round's ``train`` against the
``direct`` run just before it (:func:`_paired_ratios`); seconds are medians of each step.

Next to wall seconds, ``cpu_seconds`` (all threads of the step's process, over the timed parts of
``direct`` and ``train``) gives a ratio a host busy with other work distorts less: wall time then
measures the scheduler as much as the work. Both sides import their libraries before the clock
starts (the trainer's scikit-learn too, which it imports only where it uses it); numba's loading
of the trainer's compiled kernels from its cache, on their first call, is timed. Each case
process is killed after ``--timeout`` seconds and reported as timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.fixtures import ONLINE_RETAIL, REPO, write_json

if TYPE_CHECKING:
    from training.logs import PurchaseLog

CACHE = Path(tempfile.gettempdir()) / "personalize-benchmarks"
# Generated shops: (customers, items) giving about 1M and 10M lines at the default basket rates.
SHOPS = {"synthetic-1m": (36_000, 10_000), "synthetic-10m": (305_000, 50_000)}
STEPS = ("direct", "train", "evaluated")


def run(quick: bool, repeat: int = 1, timeout: float = 900.0) -> dict[str, Any]:
    """Every case (Online Retail, 1M and, unless ``quick``, 10M lines) and step, each in its own
    process; seconds are medians over ``repeat`` runs (``evaluated``: one), peaks the largest."""
    cases: dict[str, tuple[Path, str]] = {"online-retail": (ONLINE_RETAIL, "online-retail")}
    generation: dict[str, dict[str, Any]] = {}
    for name, (customers, items) in SHOPS.items():
        if quick and name != "synthetic-1m":
            continue
        path = CACHE / f"shop-{customers}-{items}.parquet"
        if not path.exists():
            generation[name] = _subprocess(
                ["--generate", str(path), "--customers", str(customers), "--items", str(items)],
                timeout,
            )
        cases[name] = (path, "generic")
    results = {name: _case(path, fmt, repeat, timeout) for name, (path, fmt) in cases.items()}
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "quick": quick,
        "repeat": repeat,
        "generation": generation,
        "cases": results,
    }


def _case(path: Path, fmt: str, repeat: int, timeout: float) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {step: [] for step in STEPS}
    if not _matrix_path(path).exists():
        _subprocess(["--step", "matrix", str(path), fmt], timeout)
    for i in range(repeat):
        for step in STEPS:
            if step == "evaluated" and i > 0:
                continue  # minutes at 10M lines, and no ratio depends on it: measured once
            runs[step].append(_subprocess(["--step", step, str(path), fmt], timeout))
    steps = {step: _merge(measured) for step, measured in runs.items()}
    out: dict[str, Any] = {"log": str(path), "format": fmt, "steps": steps}
    direct, train = steps["direct"], steps["train"]
    if "seconds" in direct and "seconds" in train:
        out["rows"] = train["rows"]
        out["matrix"] = direct["matrix"]
        out["ratios"] = _paired_ratios(runs["direct"], runs["train"])
        out["ratios"]["peak train / peak direct"] = train["peak_rss_mb"] / direct["peak_rss_mb"]
    return out


def _paired_ratios(direct: list[dict[str, Any]], train: list[dict[str, Any]]) -> dict[str, float]:
    """Each ratio as the median over rounds of the train step against the direct step run just
    before it: a host whose speed drifts between rounds (this one's ALS fit took 24 s in one
    hour and 45 s in another) moves both runs of a round alike, where a ratio of medians would
    divide figures from different minutes."""
    ratios: dict[str, list[float]] = {}
    for d, t in zip(direct, train, strict=True):
        ds, ts = d["seconds"], t["seconds"]
        for name, value in {
            "read / read_direct": ts["read"] / ds["read_direct"],
            "fit / fit_direct": ts["fit"] / ds["fit_direct"],
            "read+train / read_direct+fit_direct": (ts["read"] + ts["train"])
            / (ds["read_direct"] + ds["fit_direct"]),
            "cpu read+train / cpu direct": t["cpu_seconds"] / d["cpu_seconds"],
        }.items():
            ratios.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in ratios.items()}


def _merge(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds and largest peak over repeated runs of one step (or its failure)."""
    failed = [m for m in measured if "error" in m]
    if failed:
        return failed[0]
    merged = dict(measured[0])
    merged["seconds"] = {
        key: statistics.median(m["seconds"][key] for m in measured) for key in merged["seconds"]
    }
    if "cpu_seconds" in merged:
        merged["cpu_seconds"] = statistics.median(m["cpu_seconds"] for m in measured)
    merged["peak_rss_mb"] = max(m["peak_rss_mb"] for m in measured)
    return merged


def _subprocess(
    args: list[str], timeout: float, module: str = "benchmarks.training"
) -> dict[str, Any]:
    """Run one measurement of ``module`` in a fresh interpreter; its last stdout line is JSON."""
    command = [sys.executable, "-m", module, *args]
    try:
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ``ru_maxrss``: Linux carries ``ru_maxrss`` over
    ``fork`` and ``exec``, so a step started by a big parent would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


def _generate(path: Path, customers: int, items: int) -> dict[str, Any]:
    from training.synthetic import ShopSpec, generate_shop, write_log

    start = time.perf_counter()
    table = generate_shop(ShopSpec(customers=customers, items=items))
    tmp = path.with_suffix(".tmp.parquet")
    write_log(table, tmp)
    tmp.replace(path)  # a killed run leaves no half-written cache
    return {
        "rows": table.num_rows,
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _step(step: str, path: Path, fmt_name: str) -> dict[str, Any]:
    """One step, timed in this (fresh) process."""
    from training.logs import PRESETS, read_purchase_log

    if step == "direct":
        return _direct(path, fmt_name)
    # The libraries the trainer imports where it uses them (so that every ``personalize``
    # command starts fast) are imported before the clock starts, as the direct path's are:
    # scikit-learn alone costs about a second, which is a process's start, not training.
    import sklearn.cluster
    import sklearn.linear_model  # noqa: F401

    start, cpu = time.perf_counter(), time.process_time()
    log = read_purchase_log(path, PRESETS[fmt_name])
    read, cpu_read = time.perf_counter() - start, time.process_time() - cpu
    if step == "matrix":
        _save_matrix(log, _matrix_path(path))
        return {}
    from training.params import ModelParams
    from training.pipeline import train_model

    start, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        result = train_model(
            log, ModelParams(), models_dir=Path(tmp), run_evaluation=step == "evaluated"
        )
    train = time.perf_counter() - start
    seconds = {"read": read, "train": train, **result.seconds}
    if step == "evaluated":
        seconds["total"] = read + train
    return {
        "rows": log.report.rows_read,
        "seconds": seconds,
        "cpu_seconds": cpu_read + time.process_time() - cpu,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _matrix_path(log_path: Path) -> Path:
    return CACHE / f"{log_path.name.split('.')[0]}.matrix.npz"


def _save_matrix(log: PurchaseLog, path: Path) -> None:
    """The model's own weighted users x items matrix, for the direct fit to load untimed."""
    import scipy.sparse as sp

    from engine.matrix import InteractionMatrix
    from training.dataset import interactions_from_table
    from training.params import ModelParams

    events = interactions_from_table(log.table)
    as_of = int(events.time.max()) + 1
    weighting = ModelParams().factors.weighting
    matrix = InteractionMatrix.from_interactions(events, weighting, as_of=as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    sp.save_npz(path, matrix.user_items, compressed=False)


def _direct(path: Path, fmt_name: str) -> dict[str, Any]:
    """A plain pyarrow read, then implicit's ALS on the saved matrix of the same log."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from training.params import ModelParams

    start, cpu = time.perf_counter(), time.process_time()
    table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
    read_direct = time.perf_counter() - start
    cpu_read = time.process_time() - cpu
    del table
    user_items = sp.load_npz(_matrix_path(path)).tocsr()
    params = ModelParams().factors
    start, cpu = time.perf_counter(), time.process_time()
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            iterations=params.iterations,
            random_state=0,
        )
        model.fit(user_items, show_progress=False)
    return {
        "seconds": {"read_direct": read_direct, "fit_direct": time.perf_counter() - start},
        "cpu_seconds": cpu_read + time.process_time() - cpu,
        "matrix": {
            "users": user_items.shape[0],
            "items": user_items.shape[1],
            "nnz": int(user_items.nnz),
        },
        "peak_rss_mb": _peak_rss_mb(),
    }


def _print(result: dict[str, Any]) -> None:
    for name, case in result["cases"].items():
        print(f"{name} ({case.get('rows', '?'):,} rows)" if "rows" in case else name)
        for step, measured in case["steps"].items():
            if "error" in measured:
                print(f"  {step:<9} {measured['error']}")
                continue
            times = "  ".join(f"{k} {v:.2f} s" for k, v in measured["seconds"].items())
            print(f"  {step:<9} peak {measured['peak_rss_mb']:7.0f} MB  {times}")
        for ratio, value in case.get("ratios", {}).items():
            print(f"  {ratio:<38} {value:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Online Retail and 1M lines only")
    parser.add_argument("--repeat", type=int, default=1, help="runs per step (median seconds)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per step process")
    parser.add_argument("--json", type=Path, help="also write the results here")
    # Internal: one measurement in this process (what run() starts each subprocess with).
    parser.add_argument(
        "--step", nargs=3, metavar=("STEP", "PATH", "FORMAT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--customers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        step, path, fmt = args.step
        print(json.dumps(_step(step, Path(path), fmt)))
        return
    if args.generate:
        args.generate.parent.mkdir(parents=True, exist_ok=True)
        print(json.dumps(_generate(args.generate, args.customers, args.items)))
        return
    result = run(args.quick, args.repeat, args.timeout)
    _print(result)
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
