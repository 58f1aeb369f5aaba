"""The load generator's own pauses must not be charged to the server it measures."""

from __future__ import annotations

import gc

from benchmarks import loadgen


def test_a_load_runs_with_the_heap_built_before_it_frozen() -> None:
    # Objects alive before the load (a loaded model, the benchmark's tables) are out of the
    # collector's reach while it runs: a full collection of them stalled every request due.
    ballast = [[i] for i in range(10_000)]

    async def frozen_now() -> int:
        return gc.get_freeze_count()

    gc.unfreeze()  # an app another test served froze its heap
    assert loadgen.run(frozen_now()) >= len(ballast)
    assert gc.get_freeze_count() == 0  # and the process is as it was after it
