"""``personalize serve --workers 2`` as deployed: every worker takes a new model, none takes a
broken one, and /metrics reports all of them whichever worker answers the scrape.

The workers share one listening socket, so which worker answers is the kernel's choice: the
tests open many fresh connections to reach both, and read each worker's model version from the
``pid`` label of ``personalize_model_info`` (api/metrics.py), checked against the server's own
child processes. Embedded store (each worker has its own; nothing here needs them to share).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families
from test_faults import AUTH, KEY, WATCH_SECONDS, damaged_copy, point_current, reloads, until

from api.cli import METRICS_DIR_VARIABLE, plan, run
from api.metrics import ApiMetrics
from benchmarks import loadgen
from benchmarks.servers import HOST, descendants, engine_server, free_port
from engine.artifacts import list_versions, publish

pytestmark = pytest.mark.faults

WORKERS = 2
READERS = 8  # connections in flight
REQUESTS_PER_CONNECTION = 10  # then a fresh connection, which may land on the other worker


@dataclass(frozen=True)
class Server:
    url: str
    port: int
    pid: int  # the uvicorn master

    def workers(self) -> set[int]:
        """The worker processes (multiprocessing's resource tracker is a child too)."""
        found = set()
        for pid in descendants(self.pid):
            with contextlib.suppress(OSError):  # gone since
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(pid)
        return found


@contextlib.contextmanager
def workers_server(models: Path, logs: Path) -> Iterator[Server]:
    port = free_port()
    options = ["--api-key", KEY, "--watch-seconds", str(WATCH_SECONDS), "--workers", str(WORKERS)]
    log = logs / f"api-{port}.log"
    with engine_server(models, port, log, None, options=options, entry="api.cli") as process:
        yield Server(f"http://{HOST}:{port}", port, process.pid)


def versions_by_worker(metrics_text: str) -> dict[int, str]:
    """pid -> the version that worker serves (its ``personalize_model_info`` series at 1)."""
    serving: dict[int, str] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "personalize_model_info" and sample.value == 1:
                serving[int(sample.labels["pid"])] = sample.labels["version"]
    return serving


async def scrape(url: str) -> str:
    """/metrics over a fresh connection (so consecutive scrapes reach different workers)."""
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        reply = await client.get("/metrics")
        assert reply.status_code == 200
        return reply.text


async def every_worker_serves(server: Server, version: str) -> bool:
    serving = versions_by_worker(await scrape(server.url))
    return len(serving) == WORKERS and set(serving.values()) == {version}


@dataclass
class Load:
    """Recommendation requests over many short-lived connections until stopped."""

    port: int
    statuses: Counter[str] = field(default_factory=Counter)
    versions: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, version)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        await asyncio.gather(*(self._reader(r) for r in range(READERS)))

    async def _reader(self, number: int) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                connection = await loadgen.Connection.open(HOST, self.port)
            except OSError as exc:
                self.statuses[type(exc).__name__] += 1
                continue
            try:
                for _ in range(REQUESTS_PER_CONNECTION):
                    request = loadgen.get(
                        "/v1/recommendations", {"visitor_id": f"w{number}-{n % 7}", "k": "5"}
                    )
                    n += 1
                    try:
                        reply = await connection.send(request)
                    except (OSError, asyncio.IncompleteReadError) as exc:
                        self.statuses[type(exc).__name__] += 1
                        break
                    self.statuses[str(reply.status)] += 1
                    if reply.status == 200:
                        self.versions.append((time.monotonic(), reply.json()["model_version"]))
            finally:
                await connection.close()

    def versions_after(self, moment: float) -> set[str]:
        return {version for at, version in self.versions if at > moment}


async def test_a_published_model_reaches_every_worker_under_load(
    models: Path, tmp_path: Path
) -> None:
    v1, v2 = list_versions(models)
    with workers_server(models, tmp_path) as server:
        await until(lambda: every_worker_serves(server, v1), "both workers to load v1")
        assert set(versions_by_worker(await scrape(server.url))) == server.workers()

        load = Load(server.port)
        running = asyncio.create_task(load.run())
        await asyncio.sleep(0.5)
        published = time.monotonic()
        await asyncio.to_thread(publish, models, v2)  # the atomic `current` flip
        await until(lambda: every_worker_serves(server, v2), "both workers to load v2")
        switched = time.monotonic()
        await asyncio.sleep(1.0)  # keep loading on the new model (fresh connections: both workers)
        load.stop.set()
        await running

        # The watcher polls every WATCH_SECONDS; loading the small model takes well under a
        # second even on a loaded machine.
        assert switched - published < 5.0
        assert sum(load.statuses.values()) >= 100
        assert set(load.statuses) == {"200"}, load.statuses  # not one failed request
        assert {v1, v2} <= {version for _, version in load.versions}
        assert load.versions_after(switched) == {v2}  # no worker answers with v1 any more
        metrics = await scrape(server.url)
        assert reloads(metrics, "reloaded") == 2 * WORKERS  # each worker: its start, then v2
        assert reloads(metrics, "failed") == 0


