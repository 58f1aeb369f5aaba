"""Model reloads under load: what a published model costs the requests in flight.

    python -m benchmarks.reload [--quick] [--models DIR] [--json OUT]

A shop that retrains every hour publishes a model every hour, and every worker then loads it
while it serves (``personalize serve`` watches the ``current`` pointer; ``POST
/v1/admin/reload`` does the same at once). Serves the Online Retail model (trained here unless
``--models``) with one worker and the embedded store, and sends known customers' recommendation
requests at a fixed rate (open loop, :func:`benchmarks.loadgen.paced`: each request timed from
when it was due, so a stall is charged to every request it held up) in rounds that take turns:
``steady`` (no reload) and ``reloading`` (``POST /v1/admin/reload?force=true``, which loads and
verifies the model again and swaps it in, once every :data:`RELOAD_EVERY_SECONDS` while the load
runs). Reported per arm: requests, p50, p99, p99.9 and the maximum latency, errors, and for
``reloading`` the reloads done and how long each took to answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import loadgen
from benchmarks.fixtures import retail_model, write_json
from benchmarks.loadgen import get, paced, pooled
from benchmarks.servers import HOST, engine_server, free_port, stop_servers_on_sigterm
from engine.model import load_model

RATE = 400.0  # requests per second, as the HTTP benchmark's latency runs
CONNECTIONS = 8
RELOAD_EVERY_SECONDS = 1.0
ARMS = ("steady", "reloading")


def _reload(port: int) -> float:
    """Seconds until the server answered a forced reload (it answers once the swap is done)."""
    request = urllib.request.Request(
        f"http://{HOST}:{port}/v1/admin/reload?force=true", method="POST"
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as reply:
        outcome = json.load(reply)["outcome"]
    if outcome != "reloaded":
        raise RuntimeError(f"the reload was not done: {outcome}")
    return time.perf_counter() - start


async def _reloading(port: int, stop: asyncio.Event, took: list[float]) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), RELOAD_EVERY_SECONDS)
        except TimeoutError:
            took.append(await asyncio.to_thread(_reload, port))


def measure(port: int, customers: list[str], rounds: int, seconds: float) -> dict[str, Any]:
    """The two arms, taking turns for ``rounds`` rounds of ``seconds`` each (module doc)."""
    tag = uuid.uuid4().hex[:8]

    def case(i: int) -> bytes:
        customer = customers[i % len(customers)]
        return get("/v1/recommendations", {"visitor_id": f"{tag}-{i}", "customer_id": customer})

    per_round = int(RATE * seconds)

    async def all_rounds() -> dict[str, Any]:
        parts: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
        latencies: dict[str, list[float]] = {arm: [] for arm in ARMS}
        took: list[float] = []
        first = 0
        await paced(HOST, port, case, int(RATE), RATE, CONNECTIONS, time.monotonic() + 30)
        for _ in range(rounds):
            for arm in ARMS:
                first += per_round
                stop = asyncio.Event()
                reloads = None
                if arm == "reloading":
                    reloads = asyncio.create_task(_reloading(port, stop, took))
                deadline = time.monotonic() + 3 * seconds
                part = await paced(HOST, port, case, per_round, RATE, CONNECTIONS, deadline,
                                   first, latencies=latencies[arm])  # fmt: skip
                parts[arm].append(part)
                stop.set()
                if reloads is not None:
                    await reloads
        result: dict[str, Any] = {}
        for arm in ARMS:
            ms = np.array(latencies[arm]) * 1e3
            summary = pooled(parts[arm], latencies[arm])
            summary["p999_ms"] = float(np.percentile(ms, 99.9))
            summary["max_ms"] = float(ms.max())
            result[arm] = summary
        result["reloading"]["reload_seconds"] = took
        return result

    return dict(loadgen.run(all_rounds()))


def run(quick: bool, work: Path, models: Path | None = None) -> dict[str, Any]:
    """Serve ``models`` (default: Online Retail's, trained into ``work``) and measure both arms."""
    models = models or retail_model(work / "models")
    rounds, seconds = (2, 4.0) if quick else (3, 10.0)
    customers = [str(c) for c in np.random.default_rng(0).permutation(
        load_model(models, verify=False).users.ids)]  # fmt: skip
    port = free_port()
    with engine_server(models, port, work / "serve.log", None, 1):
        arms = measure(port, customers, rounds, seconds)
    return {"rate_rps": RATE, "rounds": rounds, "seconds_per_round": seconds,
            "reload_every_seconds": RELOAD_EVERY_SECONDS, "arms": arms}  # fmt: skip


def main() -> None:
    stop_servers_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 4 s (else 3 of 10 s)")
    parser.add_argument("--models", type=Path, help="a models directory (default: train one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.quick, Path(tmp), args.models)
    for arm, stats in result["arms"].items():
        reloads = f", {len(stats['reload_seconds'])} reloads" if "reload_seconds" in stats else ""
        print(f"{arm:>10}: {stats['requests']:,} requests, p50 {stats['p50_ms']:.2f} ms, "
              f"p99 {stats['p99_ms']:.2f}, p99.9 {stats['p999_ms']:.2f}, max "
              f"{stats['max_ms']:.1f}, errors {stats['errors']}{reloads}")  # fmt: skip
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
