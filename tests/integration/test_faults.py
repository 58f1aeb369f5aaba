"""Faults survived, nothing lost: real processes broken for real, under load.

Each test runs the API as it is deployed (``serve``: uvicorn running ``api.main:app_factory``)
as a subprocess on a free loopback port and, where it needs Redis, a private redis-server with
the append-only file. Then it breaks something: SIGKILL to Redis in the middle of a load,
damaged model versions behind the ``current`` pointer (at start, at an admin reload, picked up
by the watcher), model swaps under load. The load is an httpx loop of a few seconds; every wait
is bounded. Select these tests with ``-m faults``; they run in the default run too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisServer

from benchmarks.servers import HOST, engine_server, free_port
from engine.artifacts import FORMAT_VERSION, MANIFEST, current_version, list_versions, publish
from engine.profiles.keys import Keys

pytestmark = pytest.mark.faults

KEY = "fault-test-key"
AUTH = {"X-API-Key": KEY}
WATCH_SECONDS = 0.1
WAIT_SECONDS = 10.0  # the longest any condition may take to become true


# --- processes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Api:
    """A running API process: its base URL and its log (stdout and stderr)."""

    url: str
    log: Path

    def logged(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def api_process(
    models: Path, logs: Path, redis_url: str | None = None, *, ready_path: str = "/readyz"
) -> Iterator[Api]:
    """``serve`` with a write key and a fast model watcher, stopped when the block ends."""
    port = free_port()
    log = logs / f"api-{port}.log"
    options = ["--api-key", KEY, "--watch-seconds", str(WATCH_SECONDS)]
    with engine_server(
        models, port, log, redis_url, options=options, ready_path=ready_path, entry="api.cli"
    ):
        yield Api(f"http://{HOST}:{port}", log)


async def until(condition: Callable[[], object], what: str) -> None:
    """Wait (bounded) until ``condition()`` (or the coroutine it returns) is true; fail naming
    ``what`` otherwise."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        met = condition()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def serving_version(client: httpx.AsyncClient) -> str | None:
    version: str | None = (await client.get("/healthz")).json()["model_version"]
    return version


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


def reloads(metrics_text: str, outcome: str) -> float:
    """``personalize_model_reloads_total{outcome=...}`` from a /metrics page."""
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if (
                sample.name == "personalize_model_reloads_total"
                and sample.labels.get("outcome") == outcome
            ):
                return float(sample.value)
    return 0.0


# --- Redis killed under load ---------------------------------------------------------------------


@dataclass
class Sent:
    """One request of the load and what came back."""

    sent: float  # monotonic time the request left
    done: float  # and its answer arrived
    status: int
    degraded: bool = False  # recommendations: answered without the store
    event: dict[str, str] | None = None  # events: what was sent
    accepted: int = 0
    retry_after: str | None = None


@dataclass
class MixedLoad:
    """Clients that each send an event, then ask for recommendations, until stopped."""

    client: httpx.AsyncClient
    events: list[Sent] = field(default_factory=list)
    pages: list[Sent] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, clients: int) -> None:
        await asyncio.gather(*(self._client(c) for c in range(clients)))

    async def _client(self, number: int) -> None:
        n = 0
        while not self.stop.is_set():
            visitor = f"v{number}-{n % 7}"
            body = {"event_id": uuid.uuid4().hex, "visitor_id": visitor, "item_id": f"sku{n % 150}",
                    "type": "click"}  # fmt: skip
            start = time.monotonic()
            reply = await self.client.post("/v1/events", json=body, headers=AUTH)
            accepted = reply.json().get("accepted", 0) if reply.status_code == 202 else 0
            self.events.append(
                Sent(start, time.monotonic(), reply.status_code, event=body, accepted=accepted,
                     retry_after=reply.headers.get("Retry-After"))
            )  # fmt: skip
            start = time.monotonic()
            reply = await self.client.get("/v1/recommendations", params={"visitor_id": visitor})
            degraded = reply.status_code == 200 and bool(reply.json()["degraded"])
            self.pages.append(Sent(start, time.monotonic(), reply.status_code, degraded=degraded))
            n += 1

    def acked(self, after: float = 0.0, before: float = float("inf")) -> set[str]:
        """Ids of events answered 202 as new, sent in ``[after, before)``."""
        return {
            e.event["event_id"]
            for e in self.events
            if e.event and e.status == 202 and e.accepted == 1 and after <= e.sent < before
        }