async def test_a_broken_version_is_refused_by_every_worker(models: Path, tmp_path: Path) -> None:
    v1, v2 = list_versions(models)
    with workers_server(models, tmp_path) as server:
        await until(lambda: every_worker_serves(server, v1), "both workers to load v1")

        load = Load(server.port)
        running = asyncio.create_task(load.run())
        point_current(models, damaged_copy(models, v2, "garbled"))

        async def refused_everywhere() -> bool:
            return reloads(await scrape(server.url), "failed") == WORKERS

        await until(refused_everywhere, "both workers to refuse the damaged version")
        await asyncio.sleep(1.0)  # more watcher ticks: the refusal is not retried, nor served
        load.stop.set()
        await running

        assert sum(load.statuses.values()) >= 100
        assert set(load.statuses) == {"200"}, load.statuses
        assert {version for _, version in load.versions} == {v1}
        metrics = await scrape(server.url)
        assert reloads(metrics, "failed") == WORKERS  # once per worker, not once per tick
        assert set(versions_by_worker(metrics).values()) == {v1}
        async with httpx.AsyncClient(base_url=server.url, timeout=5.0) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and "sha256 mismatch" in ready.json()["model_error"]
            # An admin reload reaches one worker only; the watcher is what reaches all.
            admin = await client.post("/v1/admin/reload", headers=AUTH)
            assert admin.json()["outcome"] == "failed" and admin.json()["version"] == v1


def request_count(metrics_text: str, route: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "personalize_http_request_duration_seconds_count"
        and sample.labels["route"] == route
    )


async def test_metrics_sum_every_worker_and_outlive_a_dead_one(
    models: Path, tmp_path: Path
) -> None:
    v1, _ = list_versions(models)
    route = "/v1/recommendations"
    with workers_server(models, tmp_path) as server:
        await until(lambda: every_worker_serves(server, v1), "both workers to load v1")
        sent = 0
        for number in range(40):  # a fresh connection each: both workers answer some
            async with httpx.AsyncClient(base_url=server.url, timeout=5.0) as client:
                for _ in range(5):
                    reply = await client.get(route, params={"visitor_id": f"m{number}"})
                    assert reply.status_code == 200
                    sent += 1
        # Whichever worker answers the scrape, it reports both workers' requests.
        assert {request_count(await scrape(server.url), route) for _ in range(10)} == {sent}

        victim = min(server.workers())
        os.kill(victim, signal.SIGKILL)  # uvicorn starts another worker in its place

        async def replaced() -> bool:
            # Reaped and replaced (uvicorn checks its workers every half second), and the
            # version series are those of the live workers exactly.
            workers = server.workers()
            serving = versions_by_worker(await scrape(server.url))
            return victim not in workers and len(workers) == WORKERS and set(serving) == workers

        await until(replaced, "uvicorn to replace the killed worker")
        metrics = await scrape(server.url)
        assert victim not in versions_by_worker(metrics)  # its version series is gone
        assert set(versions_by_worker(metrics).values()) == {v1}
        assert request_count(metrics, route) == sent  # its counts stay: counters never go down


def test_serve_makes_the_metrics_directory_for_several_workers_only(models: Path) -> None:
    seen: list[str | None] = []

    def runner(app: str, **options: object) -> None:
        folder = environ.get(METRICS_DIR_VARIABLE)
        seen.append(folder)
        assert folder is None or Path(folder).is_dir()

    environ: dict[str, str] = {}
    run(plan(models_dir=models, workers=1, environ=environ), environ=environ, runner=runner)
    run(plan(models_dir=models, workers=2, environ=environ), environ=environ, runner=runner)
    assert seen[0] is None  # one worker runs in the serve process: plain in-memory metrics
    assert seen[1] is not None and not Path(seen[1]).exists()  # made for the run, then removed
    assert METRICS_DIR_VARIABLE not in environ


def test_serve_empties_a_given_metrics_directory_of_an_earlier_run(
    models: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"\0" * 64)  # a worker of the previous run
    (folder / "README").write_text("not ours")
    environ = {METRICS_DIR_VARIABLE: str(folder)}
    run(
        plan(models_dir=models, workers=2, environ=environ),
        environ=environ,
        runner=lambda *a, **k: None,
    )
    assert sorted(p.name for p in folder.iterdir()) == ["README"]

    environ[METRICS_DIR_VARIABLE] = str(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"PROMETHEUS_MULTIPROC_DIR=.* is not a directory"):
        plan(models_dir=models, workers=2, environ=environ)


def test_a_scrape_skips_a_worker_file_caught_before_it_is_sized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    written = MmapedDict(str(folder / "counter_101.db"))
    key = mmap_key(
        "personalize_events",
        "personalize_events_total",
        ["type", "result"],
        ["view", "new"],
        "Events received.",
    )
    written.write_value(key, 3.0, 0.0)
    written.close()
    # Another worker's first histogram value, its file created but not sized yet (or a worker
    # killed at that moment): it holds nothing, and must not fail the scrape.
    (folder / "histogram_102.db").touch()
    monkeypatch.setenv(METRICS_DIR_VARIABLE, str(folder))

    families = {f.name: f for f in text_string_to_metric_families(ApiMetrics().render().decode())}

    [sample] = families["personalize_events"].samples
    assert sample.labels == {"type": "view", "result": "new"} and sample.value == 3.0
