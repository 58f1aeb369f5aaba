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
    took = arms["reloading"]["reload_seconds"]
    assert len(took) >= 1  # one a second while the load ran
    assert "reload_seconds" not in arms["steady"]  # the steady arm reloads nothing
    assert all(0 < seconds < 30 for seconds in took)
