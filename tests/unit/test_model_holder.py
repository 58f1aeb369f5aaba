"""The model holder refuses a version whatever goes wrong while building it."""

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
    def broken(models_dir: Path) -> Recommender:
        raise RuntimeError("boom")

    monkeypatch.setattr(state, "_build", broken)
    seen: list[ReloadResult] = []
    holder = ModelHolder(tmp_path, on_change=seen.append)

    result = await holder.reload()

    assert result == ReloadResult("failed", None, None, "RuntimeError: boom")
    assert seen == [result]
    assert holder.current is None and holder.last_error == "RuntimeError: boom"
