"""``benchmarks.reload``: the model reloaded under load, against the same load without."""

from __future__ import annotations

from pathlib import Path

from benchmarks import reload
from benchmarks.servers import engine_server, free_port
from engine.model import load_model


def test_both_arms_are_loaded_and_the_reloads_are_done(small_shop: Path, tmp_path: Path) -> None:
    customers = [str(c) for c in load_model(small_shop, verify=False).users.ids]
    port = free_port()
    with engine_server(small_shop, port, tmp_path / "serve.log", None, 1):
        arms = reload.measure(port, customers, rounds=1, seconds=2.5)
    expected = int(reload.RATE * 2.5)
    for arm in reload.ARMS:
        assert arms[arm]["requests"] == expected and arms[arm]["errors"] == 0
        assert arms[arm]["p50_ms"] <= arms[arm]["p99_ms"] <= arms[arm]["p999_ms"]
        assert arms[arm]["p999_ms"] <= arms[arm]["max_ms"]
    took = arms["reloading"]["reload_seconds"]
    assert arms["reloading"]["reloads"] == len(took) >= 1  # one a second while the load ran
    assert all(0 < seconds < 30 for seconds in took)