def stream_event_ids(url: str) -> list[str]:
    """Every event id in the Redis event stream, in stream order."""
    with redis.Redis.from_url(url, decode_responses=True) as client:
        (stream,) = Keys().streams  # one shard on a single server
        return [fields["event_id"] for _id, fields in client.xrange(stream)]


async def test_redis_killed_and_restarted_under_load_loses_no_acknowledged_event(
    models: Path, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis", appendfsync="always")
    server.start()
    try:
        with api_process(models, tmp_path, server.url) as api:
            async with httpx.AsyncClient(base_url=api.url, timeout=5.0) as client:
                load = MixedLoad(client)
                running = asyncio.create_task(load.run(clients=4))
                await until(lambda: len(load.acked()) >= 30, "events acknowledged before the kill")

                server.kill()  # a crash: no shutdown, no final fsync or snapshot
                killed = time.monotonic()
                await until(
                    lambda: (
                        sum(e.sent > killed and e.status == 503 for e in load.events) >= 10
                        and sum(p.sent > killed and p.degraded for p in load.pages) >= 10
                    ),
                    "refused events and degraded pages while Redis is down",
                )

                server.start()  # same port and directory: replays its append-only file
                restarted = time.monotonic()
                await until(
                    lambda: len(load.acked(after=restarted)) >= 30,
                    "events acknowledged again after the restart (the store reconnects)",
                )
                load.stop.set()
                await running
                # What was refused is resent as the client is told to: same ids, one batch.
                refused = [e.event for e in load.events if e.status == 503]
                resent = await client.post("/v1/events", json=refused, headers=AUTH)
                ready = await client.get("/readyz")

        assert ready.status_code == 200 and ready.json()["store"] == "ok"
        assert "appendonly no" not in api.logged()  # persisted: no warning at start
        # Recommendations never failed: degraded (model only) while Redis was down.
        assert {p.status for p in load.pages} == {200}
        assert not any(p.degraded for p in load.pages if p.done < killed)
        assert all(p.degraded for p in load.pages if p.sent > killed and p.done < restarted)
        assert not any(p.degraded for p in load.pages if p.sent > restarted + 1.0)
        # Events were acknowledged or refused with Retry-After, never anything else ...
        assert {e.status for e in load.events} <= {202, 503}
        assert all(e.retry_after == "1" for e in load.events if e.status == 503)
        # ... and none sent and answered between the kill and the restart was acknowledged.
        assert not any(
            e.status == 202 for e in load.events if e.sent > killed and e.done < restarted
        )
        # Every acknowledged event is in the stream after the crash, exactly once.
        stored = stream_event_ids(server.url)
        assert len(stored) == len(set(stored))
        assert load.acked() - set(stored) == set()
        # A refused event, resent, is stored once: as new, or as a duplicate when the refused
        # attempt had in fact run before its reply was lost.
        assert resent.status_code == 202, resent.text
        assert resent.json()["accepted"] + resent.json()["duplicates"] == len(refused)
        assert {e["event_id"] for e in refused} - set(stored) == set()
        assert len(load.acked(before=killed)) >= 30  # these survived the SIGKILL
    finally:
        server.stop()


# --- damaged model versions ----------------------------------------------------------------------


def _rewrite_manifest(version_dir: Path, **fields: object) -> None:
    path = version_dir / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(fields)
    path.write_text(json.dumps(manifest))


def _truncate(version_dir: Path) -> None:
    factors = version_dir / "item_factors.npy"
    factors.write_bytes(factors.read_bytes()[: factors.stat().st_size // 2])


def _garble(version_dir: Path) -> None:
    factors = version_dir / "item_factors.npy"
    data = bytearray(factors.read_bytes())
    data[-64:] = bytes(b ^ 0x5A for b in data[-64:])  # the floats; header and size intact
    factors.write_bytes(bytes(data))


# Each way a version can be bad, and what the refusal must say.
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (_truncate, "truncated or damaged"),
    "garbled": (_garble, "sha256 mismatch"),
    "no-manifest": (lambda v: (v / MANIFEST).unlink(), "missing (not a model version"),
    "missing-file": (lambda v: (v / "user_factors.npy").unlink(), "missing (listed in"),
    "format": (lambda v: _rewrite_manifest(v, format_version=FORMAT_VERSION + 1),
               "incompatible artifact format"),
    "wrong-type": (lambda v: _rewrite_manifest(v, as_of=None), "inconsistent model"),
}  # fmt: skip


def damaged_copy(models: Path, source: str, kind: str) -> str:
    """A copy of version ``source`` damaged in one way, under a version name of its own."""
    name = f"{source}-{kind}"
    shutil.copytree(models / source, models / name)
    _rewrite_manifest(models / name, version=name)  # the name must match, or that is the error
    DAMAGE[kind][0](models / name)
    return name


def point_current(models: Path, version: str) -> None:
    """Flip ``current`` by hand (``publish`` would refuse a damaged version)."""
    link = models / "current.tmp"
    os.symlink(version, link)
    os.replace(link, models / "current")


@pytest.mark.parametrize("kind", ["truncated", "no-manifest", "format"])
async def test_a_bad_version_is_refused_at_start(models: Path, tmp_path: Path, kind: str) -> None:
    v1, v2 = list_versions(models)
    point_current(models, damaged_copy(models, v2, kind))
    reason = DAMAGE[kind][1]
    with api_process(models, tmp_path, ready_path="/healthz") as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=5.0) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["model_version"] is None
            assert reason in ready.json()["model_error"]
            page = await client.get("/v1/recommendations", params={"visitor_id": "v1"})
            assert page.status_code == 503  # nothing to serve yet, and it says so
            assert reloads((await client.get("/metrics")).text, "failed") == 1
            assert reason in api.logged()

            point_current(models, v1)  # the watcher picks up a good version
            await until(
                lambda: _is(serving_version(client), v1), "the watcher to load the good version"
            )
            page = await client.get("/v1/recommendations", params={"visitor_id": "v1"})
            assert page.status_code == 200 and page.json()["model_version"] == v1


async def test_bad_versions_are_refused_at_reload_while_the_old_model_serves(
    models: Path, tmp_path: Path
) -> None:
    v1, v2 = list_versions(models)
    with api_process(models, tmp_path) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=5.0) as client:

            async def failed_reloads() -> float:
                return reloads((await client.get("/metrics")).text, "failed")

            for n, kind in enumerate(DAMAGE):
                reason = DAMAGE[kind][1]
                point_current(models, damaged_copy(models, v2, kind))
                await until(
                    lambda n=n: _is(failed_reloads(), 2 * n + 1), f"the watcher to refuse {kind}"
                )

                admin = (await client.post("/v1/admin/reload", headers=AUTH)).json()
                assert admin["outcome"] == "failed" and admin["version"] == v1, kind
                assert reason in admin["error"], kind
                assert await failed_reloads() == 2 * n + 2

                page = await client.get("/v1/recommendations", params={"visitor_id": "v1"})
                assert page.status_code == 200 and page.json()["model_version"] == v1, kind
                ready = await client.get("/readyz")
                assert ready.status_code == 200 and reason in ready.json()["model_error"], kind
                assert reason in api.logged(), kind

            publish(models, v2)  # a good version after all the refusals: the watcher takes it
            await until(lambda: _is(serving_version(client), v2), "the watcher to load v2")
            page = await client.get("/v1/recommendations", params={"visitor_id": "v1"})
            assert page.json()["model_version"] == v2


