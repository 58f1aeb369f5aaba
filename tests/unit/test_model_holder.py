"""The model holder refuses a version whatever goes wrong while building it."""

import gc
import math
import weakref
from pathlib import Path

import pytest

from api import state
from api.state import ModelHolder, ReloadResult
from engine.recommender import Recommender


async def test_an_unexpected_error_while_building_is_a_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not an ArtifactError: a bug or an unforeseen artifact must not crash the start, answer
    # 500 to an admin reload or escape the reload metric.
    def broken(models_dir: Path, candidates: bool, probe_share: float) -> Recommender:
        raise RuntimeError("boom")

    monkeypatch.setattr(state, "_build", broken)
    seen: list[ReloadResult] = []
    holder = ModelHolder(tmp_path, on_change=seen.append)

    result = await holder.reload()

    assert result == ReloadResult("failed", None, None, "RuntimeError: boom")
    assert seen == [result]
    assert holder.current is None and holder.last_error == "RuntimeError: boom"


async def test_the_serving_model_is_frozen_out_of_the_collector(tmp_path: Path) -> None:
    # A full collection must not walk the model's objects mid-request (a p99 spike); after a
    # reload the previous model is freed, not kept forever in the frozen generation: by its
    # reference counts, as a reload no longer unfreezes the heap, so any reference cycle
    # through a model's objects would keep it.
    from shops import two_version_shop

    from engine.artifacts import list_versions, publish

    models = two_version_shop(tmp_path)
    holder = ModelHolder(models)
    try:
        await holder.reload()
        first = holder.current
        assert first is not None
        assert gc.get_freeze_count() > 0 and not any(o is first for o in gc.get_objects())
        previous = weakref.ref(first)
        publish(models, next(v for v in list_versions(models) if v != first.version))
        del first
        assert (await holder.reload()).outcome == "reloaded"
        assert previous() is None
    finally:
        gc.unfreeze()


async def test_a_reload_neither_collects_nor_freezes_the_whole_heap(tmp_path: Path) -> None:
    # Unfreezing the heap to collect all of it held every request in flight for 83-142 ms at
    # each reload of a 3.7k-item model; and freezing at a reload would keep for good whatever
    # the requests in flight hold that later becomes cyclic garbage (sockets in the tests).
    from shops import two_version_shop

    models = two_version_shop(tmp_path)
    holder = ModelHolder(models)
    frozen_when_collecting: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            frozen_when_collecting.append(gc.get_freeze_count())

    class InFlight:  # what a request in flight holds, in a reference cycle
        def __init__(self) -> None:
            self.me = self

    try:
        await holder.reload()
        frozen = gc.get_freeze_count()
        in_flight = InFlight()
        held = weakref.ref(in_flight)
        gc.callbacks.append(record)
        assert (await holder.reload(force=True)).outcome == "reloaded"
        gc.callbacks.remove(record)
        # Building a model makes garbage, so the collector ran, with all of it still frozen
        # (less the previous model's objects, freed at the swap).
        assert frozen_when_collecting, "no collection while the model was built"
        assert min(frozen_when_collecting) > 0.9 * frozen
        del in_flight  # the request ends
        gc.collect()
        assert held() is None
    finally:
        if record in gc.callbacks:
            gc.callbacks.remove(record)
        gc.unfreeze()


async def test_the_candidate_index_serves_when_the_model_has_lists_and_the_setting_allows(
    tmp_path: Path,
) -> None:
    from shops import trained_shop

    from benchmarks.fixtures import small_shop_spec
    from training.params import CandidateParams, ModelParams
    from training.synthetic import generate_shop

    shop = generate_shop(small_shop_spec())
    with_lists = trained_shop(
        tmp_path / "lists", shop, ModelParams(candidates=CandidateParams(from_items=1))
    )
    without = trained_shop(tmp_path / "none", shop)  # 50,000 items by default: none here
    for models, setting, indexed in (
        (with_lists, True, True),
        (with_lists, False, False),
        (without, True, False),
    ):
        holder = ModelHolder(models, candidates=setting, probe_share=0.5)
        await holder.reload()
        assert holder.current is not None
        index = holder.current.candidate_index
        assert (index is not None) is indexed
        if index is not None:
            assert index.probe == math.ceil(0.5 * index.lists)
    gc.unfreeze()
