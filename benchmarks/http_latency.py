"""Request latency over HTTP on loopback: the engine's routes against a bare FastAPI floor.

    python -m benchmarks.http_latency [--quick] [--models DIR] [--requests N]
        [--concurrency C] [--warmup W] [--max-seconds S] [--rate R] [--no-large]
        [--server NAME ...] [--case TEXT ...] [--json OUT]

Trains the default model on the shared Online Retail log when ``--models`` is not given. Starts,
one at a time, each on a free 127.0.0.1 port and always stopped at the end:

* the floor: ``benchmarks.bare_app`` (``GET /ping``, ``POST /ping`` with a small JSON body),
  with 1 worker and with 2;
* the engine, ``personalize serve``, with the embedded store (1 worker: the embedded store is
  per process) and with ``--redis-url`` to a private redis-server started here (never the
  machine's own; skipped when no ``redis-server`` is installed), with 1 worker and with 2;
* unless ``--no-large``: the engine with Redis and 1 worker on a catalog of 100k items: a
  generated shop (``benchmarks.fixtures.large_shop_spec``) trained here, so that its factors,
  neighbours and candidate index are a trained model's.

Every server runs under the same uvicorn settings (uvloop and httptools when installed, no
access log). The load generator (``benchmarks.loadgen``: raw asyncio streams on uvloop, HTTP/1.1
keep-alive, ``--concurrency`` connections) keeps that many requests in flight and times each one:
``--warmup`` requests first, then ``--requests`` measured ones (or fewer if ``--max-seconds``
runs out). Cases, per engine server:

* ``GET /v1/recommendations``: an anonymous visitor with no clicks (a new visitor each request);
  with 5 and with 20 clicks (sent before as one batch per visitor on items of
  ``GET /v1/trending?k=50``, a different visitor each request); a known customer (no session);
* ``POST /v1/events``: one click event, a fresh event id each request.

The floor servers stay up while the engine runs, and each engine case takes turns with the
floor's case of the same method and worker count (``ROUNDS`` parts each, alternating): the
ratios compare runs made in the same minutes, since a shared host's speed drifts over a run
(the same floor measured 11,907 and 6,507 req/s an hour apart on the reference machine).
Each case is loaded twice: for capacity, closed loop (``--concurrency`` requests always in
flight, as fast as the server answers), and for latency, open loop at a fixed ``--rate`` (the same
traffic for the floor and every case; each request timed from when it was due, so a stall is
charged to every request it delays). At saturation a request's latency is mostly its wait behind
the others in flight (p99 about concurrency x service time), so it restates capacity; the
fixed-rate run is the latency a page sees. Reported per case and run: p50, p90 and p99 latency,
throughput, errors (non-2xx or exceptions), and against the floor of the same method and worker
count in the same rounds the throughput ratio and the p99 difference; for the capacity run, the
server's CPU per request (all its processes and threads, in the kernel's 10 ms ticks) and its
ratio to the floor's in the same rounds, which the load generator's share of the cores and the
host's drift move less than req/s; then, for every case run
with 1 and with 2 workers, the two throughputs side by side with the floor's (2 workers / 1
worker: what a second worker buys when client and server share the cores).
Client and server share the machine's cores (2 on the reference machine), so the client's own
CPU time is in every figure: absolute numbers are pessimistic; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import loadgen
from benchmarks.fixtures import large_shop_spec, retail_model, trained_shop, write_json
from benchmarks.loadgen import Case, get, load, paced, pooled, post_json
from benchmarks.servers import (
    HOST,
    cpu_seconds,
    engine_server,
    free_port,
    redis_server,
    stop_servers_on_sigterm,
    uvicorn_server,
)
from engine.model import load_model
from training.synthetic import generate_shop

SESSION_SIZES = (5, 20)
ROUNDS = 5  # turns the engine and its floor take per case (measure)


@dataclass(frozen=True)
class LoadSpec:
    """How hard and how long each case is loaded."""

    requests: int = 3000
    warmup: int = 200
    concurrency: int = 8
    max_seconds: float = 60.0
    # The fixed traffic of the open-loop latency run (the same for the floor and every case).
    rate: float = 400.0


QUICK = LoadSpec(requests=400, warmup=50, max_seconds=20.0)


@dataclass(frozen=True)
class Floor:
    """A floor server left running beside an engine server, loaded in turns with it."""

    port: int
    cases: dict[str, Case]  # by HTTP method
    pid: int


def measure(
    port: int, pid: int, cases: dict[str, Case], spec: LoadSpec, floor: Floor | None = None
) -> dict[str, dict[str, Any]]:
    """Per case: capacity (closed loop, ``concurrency`` in flight), then latency at
    ``spec.rate`` requests per second (open loop, :func:`benchmarks.loadgen.paced`). The
    capacity run also reports the server's CPU per request (``server_cpu_us``: the processes and
    threads of ``pid`` and its descendants over the run's parts; none without Linux's /proc).

    With a ``floor``, each of the two runs takes turns between the case and the floor's case of
    the same method, :data:`ROUNDS` parts each, and the case carries the floor's figures from
    those same rounds (``floor_same_rounds``): a host whose speed drifts while it runs (shared
    cloud cores do, by half within the hour) then slows both alike, and their ratio holds.
    """
    rounds = ROUNDS if floor is not None else 1
    per = max(spec.requests // rounds, 1)

    async def in_turns(
        targets: list[tuple[int, Case, int]], paced_run: bool, first: int
    ) -> list[dict[str, Any]]:
        parts: list[list[dict[str, Any]]] = [[] for _ in targets]
        latencies: list[list[float]] = [[] for _ in targets]
        spent = [0.0] * len(targets)  # each server's CPU seconds over the capacity run's parts
        deadline = time.monotonic() + spec.max_seconds * len(targets)
        for r in range(rounds):
            for t, ((target, case, server), done, times) in enumerate(
                zip(targets, parts, latencies, strict=True)
            ):
                start = first + r * per  # request numbers never repeat across runs and rounds
                if paced_run:
                    done.append(await paced(HOST, target, case, per, spec.rate, spec.concurrency,
                                            deadline, start, latencies=times))  # fmt: skip
                    continue
                before = cpu_seconds(server)
                done.append(await load(HOST, target, case, per, spec.concurrency, deadline,
                                       start, latencies=times))  # fmt: skip
                spent[t] += cpu_seconds(server) - before  # NaN without /proc
        results = [pooled(done, times) for done, times in zip(parts, latencies, strict=True)]
        for result, seconds in zip(results, spent, strict=True):
            if not paced_run and math.isfinite(seconds) and result["requests"]:
                result["server_cpu_us"] = seconds / result["requests"] * 1e6
        return results

    async def all_cases() -> dict[str, dict[str, Any]]:
        results = {}
        for name, case in cases.items():
            targets = [(port, case, pid)]
            if floor is not None:
                targets.append((floor.port, floor.cases[name.split()[0]], floor.pid))
            for target, target_case, _ in targets:
                deadline = time.monotonic() + spec.max_seconds
                await load(HOST, target, target_case, spec.warmup, spec.concurrency, deadline,
                           spec.requests)  # fmt: skip
            capacity = await in_turns(targets, paced_run=False, first=0)
            at_rate = await in_turns(targets, paced_run=True, first=spec.requests + spec.warmup)
            results[name] = {**capacity[0], "paced": at_rate[0]}
            if floor is not None:
                results[name]["floor_same_rounds"] = {**capacity[1], "paced": at_rate[1]}
        return results

    return dict(loadgen.run(all_cases()))


def floor_cases() -> dict[str, Case]:
    body = {"visitor_id": "v-bench", "item_id": "sku-bench", "type": "click"}
    return {
        "GET /ping": lambda i: get("/ping"),
        "POST /ping": lambda i: post_json("/ping", {**body, "event_id": uuid.uuid4().hex}),
    }


def engine_cases(port: int, customers: list[str], spec: LoadSpec) -> dict[str, Case]:
    """The engine's cases; first sends the click sessions the session cases read."""
    tag = uuid.uuid4().hex[:8]  # visitor ids never seen before, whatever the store holds
    with urllib.request.urlopen(f"http://{HOST}:{port}/v1/trending?k=50", timeout=10) as reply:
        items = [item["item_id"] for item in json.load(reply)["items"]]
    rng = np.random.default_rng(0)
    visitors = 2 * spec.requests + spec.warmup  # the capacity, warm-up and paced runs'
    sessions = {
        size: [list(rng.choice(items, size, replace=False)) for _ in range(visitors)]
        for size in SESSION_SIZES
    }

    def clicks(size: int) -> Case:
        return lambda i: post_json("/v1/events", [
            {"visitor_id": f"{tag}-s{size}-{i}", "item_id": item, "type": "click"}
            for item in sessions[size][i]])  # fmt: skip

    deadline = time.monotonic() + spec.max_seconds * len(SESSION_SIZES)
    for size in SESSION_SIZES:
        sent = loadgen.run(load(HOST, port, clicks(size), visitors, spec.concurrency, deadline))
        if sent["errors"] or sent["requests"] < visitors:
            raise RuntimeError(f"sending the {size}-click sessions failed or timed out: {sent}")

    def recs(params: Callable[[int], dict[str, str]]) -> Case:
        return lambda i: get("/v1/recommendations", params(i))

    def session(size: int) -> Case:
        return recs(lambda i: {"visitor_id": f"{tag}-s{size}-{i}"})

    return {
        "GET recs, anonymous, 0 clicks": recs(lambda i: {"visitor_id": f"{tag}-a{i}"}),
        **{f"GET recs, anonymous, {size} clicks": session(size) for size in SESSION_SIZES},
        "GET recs, known customer": recs(
            lambda i: {"visitor_id": f"{tag}-c{i}", "customer_id": customers[i % len(customers)]}
        ),
        "POST event, 1 click": lambda i: post_json("/v1/events", {
            "event_id": uuid.uuid4().hex, "visitor_id": f"{tag}-e{i % 500}",
            "item_id": items[i % len(items)], "type": "click"}),
    }  # fmt: skip