async def test_model_reloads_under_load_fail_no_request(models: Path, tmp_path: Path) -> None:
    v1, v2 = list_versions(models)
    with api_process(models, tmp_path) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=5.0) as client:
            statuses: list[int] = []
            served: set[str] = set()
            stop = asyncio.Event()

            async def reader(number: int) -> None:
                n = 0
                while not stop.is_set():
                    params = {"visitor_id": f"r{number}-{n % 5}", "k": "10"}
                    if n % 2:
                        params["customer_id"] = "c103"  # the repeat-aware path too
                    reply = await client.get("/v1/recommendations", params=params)
                    statuses.append(reply.status_code)
                    if reply.status_code == 200:
                        served.add(reply.json()["model_version"])
                    n += 1

            readers = asyncio.gather(*(reader(r) for r in range(4)))
            # Swap back and forth: by the watcher (publish) and by admin reloads (forced).
            for target in (v2, v1, v2, v1):
                await asyncio.to_thread(publish, models, target)
                assert current_version(models) == target
                forced = await client.post("/v1/admin/reload?force=true", headers=AUTH)
                assert forced.json()["outcome"] == "reloaded", forced.text
                await asyncio.sleep(0.3)
            stop.set()
            await readers
            metrics = (await client.get("/metrics")).text

    assert served == {v1, v2}
    assert len(statuses) >= 100 and set(statuses) == {200}  # not one failed request
    assert reloads(metrics, "reloaded") >= 5  # the start, four forced reloads (and the watcher)
    assert reloads(metrics, "failed") == 0
