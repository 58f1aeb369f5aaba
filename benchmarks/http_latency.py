"""Request latency over HTTP on loopback: the engine's routes against a bare FastAPI floor.

    python -m benchmarks.http_latency [--models DIR] [--requests N] [--concurrency C]
        [--warmup W] [--max-seconds S] [--json OUT]

Trains the default model on the shared Online Retail log when ``--models`` is not given. Starts,
one at a time, each on a free 127.0.0.1 port and always stopped at the end:

* the floor: ``benchmarks.bare_app`` (``GET /ping``, ``POST /ping`` with a small JSON body);
* the engine, ``personalize serve --workers 1``, with the embedded memory store;
* the engine with ``--redis-url`` to a private redis-server started here on a free port (never
  the machine's own Redis; skipped when no ``redis-server`` is installed).

All three run under the same uvicorn settings: one worker, uvloop and httptools when installed,
no access log. The load generator (``benchmarks.loadgen``: raw asyncio streams on uvloop,
HTTP/1.1 keep-alive, ``--concurrency`` connections) keeps ``--concurrency`` requests in flight
and times each one with ``time.perf_counter``: ``--warmup`` requests first, then ``--requests``
measured ones (or fewer if ``--max-seconds`` runs out). Cases, per store:

* ``GET /v1/recommendations``: an anonymous visitor with no clicks (a new visitor each request);
  with 5 clicks (sent before as one batch of 5 click events per visitor on items of
  ``GET /v1/trending?k=50``, a different visitor each request); a known customer
  (``customer_id`` from the model's user vocabulary, no session);
* ``POST /v1/events``: one click event, a fresh event id each request.

Reported per case: p50, p90 and p99 latency, throughput, errors (non-2xx or exceptions) and,
for the engine, the throughput ratio and p99 difference against the floor of the same method.
Client and server share the machine's cores (2 on the reference machine), so the client's own
CPU time is in every figure: absolute numbers are pessimistic; the ratios against the floor are
what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import loadgen
from benchmarks.fixtures import retail_model
from benchmarks.loadgen import Case, Request, get, load, post_json
from benchmarks.servers import (
    HOST,
    engine_server,
    free_port,
    redis_server,
    stop_servers_on_sigterm,
    uvicorn_server,
)
from engine.model import load_model

SESSION_CLICKS = 5


def _case_results(host: str, port: int, cases: dict[str, Case], args: argparse.Namespace
                  ) -> dict[str, dict[str, Any]]:  # fmt: skip
    async def measure() -> dict[str, dict[str, Any]]:
        results = {}
        for name, case in cases.items():
            deadline = time.monotonic() + args.max_seconds
            # Warm-up numbers follow the measured ones, so neither reuses the other's visitors.
            await load(host, port, case, args.warmup, args.concurrency, deadline, args.requests)
            results[name] = await load(host, port, case, args.requests, args.concurrency, deadline)
        return results

    return dict(loadgen.run(measure()))


def floor_cases() -> dict[str, Case]:
    body = {"visitor_id": "v-bench", "item_id": "sku-bench", "type": "click"}
    return {
        "GET /ping": lambda i: get("/ping"),
        "POST /ping": lambda i: post_json("/ping", {**body, "event_id": uuid.uuid4().hex}),
    }


def engine_cases(port: int, customers: list[str], args: argparse.Namespace) -> dict[str, Case]:
    """The engine's cases; first sends the click sessions the 5-click case reads."""
    tag = uuid.uuid4().hex[:8]  # visitor ids never seen before, whatever the store holds
    with urllib.request.urlopen(f"http://{HOST}:{port}/v1/trending?k=50", timeout=10) as reply:
        items = [item["item_id"] for item in json.load(reply)["items"]]
    rng = np.random.default_rng(0)
    sessions = [list(rng.choice(items, SESSION_CLICKS, replace=False))
                for _ in range(args.requests + args.warmup)]  # fmt: skip

    def clicks(i: int) -> Request:
        return post_json("/v1/events", [{"visitor_id": f"{tag}-s{i}", "item_id": item,
                                         "type": "click"} for item in sessions[i]])  # fmt: skip

    deadline = time.monotonic() + args.max_seconds
    setup = loadgen.run(load(HOST, port, clicks, len(sessions), args.concurrency, deadline))
    if setup["errors"] or setup["requests"] < len(sessions):
        raise RuntimeError(f"sending the click sessions failed or timed out: {setup}")

    def recs(params: Callable[[int], dict[str, str]]) -> Case:
        return lambda i: get("/v1/recommendations", params(i))

    return {
        "GET recs, anonymous, 0 clicks": recs(lambda i: {"visitor_id": f"{tag}-a{i}"}),
        "GET recs, anonymous, 5 clicks": recs(lambda i: {"visitor_id": f"{tag}-s{i}"}),
        "GET recs, known customer": recs(
            lambda i: {"visitor_id": f"{tag}-c{i}", "customer_id": customers[i % len(customers)]}
        ),
        "POST event, 1 click": lambda i: post_json("/v1/events", {
            "event_id": uuid.uuid4().hex, "visitor_id": f"{tag}-e{i % 500}",
            "item_id": items[i % len(items)], "type": "click"}),
    }  # fmt: skip