def compare(rows: list[dict[str, Any]]) -> None:
    """Add each engine row's throughput ratio and p99 difference against its floor (same method,
    same number of workers): the floor's run in the same rounds where there is one."""
    floors = {(row["method"], row["workers"]): row for row in rows if row["server"] == "floor"}
    for row in rows:
        floor = row.get("floor_same_rounds") or floors.get((row["method"], row["workers"]))
        if row["server"] != "floor" and floor is not None:
            row["throughput_vs_floor"] = row["throughput_rps"] / floor["throughput_rps"]
            if row.get("server_cpu_us") and floor.get("server_cpu_us"):  # 0: under a 10 ms tick
                row["server_cpu_vs_floor"] = row["server_cpu_us"] / floor["server_cpu_us"]
            row["p99_minus_floor_ms"] = row["p99_ms"] - floor["p99_ms"]
            if "paced" in row and "paced" in floor:
                paced, floor_paced = row["paced"], floor["paced"]
                paced["p99_minus_floor_ms"] = paced["p99_ms"] - floor_paced["p99_ms"]
                if "p99_ms_median_part" in paced and "p99_ms_median_part" in floor_paced:
                    paced["median_part_p99_minus_floor_ms"] = (
                        paced["p99_ms_median_part"] - floor_paced["p99_ms_median_part"]
                    )


