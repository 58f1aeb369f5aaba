"""A lean HTTP/1.1 load generator: keep-alive connections on raw asyncio streams.

A general-purpose client (httpx, aiohttp) spends more CPU per request than a small FastAPI
handler does, and on a 2-core machine the client shares the cores with the server: with httpx
the bare-FastAPI floor measured ~800 req/s, a tenth of what the server can do. This client
writes pre-built request bytes and parses only the status line and Content-Length, so the
figures are the server's. Loopback only: the benchmarks point it at servers they started.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import numpy as np

Request = bytes
Case = Callable[[int], Request]  # request number -> the request to send


def get(path: str, params: dict[str, str] | None = None) -> Request:
    query = f"?{urlencode(params)}" if params else ""
    return f"GET {path}{query} HTTP/1.1\r\nhost: bench\r\n\r\n".encode()


def post_json(path: str, body: Any) -> Request:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, request: Request) -> Response:
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise RuntimeError("chunked responses are not supported by this load generator")
        body = await self._reader.readexactly(length) if length else b""
        return Response(status, body)

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def load(
    host: str,
    port: int,
    case: Case,
    n: int,
    concurrency: int,
    deadline: float,
    first: int = 0,
    *,
    latencies: list[float] | None = None,
) -> dict[str, Any]:
    """Send requests ``first .. first + n - 1`` over ``concurrency`` connections; time each.

    ``latencies`` collects every request's seconds across calls (percentiles of a long run
    paced by many short calls); by default each call keeps its own.
    """
    latencies = [] if latencies is None else latencies
    recorded = len(latencies)
    errors: Counter[str] = Counter()
    numbers = iter(range(first, first + n))

    async def worker() -> None:
        connection = await Connection.open(host, port)
        try:
            for i in numbers:  # shared: each number is taken by exactly one worker
                if time.monotonic() > deadline:
                    return
                request = case(i)
                start = time.perf_counter()
                try:
                    response = await connection.send(request)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    errors[type(exc).__name__] += 1
                    await connection.close()
                    connection = await Connection.open(host, port)
                    continue
                latencies.append(time.perf_counter() - start)
                if not 200 <= response.status < 300:
                    errors[str(response.status)] += 1
        finally:
            await connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return _summary(latencies[recorded:], time.perf_counter() - start, errors)


async def paced(
    host: str,
    port: int,
    case: Case,
    n: int,
    rate: float,
    connections: int,
    deadline: float,
    first: int = 0,
    *,
    latencies: list[float] | None = None,
) -> dict[str, Any]:
    """Open loop: request ``first + j`` is due at ``start + j / rate`` whatever the earlier
    answers did, and its latency counts from when it was due, so a stalled server is charged for
    the requests it kept waiting (no coordinated omission). A due request waits for a free one of
    ``connections`` keep-alive connections. ``latencies`` as for :func:`load`.

    A closed loop at saturation (:func:`load`) measures capacity; its latency is mostly the
    queue of the requests in flight (p99 about concurrency x service time). This measures the
    latency a page sees at a given traffic.
    """
    latencies = [] if latencies is None else latencies
    recorded = len(latencies)
    errors: Counter[str] = Counter()
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(host, port))

    async def one(i: int, due: float) -> None:
        connection = await pool.get()
        try:
            response = await connection.send(case(i))
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors[type(exc).__name__] += 1
            await connection.close()
            connection = await Connection.open(host, port)
        else:
            latencies.append(time.perf_counter() - due)
            if not 200 <= response.status < 300:
                errors[str(response.status)] += 1
        finally:
            pool.put_nowait(connection)

    tasks = []
    start = time.perf_counter()
    for j in range(n):
        due = start + j / rate
        if due > time.perf_counter():
            await asyncio.sleep(due - time.perf_counter())
        if time.monotonic() > deadline:
            break
        tasks.append(asyncio.create_task(one(first + j, due)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    while not pool.empty():
        await pool.get_nowait().close()
    return {**_summary(latencies[recorded:], wall, errors), "rate_rps": rate}


def pooled(parts: list[dict[str, Any]], latencies: list[float]) -> dict[str, Any]:
    """One summary of a case run in several parts (``latencies`` collected across them): the
    percentiles of all its requests, its throughput over the parts' walls added, and the median
    over the parts of each part's p99."""
    wall = sum(part["requests"] / part["throughput_rps"] for part in parts if part["requests"])
    errors: Counter[str] = Counter()
    for part in parts:
        errors.update(part["error_kinds"])
    summary = _summary(latencies, wall or math.inf, errors)
    if "rate_rps" in parts[0]:
        summary["rate_rps"] = parts[0]["rate_rps"]
    if len(parts) > 1:
        # One stall of a shared host (10-20 ms, seen in the floor's runs as often as in the
        # engine's) moves a run's p99 by itself; the median part's p99 does not follow one.
        summary["p99_ms_median_part"] = float(np.median([part["p99_ms"] for part in parts]))
    return summary


def _summary(latencies: list[float], wall: float, errors: Counter[str]) -> dict[str, Any]:
    ms = np.array(latencies or [np.nan]) * 1e3
    return {
        "requests": len(latencies),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "throughput_rps": len(latencies) / wall,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
    }


def run(coroutine: Any) -> Any:
    """Run on uvloop when installed (as the servers do), else on the default loop, with the
    process's heap so far frozen out of the garbage collector.

    A full collection of a benchmark process that has loaded a model took 24-54 ms (measured
    during a run): every request due meanwhile waited, and an open-loop run charges that wait
    to the server. Frozen, a collection walks only what the load itself allocates.
    """
    runner: Callable[[Any], Any]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    gc.collect()
    gc.freeze()
    try:
        return runner(coroutine)
    finally:
        gc.unfreeze()
