"""``benchmarks.http_latency``: one missed case run again, against its floor in the same rounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import http_latency


def test_a_chosen_case_runs_alone_and_takes_turns_with_its_floor(
    small_shop: Path, tmp_path: Path
) -> None:
    spec = http_latency.LoadSpec(requests=20, warmup=5, max_seconds=20.0, rate=200.0)
    result = http_latency.run(
        small_shop,
        tmp_path,
        spec,
        servers=frozenset({"memory"}),
        cases=("20 clicks",),
    )
    engine = [row for row in result["cases"] if row["server"] != "floor"]
    assert [(row["server"], row["workers"], row["case"]) for row in engine] == [
        ("memory", 1, "GET recs, anonymous, 20 clicks")
    ]
    (row,) = engine
    assert row["requests"] == spec.requests and row["errors"] == 0
    assert row["paced"]["requests"] == spec.requests and row["paced"]["errors"] == 0
    # Its ratios are against the floor's GET run in the same rounds.
    assert row["floor_same_rounds"]["requests"] == spec.requests
    assert row["throughput_vs_floor"] > 0 and "median_part_p99_minus_floor_ms" in row["paced"]


def test_a_case_filter_that_matches_nothing_is_an_error(small_shop: Path, tmp_path: Path) -> None:
    """A typo must not pass for a run that measured nothing."""
    spec = http_latency.LoadSpec(requests=5, warmup=1, max_seconds=10.0, rate=200.0)
    with pytest.raises(ValueError, match="no case's name contains any of"):
        http_latency.run(
            small_shop, tmp_path, spec, servers=frozenset({"memory"}), cases=("20 klicks",)
        )