def worker_scaling(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Throughput with 1 and with 2 workers for each case measured with both, beside the floor's
    for the same method (the floor shows what a second worker can buy on this machine)."""
    by_case = {(row["server"], row["case"], row["workers"]): row for row in rows}
    floors = {(row["method"], row["workers"]): row for row in rows if row["server"] == "floor"}
    out = []
    for (server, case, workers), one in by_case.items():
        two = by_case.get((server, case, 2))
        if workers != 1 or two is None:
            continue
        entry = {"server": server, "case": case,
                 "rps_1": one["throughput_rps"], "rps_2": two["throughput_rps"],
                 "ratio": two["throughput_rps"] / one["throughput_rps"]}  # fmt: skip
        floor_1, floor_2 = (floors.get((one["method"], n)) for n in (1, 2))
        if server != "floor" and floor_1 and floor_2:
            entry["floor_ratio"] = floor_2["throughput_rps"] / floor_1["throughput_rps"]
        out.append(entry)
    return out


# The engine servers of a full run, by the name ``--server`` selects them with.
SERVERS = ("memory", "redis", "redis-2w", "redis-100k")


def run(
    models: Path,
    work: Path,
    spec: LoadSpec = LoadSpec(),
    *,
    servers: frozenset[str] = frozenset(SERVERS),
    cases: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Every server and case above; ``models`` is a models directory (its ``current``). Only
    the engine ``servers`` named (:data:`SERVERS`) and, if ``cases`` is not empty, the cases
    whose names contain one of them are run: a missed target's case again, against its floor
    in the same rounds, in minutes rather than the whole run's quarter of an hour. ValueError
    if no case's name contains any of ``cases``."""
    model = load_model(models)
    rows: list[dict[str, Any]] = []

    def add(server: str, workers: int, items: int, results: dict[str, dict[str, Any]]) -> None:
        for name, stats in results.items():
            rows.append({"server": server, "workers": workers, "items": items, "case": name,
                         "method": name.split()[0], **stats})  # fmt: skip

    # The floors stay up, idle, to take turns with the engine servers.
    with contextlib.ExitStack() as running:
        floors: dict[int, Floor] = {}
        for workers in (1, 2):
            port = free_port()
            log = work / f"floor-{workers}.log"
            pid = running.enter_context(uvicorn_server(port, log, workers)).pid
            bare = floor_cases()
            add("floor", workers, 0, measure(port, pid, bare, spec))
            floors[workers] = Floor(port, {name.split()[0]: c for name, c in bare.items()}, pid)

        def engine(server: str, served: Path, redis_url: str | None, workers: int) -> None:
            port = free_port()
            log = work / f"{server}-{workers}.log"
            with engine_server(served, port, log, redis_url, workers) as process:
                served_model = load_model(served, verify=False)
                customers = np.random.default_rng(0).permutation(served_model.users.ids)
                chosen = {
                    name: case
                    for name, case in engine_cases(port, [str(c) for c in customers], spec).items()
                    if not cases or any(part in name for part in cases)
                }
                if not chosen:
                    raise ValueError(f"no case's name contains any of {list(cases)}")
                add(server, workers, len(served_model.items),
                    measure(port, process.pid, chosen, spec, floors[workers]))  # fmt: skip

        if "memory" in servers:
            engine("memory", models, None, 1)
        skipped = None
        binary = shutil.which("redis-server")
        if binary is None:
            skipped = "redis-server not found on PATH: the Redis cases are skipped"
            print(f"note: {skipped}", file=sys.stderr)
        elif servers - {"memory"}:
            redis_port = free_port()
            (work / "redis").mkdir()
            with redis_server(binary, redis_port, work / "redis"):
                url = f"redis://{HOST}:{redis_port}/0"
                if "redis" in servers:
                    engine("redis", models, url, 1)
                if "redis-2w" in servers:
                    engine("redis", models, url, 2)
                if "redis-100k" in servers:
                    shop = generate_shop(large_shop_spec())
                    engine("redis, 100k items", trained_shop(work / "large", shop), url, 1)
    compare(rows)
    return {
        "model": model.version,
        "items": len(model.items),
        "customers": len(model.users),
        "load": asdict(spec),
        "redis_skipped": skipped,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.machine(),
            "load_generator": "benchmarks.loadgen (asyncio streams, uvloop)",
        },
        "cases": rows,
        "worker_scaling": worker_scaling(rows),
    }


