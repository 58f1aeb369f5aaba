"""Soak: the API at a steady request rate for minutes, its memory sampled. Opt-in, not in CI.

    python -m benchmarks.soak [--minutes 10] [--rate 200] [--models DIR] [--out FILE]

Serves the Online Retail model (trained here unless ``--models``) with ``personalize serve``
(one worker) on a private redis-server, and sends a steady mix: three recommendation requests
(anonymous visitors with sessions, known customers) to one click event, over a bounded pool of
visitors so that the working set stops growing once every visitor has a session. Each quarter
of a second gets its share of ``--rate`` from :mod:`benchmarks.loadgen` (sent as fast as the
server takes them, then a pause until the next quarter; requests a quarter had no time for are
the shortfall).
Every ``--sample-seconds`` the server's RSS (and Redis's) is read from ``/proc/<pid>``.

Reported: errors (any non-2xx, any connection error), p50/p99 over the whole run and per
sample, and the memory drift: the mean RSS of the last three samples against the mean of the
three samples after the warm-up (the first ``--warmup`` fraction of the run), which must stay
within 5 % with zero errors. Writes ``benchmarks/results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import loadgen
from benchmarks.fixtures import ONLINE_RETAIL, REPO, retail_model, write_json
from benchmarks.memory import rollup
from benchmarks.servers import (
    HOST,
    engine_server,
    free_port,
    redis_server,
    stop_servers_on_sigterm,
)
from engine.artifacts import load_artifact

RESULT = REPO / "benchmarks" / "results" / "soak.json"
DRIFT_TARGET = 0.05  # RSS after warm-up may move this much (either way)
VISITORS = 2000  # the pool the load cycles through
WINDOW = 3  # samples averaged at each end of the drift
TICK_SECONDS = 0.25  # pacing: each tick's requests go out at once, then a pause


def _ids(models: Path) -> tuple[list[str], list[str]]:
    """Known customers and items of the served model (ids only; no factors mapped here)."""
    arrays = load_artifact(models, verify=False).arrays
    return [str(c) for c in arrays["users"][:VISITORS]], [str(i) for i in arrays["items"]]


def mixed_case(customers: Sequence[str], items: Sequence[str]) -> loadgen.Case:
    """Request ``i``: every fourth a click, the others recommendations (some for customers)."""

    def case(i: int) -> loadgen.Request:
        visitor = f"soak-{i % VISITORS}"
        if i % 4 == 0:
            event = {"visitor_id": visitor, "item_id": items[i % len(items)], "type": "click"}
            return loadgen.post_json("/v1/events", event)
        params = {"visitor_id": visitor, "k": "10"}
        if i % 4 == 1:
            params["customer_id"] = customers[(i // 4) % len(customers)]
        return loadgen.get("/v1/recommendations", params)

    return case


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds or [np.nan]) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


async def soak(
    port: int,
    pids: dict[str, int],
    case: loadgen.Case,
    *,
    seconds: float,
    rate: int,
    concurrency: int,
    sample_seconds: float,
) -> dict[str, Any]:
    """Paced load for ``seconds``; a sample of RSS and of the window's requests every
    ``sample_seconds``."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    samples: list[dict[str, Any]] = []
    shortfall = 0
    per_tick = max(1, round(rate * TICK_SECONDS))
    start = time.monotonic()
    next_sample, window_start, window_errors = start + sample_seconds, 0, 0
    tick = 0
    while (tick_start := start + tick * TICK_SECONDS) < start + seconds:
        stats = await loadgen.load(
            HOST, port, case, per_tick, concurrency, tick_start + TICK_SECONDS, tick * per_tick,
            latencies=latencies,
        )  # fmt: skip
        errors.update(stats["error_kinds"])
        shortfall += per_tick - stats["requests"]
        tick += 1
        now = time.monotonic()
        if now >= next_sample:
            window = latencies[window_start:]
            samples.append({
                "seconds": round(now - start, 1),
                "rss_bytes": rollup(pids["api"])["Rss"],
                "redis_rss_bytes": rollup(pids["redis"])["Rss"],
                "requests": len(window),
                "errors": sum(errors.values()) - window_errors,
                **_percentiles(window),
            })  # fmt: skip
            window_start, window_errors = len(latencies), sum(errors.values())
            next_sample += sample_seconds
        await asyncio.sleep(max(0.0, start + tick * TICK_SECONDS - time.monotonic()))
    return {
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "shortfall": shortfall,
        **_percentiles(latencies),
        "samples": samples,
    }


