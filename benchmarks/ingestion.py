"""Event ingestion: events per second, single and batched, against redis-benchmark in one run.

    python -m benchmarks.ingestion [--quick] [--models DIR] [--json OUT]

Trains the default model on the shared Online Retail log when ``--models`` is not given (its
item ids make the events realistic). Everything runs against one private redis-server on a free
127.0.0.1 port (never the machine's own Redis), flushed between the floor and each engine case:

* the floor: ``redis-benchmark`` (C client, ``--csv``) sending ``SET`` and ``EVALSHA`` of the
  engine's own two scripts (``record_global.lua``, ``record_visitor.lua``) with the same
  arguments a click carries, at the pipeline depth (``-P``) and connections (``-c``) of each
  engine case: ``-P 2 -c 32`` for single events (one click is one pipeline of two EVALSHAs, 32
  in flight), ``-P 200`` / ``-P 2000 -c 4`` for batches of 100 / 1000. A click costs one call
  of each script, so the floor in clicks/s is ``1 / (1/global + 1/visitor)``. Keys are drawn
  with ``-r 1000`` (``__rand_int__``, one draw per occurrence, so a call's three visitor keys
  belong to three visitors): the engine cases also spread over 1000 visitors;
* ``store``: ``RedisProfileStore.from_url(...).record`` from one asyncio process: single
  events with 32 calls in flight, batches of 100 and 1000 events per call with 4 in flight;
* ``http``: ``personalize serve --workers 1 --redis-url ...``, ``POST /v1/events`` with one
  event per request over 32 keep-alive connections, and batches of 100 / 1000 over 4
  (``benchmarks.loadgen``; request bytes built before the clock starts).

Reported per case: events/s, p50 and p99 per call (a call = one ``record`` or one request), the
ratio of events/s to the matching floor, and Redis's own counters over the case
(``INFO stats`` ``total_reads_processed``, ``INFO commandstats`` ``cmdstat_evalsha``): reads per
call near 1.0 for single events show one round trip per click, EVALSHAs per event show the two
script calls. Client, API and Redis share the machine's cores, so absolute figures are
pessimistic; the ratios against the floor are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import redis

from benchmarks import loadgen
from benchmarks.fixtures import retail_model, write_json
from benchmarks.servers import (
    HOST,
    engine_server,
    free_port,
    redis_server,
    stop_servers_on_sigterm,
)
from engine.model import load_model
from engine.profiles import Event, EventType, RedisProfileStore, StoreLimits
from engine.profiles.keys import Keys

VISITORS = 1000  # distinct visitors per case (and redis-benchmark's -r)
SINGLE_IN_FLIGHT = 32
BATCH_IN_FLIGHT = 4
BATCH_SIZES = (100, 1000)
# Event mix of a storefront: mostly views, some clicks, few carts and purchases.
TYPES: tuple[EventType, ...] = ("view", "click", "add_to_cart", "purchase")
TYPE_SHARES = (0.70, 0.20, 0.07, 0.03)
CASE_SECONDS = 30.0  # time limit of one case, warm-up included
BENCHMARK_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Sizes:
    """Calls per case: enough for a stable p99, small enough for a shared 2-core machine."""

    single_events: int
    batch_events: int
    floor_requests: int

    def calls(self, batch: int) -> int:
        return self.single_events if batch == 1 else max(self.batch_events // batch, 10)


QUICK = Sizes(single_events=3_000, batch_events=20_000, floor_requests=20_000)
FULL = Sizes(single_events=10_000, batch_events=40_000, floor_requests=50_000)


# --- the floor ------------------------------------------------------------------------------


def _script(name: str) -> str:
    return files("engine.profiles").joinpath("lua", name).read_text(encoding="utf-8")


def floor_commands(client: redis.Redis, limits: StoreLimits) -> dict[str, list[str]]:
    """The two scripts' EVALSHA as a click sends them, with redis-benchmark's random keys."""
    keys = Keys()
    rand = "__rand_int__"
    event_id = f"e{rand}{rand}{rand}"  # three draws: ids practically never repeat
    ts = repr(time.time())
    bucket = int(time.time() // limits.trending_bucket_seconds)
    global_sha = str(client.script_load(_script("record_global.lua")))
    visitor_sha = str(client.script_load(_script("record_visitor.lua")))
    window = int(time.time() // limits.idempotency_ttl_seconds)
    seen = [keys.seen(0, window - back) for back in range(3)]  # this window's, the two before
    global_keys = [*seen, keys.stream(0), keys.trending(0, bucket)]
    global_args = [str(2 * limits.idempotency_ttl_seconds), str(limits.stream_max_events),
                   str(limits.trending_buckets * limits.trending_bucket_seconds),
                   event_id, rand, "", rand, "view", ts]  # fmt: skip
    visitor_keys = keys.visitor_keys(rand)
    visitor_args = [str(limits.recent_events), str(limits.profile_ttl_seconds), "1",
                    rand, "view", ts, ""]  # fmt: skip
    return {
        "EVALSHA record_global": [
            "EVALSHA",
            global_sha,
            str(len(global_keys)),
            *global_keys,
            *global_args,
        ],
        "EVALSHA record_visitor": ["EVALSHA", visitor_sha, "3", *visitor_keys, *visitor_args],
    }


def redis_benchmark(
    binary: str, port: int, requests: int, clients: int, pipeline: int, command: list[str]
) -> dict[str, float]:
    """One redis-benchmark run of ``command`` (or ``-t set`` for ``["SET"]``), parsed from CSV."""
    args = [binary, "-h", HOST, "-p", str(port), "-n", str(requests), "-c", str(clients),
            "-P", str(pipeline), "-r", str(VISITORS), "--csv"]  # fmt: skip
    args += ["-t", "set"] if command == ["SET"] else command
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=BENCHMARK_TIMEOUT_SECONDS, check=True
    )
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    if len(rows) != 1 or "error" in done.stdout.lower():
        raise RuntimeError(f"unexpected redis-benchmark output:\n{done.stdout}{done.stderr}")
    row = rows[0]
    return {
        "requests": requests,
        "clients": clients,
        "pipeline": pipeline,
        "commands_per_s": float(row["rps"]),
        "p50_ms": float(row["p50_latency_ms"]),
        "p99_ms": float(row["p99_latency_ms"]),
    }


def measure_floor(
    binary: str, port: int, client: redis.Redis, sizes: Sizes, limits: StoreLimits
) -> dict[str, Any]:
    """Floors per engine case: SET and both scripts at the case's depth and connections."""
    commands = floor_commands(client, limits)
    settings = {1: (SINGLE_IN_FLIGHT, 2)} | {b: (BATCH_IN_FLIGHT, 2 * b) for b in BATCH_SIZES}
    floors: dict[str, Any] = {}
    for batch, (clients, depth) in settings.items():
        # At least a few pipelines per connection, or the run is all connection setup.
        n = max(sizes.floor_requests, 10 * clients * depth)
        runs = {"SET": redis_benchmark(binary, port, n, clients, depth, ["SET"])}
        for name, command in commands.items():
            runs[name] = redis_benchmark(binary, port, n, clients, depth, command)
            client.flushall()
        per_click = sum(1 / runs[name]["commands_per_s"] for name in commands)
        floors[str(batch)] = {"clicks_per_s": 1 / per_click, "runs": runs}
    return floors


