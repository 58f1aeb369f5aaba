"""The serving model and its hot reload.

Requests read :attr:`ModelHolder.current` once and keep that :class:`Recommender` for the whole
request; a reload builds the new one off the event loop and then swaps the reference in one
assignment. So a reload never drops or mixes up an in-flight request, and a version that fails
validation is never swapped in: the old model keeps serving and the error is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.artifacts import ArtifactError, current_version
from engine.candidates import PROBE_SHARE
from engine.model import load_model
from engine.recommender import Recommender

log = logging.getLogger(__name__)

ReloadOutcome = Literal["reloaded", "unchanged", "failed"]


@dataclass(frozen=True)
class ReloadResult:
    outcome: ReloadOutcome
    version: str | None  # the version serving after the attempt
    previous_version: str | None
    error: str | None = None


def _build(models_dir: Path, candidates: bool, probe_share: float) -> Recommender:
    """Load, verify (checksums) and wrap a model: disk- and CPU-bound, so run in a thread."""
    model = load_model(models_dir, verify=True)
    return Recommender(model, candidates=candidates, probe_share=probe_share)


def _freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's reach, so that a full
    collection does not walk them mid-request: the app's and the libraries' own (building the
    first model adds 49k, most of them numba's typing machinery); a full collection with a
    100k-item catalog once took 75 ms (measured on the benchmark machine), a p99 spike.

    Done once, when the first model is served (the server's start). Not at later reloads: a
    freeze then would also take whatever the requests in flight hold (connections, tasks), and
    what of it later became cyclic garbage would never be collected; and unfreezing to collect
    the whole heap first held every request in flight for 83-142 ms at each reload of a
    3.7k-item model. A later model adds a few hundred objects to the collector's generations
    (its arrays are not tracked), and the one it replaces is freed by its reference counts at
    the swap: no model object is part of a reference cycle (tests/unit/test_model_holder.py).
    Unfrozen first, so that a process serving a new app (the tests) does not keep the old's.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ModelHolder:
    """Holds the current :class:`Recommender`; swaps it atomically on reload."""

    def __init__(
        self,
        models_dir: Path,
        *,
        on_change: Callable[[ReloadResult], None] = lambda _: None,
        candidates: bool = True,
        probe_share: float = PROBE_SHARE,
    ) -> None:
        self.models_dir = models_dir
        self.candidates = candidates  # these two: see engine.recommender.Recommender
        self.probe_share = probe_share
        self._current: Recommender | None = None
        self._lock = asyncio.Lock()  # one reload at a time; requests never wait on it
        self._on_change = on_change
        self.last_error: str | None = None
        self.failed_version: str | None = None  # the `current` that last failed to load

    @property
    def current(self) -> Recommender | None:
        return self._current

    @property
    def version(self) -> str | None:
        return None if self._current is None else self._current.model.version

    async def reload(self, *, force: bool = False) -> ReloadResult:
        """Load what ``current`` points at, unless it is already serving (``force`` reloads)."""
        async with self._lock:
            previous = self.version
            try:
                target = current_version(self.models_dir)
                if not force and target is not None and target == previous:
                    result = ReloadResult("unchanged", previous, previous)
                else:
                    fresh = await asyncio.to_thread(
                        _build, self.models_dir, self.candidates, self.probe_share
                    )
                    self._current = fresh  # the swap: one reference assignment
                    if previous is None:
                        _freeze_heap()
                    self.last_error = None
                    self.failed_version = None
                    result = ReloadResult("reloaded", fresh.model.version, previous)
            except Exception as exc:
                # Not only ArtifactError: whatever goes wrong building a version (a bug, an
                # artifact the checks did not foresee), it is refused like a damaged one, so a
                # start never crashes, an admin reload never answers 500 and the metric counts it.
                error = (
                    str(exc) if isinstance(exc, ArtifactError) else f"{type(exc).__name__}: {exc}"
                )
                self.last_error = error
                with contextlib.suppress(ArtifactError):
                    self.failed_version = current_version(self.models_dir)
                log.error(
                    "model reload refused, still serving %s: %s",
                    previous,
                    error,
                    exc_info=not isinstance(exc, ArtifactError),
                )
                result = ReloadResult("failed", previous, previous, error)
            if result.outcome == "reloaded":
                log.info("serving model %s (was %s)", result.version, previous)
            self._on_change(result)
            return result

    async def watch(self, interval: float) -> None:
        """Poll the ``current`` pointer every ``interval`` seconds; reload when it moves.

        A version that failed once is not retried on every tick (it would re-hash the whole
        artifact each time); publishing another version, or POST /v1/admin/reload, tries again.
        """
        while True:
            await asyncio.sleep(interval)
            try:
                target = current_version(self.models_dir)
                if target is not None and target not in (self.version, self.failed_version):
                    await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher must outlive any one bad tick
                log.exception("model watcher tick failed")