def drift(samples: list[dict[str, Any]], warmup_seconds: float) -> dict[str, Any]:
    """RSS at the end against RSS just after the warm-up (means of WINDOW samples each)."""
    after = [s["rss_bytes"] for s in samples if s["seconds"] >= warmup_seconds]
    if len(after) < 2 * WINDOW:
        raise RuntimeError(
            f"{len(after)} samples after the warm-up, need {2 * WINDOW}: run longer "
            "or sample more often"
        )
    baseline, end = float(np.mean(after[:WINDOW])), float(np.mean(after[-WINDOW:]))
    return {
        "warmup_seconds": warmup_seconds,
        "baseline_rss_bytes": baseline,
        "end_rss_bytes": end,
        "drift": (end - baseline) / baseline,
        "max_drift": (max(after) - baseline) / baseline,
    }


def run(
    minutes: float,
    rate: int,
    work: Path,
    models: Path | None = None,
    *,
    concurrency: int = 8,
    sample_seconds: float = 5.0,
    warmup: float = 0.2,
) -> dict[str, Any]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found on PATH: install redis-server (Debian)")
    if models is None:
        models = retail_model(work / "models")
    customers, items = _ids(models)
    redis_port, api_port = free_port(), free_port()
    (work / "redis").mkdir()
    with (
        redis_server(binary, redis_port, work / "redis") as redis_process,
        engine_server(
            models, api_port, work / "api.log", f"redis://{HOST}:{redis_port}/0"
        ) as api_process,
    ):
        load = soak(
            api_port,
            {"api": api_process.pid, "redis": redis_process.pid},
            mixed_case(customers, items),
            seconds=minutes * 60,
            rate=rate,
            concurrency=concurrency,
            sample_seconds=sample_seconds,
        )
        result: dict[str, Any] = loadgen.run(load)
    memory = drift(result["samples"], warmup * minutes * 60)
    met = result["errors"] == 0 and abs(memory["drift"]) <= DRIFT_TARGET
    return {
        "minutes": minutes,
        "rate_rps": rate,
        "concurrency": concurrency,
        "mix": "3 recommendations (1 for a known customer) : 1 click event",
        "visitors": VISITORS,
        **result,
        "memory": memory,
        "target": {"rss_drift_within": DRIFT_TARGET, "errors": 0, "met": met},
    }


def main() -> int:
    stop_servers_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="duration (default 10)")
    parser.add_argument("--rate", type=int, default=200, help="requests per second (200)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections (8)")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="RSS every (5 s)")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of the run (0.2)")
    parser.add_argument("--models", type=Path, help="models dir (default: train Online Retail)")
    parser.add_argument("--out", type=Path, default=RESULT, help=f"results (default {RESULT})")
    args = parser.parse_args()
    if args.models is None and not ONLINE_RETAIL.is_file():
        parser.error(f"no --models and {ONLINE_RETAIL} not found to train one")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        result = run(
            args.minutes, args.rate, Path(tmp), args.models, concurrency=args.concurrency,
            sample_seconds=args.sample_seconds, warmup=args.warmup,
        )  # fmt: skip
    write_json(args.out, result)
    memory = result["memory"]
    print(
        f"{result['requests']:,} requests in {args.minutes:g} min at {args.rate}/s "
        f"(shortfall {result['shortfall']:,}): {result['errors']} errors, "
        f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms; RSS "
        f"{memory['baseline_rss_bytes'] / 2**20:.1f} -> {memory['end_rss_bytes'] / 2**20:.1f} MiB "
        f"after warm-up ({memory['drift']:+.1%}); target "
        f"{'met' if result['target']['met'] else 'missed'}; wrote {args.out}"
    )
    return 0 if result["target"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
