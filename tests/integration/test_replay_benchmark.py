"""The click-replay benchmark end to end on a few hundred real Taobao events: train, serve,
replay through HTTP, score. Checks the shape and the bookkeeping, not the quality figures."""

from pathlib import Path

import pytest

from benchmarks import replay

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

EVENTS = 150


def test_quick_replay_counts_add_up(shared_data: Path, tmp_path: Path) -> None:
    log = shared_data / "taobao-userbehavior-head" / "user_behavior_head.csv.gz"
    result = replay.run(True, tmp_path, max_events=EVENTS, max_seconds=60, log=log)

    assert result["events_planned"] == EVENTS
    assert result["events_replayed"] == EVENTS
    assert not result["truncated_by_time"]
    assert result["events_known_customer"] <= EVENTS
    # four recommendation requests and one batch of events per replayed event
    assert result["requests"] == EVENTS * (len(replay.ARMS) + 1)

    rows = {(row["arm"], row["subset"]): row for row in result["metrics"]}
    assert set(rows) == {(arm.name, subset) for arm in replay.ARMS for subset in replay.SUBSETS}
    for row in result["metrics"]:
        assert 0 <= row["hits"] <= row["events"]
        assert 0.0 <= row["mrr@10"] <= row["hit_rate@10"] <= 1.0
        assert row["events_known_item"] <= row["events"]
    session = rows["session", "all"]
    assert isinstance(session["hit_rate@10"], float)
    assert 0.0 <= session["hit_rate@10"] <= 1.0

    every = rows["session", "all"]["events"]
    first = rows["session", "first in session"]["events"]
    new = rows["session", "new to user"]["events"]
    assert every == EVENTS
    assert new <= first <= every
    assert result["repeat_share"] == pytest.approx(1 - first / every)
    assert {(lift["arm"], lift["subset"]) for lift in result["lift"]} == {
        (arm, subset) for arm, _ in replay.LIFTS for subset in replay.SUBSETS
    }