def compare(rows: list[dict[str, Any]]) -> None:
    """Add each engine row's throughput ratio and p99 difference against its method's floor."""
    floors = {row["method"]: row for row in rows if row["server"] == "floor"}
    for row in rows:
        floor = floors.get(row["method"])
        if row["server"] != "floor" and floor is not None:
            row["throughput_vs_floor"] = row["throughput_rps"] / floor["throughput_rps"]
            row["p99_minus_floor_ms"] = row["p99_ms"] - floor["p99_ms"]


def run(models: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    model = load_model(models)
    rng = np.random.default_rng(0)
    customers = [str(c) for c in rng.permutation(np.asarray(model.users.ids, dtype=str))]
    rows: list[dict[str, Any]] = []

    def add(server: str, results: dict[str, dict[str, Any]]) -> None:
        for name, stats in results.items():
            rows.append({"server": server, "case": name, "method": name.split()[0], **stats})

    port = free_port()
    with uvicorn_server(port, work / "floor.log"):
        add("floor", _case_results(HOST, port, floor_cases(), args))

    def engine(server: str, redis_url: str | None) -> None:
        port = free_port()
        with engine_server(models, port, work / f"{server}.log", redis_url):
            add(server, _case_results(HOST, port, engine_cases(port, customers, args), args))

    engine("memory", None)
    skipped = None
    binary = shutil.which("redis-server")
    if binary is None:
        skipped = "redis-server not found on PATH: the Redis cases are skipped"
        print(f"note: {skipped}", file=sys.stderr)
    else:
        redis_port = free_port()
        (work / "redis").mkdir()
        with redis_server(binary, redis_port, work / "redis"):
            engine("redis", f"redis://127.0.0.1:{redis_port}/0")
    compare(rows)
    return {
        "model": model.version,
        "items": len(model.items),
        "customers": len(customers),
        "requests": args.requests,
        "warmup": args.warmup,
        "concurrency": args.concurrency,
        "max_seconds": args.max_seconds,
        "redis_skipped": skipped,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.machine(),
            "load_generator": "benchmarks.loadgen (asyncio streams, uvloop)",
        },
        "cases": rows,
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"{result['items']} items, {result['requests']} requests per case after "
          f"{result['warmup']} warm-up, {result['concurrency']} in flight, "
          f"{result['machine']['cpus']} cpus shared by client and server")  # fmt: skip
    print(f"{'server':<7} {'case':<30} {'n':>5} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
          f"{'req/s':>7} {'errors':>6} {'x floor':>7} {'p99 +ms':>7}")  # fmt: skip
    for row in result["cases"]:
        ratio = f"{row['throughput_vs_floor']:7.2f}" if "throughput_vs_floor" in row else " " * 7
        extra = f"{row['p99_minus_floor_ms']:+7.2f}" if "p99_minus_floor_ms" in row else ""
        print(f"{row['server']:<7} {row['case']:<30} {row['requests']:>5} {row['p50_ms']:7.2f} "
              f"{row['p90_ms']:7.2f} {row['p99_ms']:7.2f} {row['throughput_rps']:7.0f} "
              f"{row['errors']:>6} {ratio} {extra}")  # fmt: skip
        if row["errors"]:
            print(f"        errors: {row['error_kinds']}")


def main() -> None:
    stop_servers_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, help="a models directory (default: train one)")
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per case")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per case")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="time limit per case (warm-up included)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if min(args.requests, args.concurrency) < 1 or args.warmup < 0:
        parser.error("--requests and --concurrency must be at least 1, --warmup at least 0")
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        work = Path(tmp)
        if args.models is None:
            args.models = retail_model(work / "models")
        result = run(args.models.resolve(), work, args)
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