def print_table(result: dict[str, Any]) -> None:
    load_ = result["load"]
    print(f"{load_['requests']} requests per case after {load_['warmup']} warm-up, "
          f"{load_['concurrency']} in flight, {result['machine']['cpus']} cpus shared by client "
          "and server")  # fmt: skip
    print(f"{'server':<18} {'w':>1} {'case':<30} {'n':>5} {'p50 ms':>7} {'p90 ms':>7} "
          f"{'p99 ms':>7} {'req/s':>7} {'errors':>6} {'x floor':>7} {'p99 +ms':>7} "
          f"{'cpu us':>6} {'x':>5} "
          f"| at {load_['rate']:.0f}/s: {'p50 ms':>7} {'p99 ms':>7} {'p99 +ms':>7}")  # fmt: skip
    for row in result["cases"]:
        ratio = f"{row['throughput_vs_floor']:7.2f}" if "throughput_vs_floor" in row else " " * 7
        extra = f"{row['p99_minus_floor_ms']:+7.2f}" if "p99_minus_floor_ms" in row else " " * 7
        cpu = f"{row['server_cpu_us']:6.0f}" if "server_cpu_us" in row else " " * 6
        cpu += f" {row['server_cpu_vs_floor']:5.2f}" if "server_cpu_vs_floor" in row else " " * 6
        at = row.get("paced", {})
        at_extra = f"{at['p99_minus_floor_ms']:+7.2f}" if "p99_minus_floor_ms" in at else ""
        at_text = f"{at['p50_ms']:7.2f} {at['p99_ms']:7.2f} {at_extra}" if at else ""
        print(f"{row['server']:<18} {row['workers']:>1} {row['case']:<30} {row['requests']:>5} "
              f"{row['p50_ms']:7.2f} {row['p90_ms']:7.2f} {row['p99_ms']:7.2f} "
              f"{row['throughput_rps']:7.0f} {row['errors']:>6} {ratio} {extra} {cpu} "
              f"| {' ' * 12}{at_text}")  # fmt: skip
        if row["errors"]:
            print(f"        errors: {row['error_kinds']}")
    print(f"\n{'server':<18} {'case':<30} {'1 w req/s':>9} {'2 w req/s':>9} {'2w/1w':>6} "
          f"{'floor 2w/1w':>11}")  # fmt: skip
    for entry in result.get("worker_scaling", []):
        floor = f"{entry['floor_ratio']:11.2f}" if "floor_ratio" in entry else ""
        print(f"{entry['server']:<18} {entry['case']:<30} {entry['rps_1']:9.0f} "
              f"{entry['rps_2']:9.0f} {entry['ratio']:6.2f} {floor}")  # fmt: skip


