"""The training benchmark's ratios pair each train run with the direct run beside it."""

from typing import Any

import pytest

from benchmarks.training import _paired_ratios


def _direct(seconds: float, cpu: float) -> dict[str, Any]:
    return {"seconds": {"read_direct": 1.0, "fit_direct": seconds - 1.0}, "cpu_seconds": cpu}


def _train(seconds: float, cpu: float) -> dict[str, Any]:
    return {"seconds": {"read": 2.0, "train": seconds - 2.0, "fit": seconds - 3.0},
            "cpu_seconds": cpu}  # fmt: skip


def test_a_round_slowed_for_one_step_does_not_decide_the_ratio() -> None:
    # Rounds 1 and 3 see the train step take 1.2x its direct run; in round 2 the host slowed
    # the direct run alone. Medians of each step would give 13 / 30; the rounds' median is 1.2.
    direct = [_direct(10.0, 20.0), _direct(30.0, 60.0), _direct(30.0, 60.0)]
    train = [_train(12.0, 22.0), _train(13.0, 26.0), _train(36.0, 66.0)]
    ratios = _paired_ratios(direct, train)
    assert ratios["read+train / read_direct+fit_direct"] == pytest.approx(1.2)
    assert ratios["cpu read+train / cpu direct"] == pytest.approx(1.1)
    assert ratios["read / read_direct"] == pytest.approx(2.0)