# --- the engine -----------------------------------------------------------------------------


def make_events(n: int, items: Sequence[str], rng: np.random.Generator) -> list[Event]:
    """``n`` events over VISITORS visitors and the model's items, with fresh event ids."""
    tag = uuid.uuid4().hex[:8]
    visitors = rng.integers(0, VISITORS, n)
    chosen = rng.integers(0, len(items), n)
    kinds = rng.choice(len(TYPES), n, p=TYPE_SHARES)
    now = time.time()
    return [
        Event(event_id=f"{tag}-{i}", visitor_id=f"v-{v}", item_id=items[j],
              type=TYPES[k], timestamp=now)
        for i, (v, j, k) in enumerate(
            zip(visitors.tolist(), chosen.tolist(), kinds.tolist(), strict=True)
        )
    ]  # fmt: skip


def chunks(events: list[Event], size: int) -> list[list[Event]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


class Counters:
    """Redis's own counts over a case: reads processed (round trips) and EVALSHA calls."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._start = self._read()

    def _read(self) -> tuple[int, int]:
        stats = self._client.info("stats")
        evalsha = self._client.info("commandstats").get("cmdstat_evalsha", {"calls": 0})
        return int(stats["total_reads_processed"]), int(evalsha["calls"])

    def per(self, calls: int, events: int) -> dict[str, float]:
        reads, evalsha = (now - then for now, then in zip(self._read(), self._start, strict=True))
        return {"redis_reads_per_call": reads / calls, "evalsha_per_event": evalsha / events}


def _summary(latencies: list[float], events: int, wall: float) -> dict[str, Any]:
    ms = np.array(latencies or [np.nan]) * 1e3
    return {
        "calls": len(latencies),
        "events": events,
        "events_per_s": events / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


async def record_all(
    store: RedisProfileStore, batches: list[list[Event]], in_flight: int, deadline: float
) -> dict[str, Any]:
    """``store.record`` every batch with ``in_flight`` calls outstanding; time each call."""
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []
    recorded = 0

    async def one(batch: list[Event]) -> None:
        nonlocal recorded
        async with gate:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            stored = await store.record(batch)
            latencies.append(time.perf_counter() - start)
            if not all(stored):
                raise RuntimeError("a fresh event id was reported as a duplicate")
            recorded += len(batch)

    start = time.perf_counter()
    await asyncio.gather(*(one(batch) for batch in batches))
    return _summary(latencies, recorded, time.perf_counter() - start)


def store_cases(
    url: str, client: redis.Redis, items: Sequence[str], sizes: Sizes, rng: np.random.Generator
) -> dict[str, dict[str, Any]]:
    async def measure() -> dict[str, dict[str, Any]]:
        store = RedisProfileStore.from_url(url)
        results = {}
        try:
            for batch in (1, *BATCH_SIZES):
                calls = sizes.calls(batch)
                in_flight = SINGLE_IN_FLIGHT if batch == 1 else BATCH_IN_FLIGHT
                deadline = time.monotonic() + CASE_SECONDS
                warmup = chunks(make_events(batch * max(calls // 10, in_flight), items, rng), batch)
                await record_all(store, warmup, in_flight, deadline)
                measured = chunks(make_events(batch * calls, items, rng), batch)
                counters = Counters(client)
                stats = await record_all(store, measured, in_flight, deadline)
                results[str(batch)] = {**stats, "in_flight": in_flight,
                                       **counters.per(stats["calls"], stats["events"])}  # fmt: skip
                client.flushall()
        finally:
            await store.close()
        return results

    return dict(loadgen.run(measure()))


def http_requests(events: list[Event], batch: int) -> list[loadgen.Request]:
    """Request bytes as a storefront sends them (no timestamp: the API stamps arrival)."""
    bodies = [
        [{"event_id": e.event_id, "visitor_id": e.visitor_id, "item_id": e.item_id,
          "type": e.type} for e in part]
        for part in chunks(events, batch)
    ]  # fmt: skip
    return [loadgen.post_json("/v1/events", body[0] if batch == 1 else body) for body in bodies]


def http_cases(
    port: int, client: redis.Redis, items: Sequence[str], sizes: Sizes, rng: np.random.Generator
) -> dict[str, dict[str, Any]]:
    results = {}
    for batch in (1, *BATCH_SIZES):
        calls = sizes.calls(batch)
        in_flight = SINGLE_IN_FLIGHT if batch == 1 else BATCH_IN_FLIGHT
        warmup = http_requests(make_events(batch * max(calls // 10, in_flight), items, rng), batch)
        measured = http_requests(make_events(batch * calls, items, rng), batch)
        deadline = time.monotonic() + CASE_SECONDS
        loadgen.run(loadgen.load(HOST, port, warmup.__getitem__, len(warmup), in_flight, deadline))
        counters = Counters(client)
        stats = loadgen.run(
            loadgen.load(HOST, port, measured.__getitem__, len(measured), in_flight, deadline)
        )
        if stats["errors"]:
            raise RuntimeError(f"POST /v1/events failed for batches of {batch}: {stats}")
        results[str(batch)] = {
            "calls": stats["requests"],
            "events": stats["requests"] * batch,
            "events_per_s": stats["throughput_rps"] * batch,
            "p50_ms": stats["p50_ms"],
            "p99_ms": stats["p99_ms"],
            "in_flight": in_flight,
            **counters.per(stats["requests"], stats["requests"] * batch),
        }
        client.flushall()
    return results


# --- the run --------------------------------------------------------------------------------


def run(quick: bool, work: Path, models: Path | None = None) -> dict[str, Any]:
    """Floor, store-level and HTTP ingestion against one private redis-server."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server not found on PATH: install redis-server (Debian)")
    bench = shutil.which("redis-benchmark")
    if bench is None:
        print("note: redis-benchmark not found on PATH: the floor is skipped", file=sys.stderr)
    if models is None:
        models = retail_model(work / "models")
    items = [str(item) for item in load_model(models).items.ids]
    sizes = QUICK if quick else FULL
    rng = np.random.default_rng(0)
    port = free_port()
    url = f"redis://{HOST}:{port}/0"
    (work / "redis").mkdir()
    with redis_server(server, port, work / "redis"), redis.Redis(host=HOST, port=port) as client:
        floor = measure_floor(bench, port, client, sizes, StoreLimits()) if bench else None
        store = store_cases(url, client, items, sizes, rng)
        api_port = free_port()
        with engine_server(models, api_port, work / "engine.log", url, workers=1):
            http = http_cases(api_port, client, items, sizes, rng)
    cases = [{"level": level, "batch": int(batch), **stats}
             for level, results in (("store", store), ("http", http))
             for batch, stats in results.items()]  # fmt: skip
    if floor is not None:
        for case in cases:
            case["vs_floor"] = case["events_per_s"] / floor[str(case["batch"])]["clicks_per_s"]
    return {
        "quick": quick,
        "items": len(items),
        "visitors": VISITORS,
        "floor": floor,
        "floor_skipped": None if bench else "redis-benchmark not found on PATH",
        "cases": cases,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "redis_py": redis.__version__,
            "redis_server": subprocess.run(
                [server, "--version"], capture_output=True, text=True, check=False
            ).stdout.strip(),
        },
    }