def main() -> None:
    stop_servers_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"a short load: {QUICK}")
    parser.add_argument("--models", type=Path, help="a models directory (default: train one)")
    parser.add_argument("--requests", type=int, help="measured requests per case (3000)")
    parser.add_argument("--warmup", type=int, help="warm-up requests per case (200)")
    parser.add_argument("--concurrency", type=int, help="requests in flight (8)")
    parser.add_argument("--max-seconds", type=float, help="time limit per case (60)")
    parser.add_argument("--rate", type=float, help="req/s of the open-loop latency run (400)")
    parser.add_argument("--no-large", action="store_true", help="skip the 100k-item catalog")
    parser.add_argument(
        "--server",
        action="append",
        choices=SERVERS,
        help="run only this engine server (repeatable; default: every one)",
    )
    parser.add_argument(
        "--case",
        action="append",
        default=[],
        help="run only the cases whose names contain this, e.g. '20 clicks' (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    given = {name: getattr(args, name) for name in asdict(LoadSpec()) if getattr(args, name)}
    spec = LoadSpec(**{**asdict(QUICK if args.quick else LoadSpec()), **given})
    if min(spec.requests, spec.concurrency) < 1 or spec.warmup < 0:
        parser.error("--requests and --concurrency must be at least 1, --warmup at least 0")
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        work = Path(tmp)
        models = args.models or retail_model(work / "models")
        servers = frozenset(args.server or SERVERS) - ({"redis-100k"} if args.no_large else set())
        result = run(models.resolve(), work, spec, servers=servers, cases=tuple(args.case))
    print_table(result)
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
