"""Prometheus metrics of one app, in a registry of its own, or summed over every worker.

A per-app :class:`~prometheus_client.CollectorRegistry` (not the global one) lets tests and
benchmarks build many apps in one process without "duplicated timeseries" errors.

Under ``personalize serve`` the workers share one port, so a scrape reaches whichever worker
accepts it: each worker's own counters would make every scrape tell a different story. There
``PROMETHEUS_MULTIPROC_DIR`` is set (``serve`` makes the directory) and prometheus_client's
multiprocess mode applies: every worker writes its values to memory-mapped files in that
directory, and ``/metrics`` in any worker reads them all. Counters and histograms are summed
over workers, dead ones included (a restarted worker must not make a counter go down); the
model version is reported per live worker (a ``pid`` label), so a rollout shows which workers
serve which version.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")
# A worker's values file starts with its used size (4 bytes) and padding (4 bytes).
_VALUES_HEADER_BYTES = 8

# Recommendations take well under a millisecond to score; the tail is set by the store round trip.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5
)  # fmt: skip

UNMATCHED_ROUTE = "<unmatched>"


class ApiMetrics:
    """Every metric the API exports."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_seconds = Histogram(
            "personalize_http_request_duration_seconds",
            "Request latency by route template, method and status code.",
            ("route", "method", "status"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.events = Counter(
            "personalize_events",
            "Events received, by type and whether they were new or already seen (duplicate).",
            ("type", "result"),
            registry=r,
        )
        self.recommendations = Counter(
            "personalize_recommendations",
            "Recommendation lists served, by strategy and the customer's value segment ('' when "
            "the visitor is not a known customer).",
            ("strategy", "segment"),
            registry=r,
        )
        self.unknown_item_events = Counter(
            "personalize_unknown_item_events",
            "Events stored for items the serving model does not know (newer than the model).",
            registry=r,
        )
        self.store_errors = Counter(
            "personalize_store_errors",
            "Calls to the profile store (Redis) that failed, by operation.",
            ("operation",),
            registry=r,
        )
        self.degraded_responses = Counter(
            "personalize_degraded_responses",
            "Responses answered without the profile store (model and popularity only), by route.",
            ("route",),
            registry=r,
        )
        self.model = Gauge(
            "personalize_model_info",
            "1 for the model version being served, 0 for versions served before (one series "
            "per live worker under `personalize serve`: the pid label).",
            ("version",),
            registry=r,
            multiprocess_mode="liveall",
        )
        self._version: str | None = None
        self.model_reloads = Counter(
            "personalize_model_reloads",
            "Model reload attempts by outcome (reloaded, unchanged, failed).",
            ("outcome",),
            registry=r,
        )

    def set_model_version(self, version: str | None) -> None:
        # Set to 0, not removed: prometheus_client cannot remove a series in multiprocess mode.
        label = version or ""  # "": no model loaded yet
        if self._version not in (None, label):
            self.model.labels(self._version).set(0)
        self.model.labels(label).set(1)
        self._version = label

    def render(self) -> bytes:
        folder = os.environ.get(MULTIPROCESS_ENV)
        if not folder:
            return generate_latest(self.registry)
        forget_dead_workers(Path(folder))
        merged = CollectorRegistry()
        merged.register(WorkerFilesCollector(Path(folder)))
        return generate_latest(merged)


class WorkerFilesCollector:
    """Every worker's values, as prometheus_client's ``MultiProcessCollector`` sums them,
    except for files too short to hold a header.

    A worker creates its file for a metric type empty and sizes it a moment later (the first
    request a worker serves creates its histogram file, under load); a worker killed in that
    moment leaves it empty for good. prometheus_client's collector fails the whole scrape on such
    a file; an empty file holds no values, so skipping it loses nothing.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in self.folder.glob("*.db"):
            # Only a dead worker's live-gauge files are ever removed; the merge allows for that.
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size >= _VALUES_HEADER_BYTES:
                    files.append(str(path))
        return multiprocess.MultiProcessCollector.merge(files, accumulate=True)


def forget_dead_workers(folder: Path) -> None:
    """Drop the per-worker series (the model version) of workers that are gone.

    uvicorn restarts a worker that dies but tells nobody, so the scrape does the bookkeeping
    gunicorn's ``child_exit`` hook would: a worker's live-gauge file goes once its pid does.
    """
    for path in folder.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match and not _alive(int(match.group(1))):
            # Another worker's scrape may be removing the same files.
            with contextlib.suppress(FileNotFoundError):
                multiprocess.mark_process_dead(int(match.group(1)), str(folder))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