def print_table(result: dict[str, Any]) -> None:
    floor = result["floor"]
    if floor is not None:
        print("floor (redis-benchmark): clicks/s = both scripts' EVALSHA; SET for reference")
        for batch, entry in floor.items():
            runs = "  ".join(
                f"{name} {r['commands_per_s']:.0f}/s" for name, r in entry["runs"].items()
            )
            print(f"  batch {batch:>4}: {entry['clicks_per_s']:9.0f} clicks/s   {runs}")
    print(f"{'level':<6} {'batch':>5} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'x floor':>7} {'reads/call':>10} {'evalsha/ev':>10}")  # fmt: skip
    for c in result["cases"]:
        ratio = f"{c['vs_floor']:7.2f}" if "vs_floor" in c else " " * 7
        print(f"{c['level']:<6} {c['batch']:>5} {c['events_per_s']:9.0f} {c['p50_ms']:7.2f} "
              f"{c['p99_ms']:7.2f} {ratio} {c['redis_reads_per_call']:10.2f} "
              f"{c['evalsha_per_event']:10.2f}")  # fmt: skip


def main() -> None:
    stop_servers_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls per case (smoke run)")
    parser.add_argument("--models", type=Path, help="a models directory (default: train one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        models = args.models.resolve() if args.models else None
        result = run(args.quick, Path(tmp), models)
    print_table(result)
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
