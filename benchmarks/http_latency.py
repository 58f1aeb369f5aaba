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
no access log. An asyncio load generator (httpx.AsyncClient, HTTP/1.1 keep-alive, a pool of
``--concurrency`` connections) keeps ``--concurrency`` requests in flight and times each one with
``time.perf_counter``: ``--warmup`` requests first, then ``--requests`` measured ones (or fewer if
``--max-seconds`` runs out). Cases, per store:

* ``GET /v1/recommendations``: an anonymous visitor with no clicks (a new visitor each request);
  with 5 clicks (sent before as one batch of 5 click events per visitor on items of
  ``GET /v1/trending?k=50``, a different visitor each request); a known customer
  (``customer_id`` from the model's user vocabulary, no session);
* ``POST /v1/events``: one click event, a fresh event id each request.

Reported per case: p50, p90 and p99 latency, throughput, errors (non-2xx or exceptions) and,
for the engine, the throughput ratio and p99 difference against the floor of the same method.
Client and server share the machine's cores (2 here), so the client's own CPU time is in every
figure: absolute numbers are pessimistic; the ratios against the floor are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import numpy as np

from engine.model import load_model

REPO = Path(__file__).resolve().parents[1]
SHARED_RETAIL = REPO.parent / "shared/data/online-retail"
START_TIMEOUT_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 10.0
SESSION_CLICKS = 5

Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(command: list[str], log: Path, ready: Callable[[], bool]) -> Iterator[None]:
    """Run ``command`` until the block ends (SIGTERM, then SIGKILL); wait until ``ready()``."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{' '.join(command[:4])} did not start:\n{tail}")
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def redis_pongs(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    return check


def uvicorn_server(port: int, log: Path) -> contextlib.AbstractContextManager[None]:
    """The floor app with the settings ``personalize serve`` gives uvicorn."""
    command = [sys.executable, "-m", "uvicorn", "benchmarks.bare_app:app",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--no-access-log", "--timeout-keep-alive", "65", "--lifespan", "on"]  # fmt: skip
    return running(command, log, http_ok(f"http://127.0.0.1:{port}/ping"))


def engine_server(
    models: Path, port: int, log: Path, redis_url: str | None
) -> contextlib.AbstractContextManager[None]:
    command = [sys.executable, "-m", "personalize", "serve", "--models", str(models),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    if redis_url is not None:
        command += ["--redis-url", redis_url]
    return running(command, log, http_ok(f"http://127.0.0.1:{port}/readyz"))


def redis_server(
    binary: str, port: int, directory: Path
) -> contextlib.AbstractContextManager[None]:
    """A private, throwaway redis-server: loopback only, persists nothing."""
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(directory), "--daemonize", "no"]  # fmt: skip
    return running(command, directory / "redis.log", redis_pongs(port))


async def load(
    client: httpx.AsyncClient, send: Send, n: int, concurrency: int, deadline: float, first: int = 0
) -> dict[str, Any]:
    """Send requests ``first .. first + n - 1`` with ``concurrency`` in flight; time each."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    indices = iter(range(first, first + n))

    async def worker() -> None:
        for i in indices:  # shared: each index is taken by exactly one worker
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            try:
                response = await send(client, i)
                if not response.is_success:
                    errors[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    return {
        "requests": len(latencies),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "throughput_rps": len(latencies) / wall,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
    }


async def measure(
    base_url: str, cases: dict[str, Send], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    results = {}
    pool = args.concurrency
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS
    ) as client:
        for name, send in cases.items():
            deadline = time.monotonic() + args.max_seconds
            # Warm-up indices follow the measured ones, so neither reuses the other's visitors.
            await load(client, send, args.warmup, args.concurrency, deadline, args.requests)
            results[name] = await load(client, send, args.requests, args.concurrency, deadline)
    return results


def floor_cases() -> dict[str, Send]:
    body = {"visitor_id": "v-bench", "item_id": "sku-bench", "type": "click"}
    return {
        "GET /ping": lambda c, i: c.get("/ping"),
        "POST /ping": lambda c, i: c.post("/ping", json={**body, "event_id": uuid.uuid4().hex}),
    }


async def engine_cases(
    base_url: str, customers: list[str], args: argparse.Namespace
) -> dict[str, Send]:
    """The engine's cases; first sends the click sessions the 5-click case reads."""
    tag = uuid.uuid4().hex[:8]  # visitor ids never seen before, whatever the store holds
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        response = await client.get("/v1/trending", params={"k": 50})
        response.raise_for_status()
        items = [item["item_id"] for item in response.json()["items"]]
        rng = np.random.default_rng(0)
        sessions = [list(rng.choice(items, SESSION_CLICKS, replace=False))
                    for _ in range(args.requests + args.warmup)]  # fmt: skip

        async def clicks(c: httpx.AsyncClient, i: int) -> httpx.Response:
            batch = [{"visitor_id": f"{tag}-s{i}", "item_id": item, "type": "click"}
                     for item in sessions[i]]  # fmt: skip
            return await c.post("/v1/events", json=batch)

        deadline = time.monotonic() + args.max_seconds
        setup = await load(client, clicks, len(sessions), args.concurrency, deadline)
        if setup["errors"] or setup["requests"] < len(sessions):
            raise RuntimeError(f"sending the click sessions failed or timed out: {setup}")

    def recs(params: Callable[[int], dict[str, str]]) -> Send:
        return lambda c, i: c.get("/v1/recommendations", params=params(i))

    return {
        "GET recs, anonymous, 0 clicks": recs(lambda i: {"visitor_id": f"{tag}-a{i}"}),
        "GET recs, anonymous, 5 clicks": recs(lambda i: {"visitor_id": f"{tag}-s{i}"}),
        "GET recs, known customer": recs(
            lambda i: {"visitor_id": f"{tag}-c{i}", "customer_id": customers[i % len(customers)]}
        ),
        "POST event, 1 click": lambda c, i: c.post("/v1/events", json={
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
        add("floor", asyncio.run(measure(f"http://127.0.0.1:{port}", floor_cases(), args)))

    def engine(server: str, redis_url: str | None) -> None:
        port = free_port()
        with engine_server(models, port, work / f"{server}.log", redis_url):
            url = f"http://127.0.0.1:{port}"
            cases = asyncio.run(engine_cases(url, customers, args))
            add(server, asyncio.run(measure(url, cases, args)))

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
            "httpx": httpx.__version__,
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


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds, so every server started is stopped


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
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
            from training.logs import PRESETS, read_purchase_log
            from training.params import ModelParams
            from training.pipeline import train_model

            log = read_purchase_log(
                SHARED_RETAIL / "online_retail.csv.gz", PRESETS["online-retail"]
            )
            args.models = work / "models"
            train_model(log, ModelParams(), models_dir=args.models, run_evaluation=False)
        result = run(args.models.resolve(), work, args)
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
