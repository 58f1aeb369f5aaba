"""The whole benchmark suite in one command: quality, training, serving, model reloads under
load, CRM batch, replay, ingestion and memory, written as one JSON file, a Markdown report and
PNG plots.

    python -m benchmarks [--quick] [--only SECTION ...] [--out DIR]

``--only`` runs some sections and keeps the other sections' latest results in the report.
``--quick`` (what CI runs, so the suite cannot rot) runs every section on a small budget and
writes to ``benchmarks/results/quick/`` (not kept in git); the full run writes
``benchmarks/results/`` and takes 20-30 minutes on 2 cores. Every server a section starts
binds a free loopback port and is stopped when the section ends, also on Ctrl-C or SIGTERM. A
section that fails is recorded with its error and makes the exit status 1; the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_info

from benchmarks import (
    email_batch,
    http_latency,
    ingestion,
    memory,
    quality,
    recommend_compute,
    reload,
    replay,
    report,
    training,
)
from benchmarks.fixtures import ONLINE_RETAIL, REPO, large_shop_spec, retail_model, write_json
from benchmarks.servers import stop_servers_on_sigterm
from engine.model import load_model

RESULTS = REPO / "benchmarks" / "results"
QUICK_REPLAY_EVENTS = 600

Section = Callable[[bool, Path, Path], dict[str, Any]]  # (quick, work dir, models) -> results


def _compute(quick: bool, work: Path, models: Path) -> dict[str, Any]:
    result = recommend_compute.run(load_model(models), 300 if quick else 3000)
    large = large_shop_spec()
    if quick:
        large = replace(large, customers=4_000, items=10_000)
    requests = 300 if quick else 2000
    result["candidates"] = recommend_compute.candidates(
        recommend_compute.generated_shop(large), requests
    )
    result["candidates_taobao"] = recommend_compute.candidates(
        recommend_compute.taobao_shop, requests
    )
    return result


def _http(quick: bool, work: Path, models: Path) -> dict[str, Any]:
    spec = http_latency.QUICK if quick else http_latency.LoadSpec(requests=5000)
    servers = frozenset(http_latency.SERVERS) - ({"redis-100k"} if quick else set())
    return http_latency.run(models, work, spec, servers=servers)


def _email(quick: bool, work: Path, models: Path) -> dict[str, Any]:
    return {
        "online_retail": email_batch.online_retail(load_model(models), 1 if quick else 3),
        "synthetic": email_batch.synthetic(2000 if quick else 10_000, 1 if quick else 3, False),
    }


def _replay(quick: bool, work: Path, models: Path) -> dict[str, Any]:
    return replay.run(quick, work, max_events=QUICK_REPLAY_EVENTS if quick else None)


SECTIONS: dict[str, Section] = {
    "quality": lambda quick, work, models: quality.run(quick),
    # Medians of three: a 2-thread fit on this shared host sometimes gets one core (2x slower).
    "training": lambda quick, work, models: training.run(quick, repeat=1 if quick else 3),
    "compute": _compute,
    "http": _http,
    "reload": lambda quick, work, models: reload.run(quick, work, models),
    "email_batch": _email,
    "replay": _replay,
    "ingestion": lambda quick, work, models: ingestion.run(quick, work, models),
    "memory": lambda quick, work, models: memory.run(quick, work, models),
}


def machine() -> dict[str, Any]:
    return {
        "node": platform.node(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_description(),
        "python": platform.python_version(),
        "blas": [
            f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})"
            for i in threadpool_info()
            if i["user_api"] == "blas"
        ],
    }


# Widest first: (the /proc/cpuinfo flag, how a report names it).
_VECTOR_EXTENSIONS = (
    ("avx512f", "AVX-512"),
    ("avx2", "AVX2"),
    ("avx", "AVX"),
    ("sse4_2", "SSE4.2"),
)


def cpu_description() -> str:
    """The CPU's model name, widest vector extension and L2 cache, from Linux's /proc and /sys
    ('' elsewhere): one commit measured 2x apart on hosts that differ in these (OpenBLAS saw
    Haswell one day, SkylakeX the next), so a report names them."""
    parts = []
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text()
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in info.splitlines())
            if value
        )
        parts.append(fields.get("model name", ""))
        flags = set(fields.get("flags", "").split())
        parts.append(next((name for flag, name in _VECTOR_EXTENSIONS if flag in flags), ""))
    with contextlib.suppress(OSError):
        size = Path("/sys/devices/system/cpu/cpu0/cache/index2/size").read_text().strip()
        parts.append(f"L2 {size}")
    return ", ".join(part for part in parts if part)


def main() -> int:
    stop_servers_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small budgets (CI)")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="these sections")
    parser.add_argument("--out", type=Path, help="results directory")
    args = parser.parse_args()
    if not ONLINE_RETAIL.is_file():
        parser.error(f"the suite needs the shared datasets: {ONLINE_RETAIL} not found")
    out: Path = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    chosen = args.only or list(SECTIONS)
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "sections": {},
    }
    previous = out / "results.json"
    if args.only and previous.is_file():
        # Re-running some sections keeps the others' latest figures in the same report.
        kept = json.loads(previous.read_text())
        if kept.get("quick") == args.quick:
            results["sections"] = kept["sections"]
    failed = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        print("training the Online Retail model the sections share ...", flush=True)
        models = retail_model(work / "models")
        for name in chosen:
            print(f"== {name}", flush=True)
            section_dir = work / name
            section_dir.mkdir()
            start = time.perf_counter()
            started = datetime.now(UTC).isoformat(timespec="seconds")
            try:
                data = SECTIONS[name](args.quick, section_dir, models)
            # Recorded and reported: one broken section must not hide the others' figures.
            except Exception as exc:
                traceback.print_exc()
                data = {"error": f"{type(exc).__name__}: {exc}"}
                failed.append(name)
            data["seconds"] = time.perf_counter() - start
            data["started"] = started
            results["sections"][name] = data
            print(f"   {name}: {data['seconds']:.1f} s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    report.write(results, out)
    print(f"wrote {out / 'results.json'}, {out / 'report.md'} and the plots")
    if failed:
        print(f"failed sections: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
