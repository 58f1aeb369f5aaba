"""The benchmark report states each target as met or missed from the figures, never silently."""

from pathlib import Path
from typing import Any

from benchmarks import report

MACHINE = {"node": "n", "cpus": 2, "processor": "x86_64", "python": "3.11", "blas": []}


def _http_row(
    method: str, workers: int, ratio: float, p99_over: float, paced_over: float, items: int = 3659
) -> dict[str, Any]:
    server = "redis" if items < 100_000 else "redis, 100k items"
    return {
        "server": "floor" if ratio is None else server, "workers": workers, "items": items,
        "case": f"{method} x", "method": method, "requests": 10, "throughput_rps": 100.0,
        "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0, "errors": 0,
        "throughput_vs_floor": ratio, "p99_minus_floor_ms": p99_over,
        "paced": {"p50_ms": 1.0, "p90_ms": 1.5, "p99_ms": 2.0, "p99_minus_floor_ms": paced_over},
    }  # fmt: skip


def _write(tmp_path: Path, sections: dict[str, Any]) -> str:
    report.write(
        {"started": "t", "quick": True, "machine": MACHINE, "sections": sections}, tmp_path
    )
    return (tmp_path / "report.md").read_text()


def _target_row(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {start}"))


def test_targets_are_judged_from_the_worst_case(tmp_path: Path) -> None:
    """Over every case served, whatever its workers and catalog, naming the worst one."""
    http = {"load": {"rate": 400.0},
            "cases": [_http_row("GET", 1, 0.7, 2.0, 0.4), _http_row("GET", 1, 0.5, 1.0, 3.5),
                      _http_row("GET", 2, 0.4, 0.5, 0.2, items=100_000),
                      _http_row("POST", 1, 0.9, 1.5, 0.5),
                      _http_row("POST", 2, 0.9, 0.5, 0.8, items=100_000)]}  # fmt: skip
    text = _write(tmp_path, {"http": http})
    assert "40% (redis, 100k items, 2 workers: GET x) | **missed**" in _target_row(
        text, "recommendations >= 60 %"
    )
    # Latency targets at the fixed traffic; the saturated figures are shown beside them.
    assert "+3.5 ms (redis, 1 worker: GET x) | **missed**" in _target_row(
        text, "recommendation p99 at 400 req/s"
    )
    assert "+0.8 ms (redis, 100k items, 2 workers: POST x) | met" in _target_row(
        text, "click p99 at 400 req/s"
    )
    assert "+2.0 ms (redis, 1 worker: GET x) | met" in _target_row(
        text, "recommendation p99 at saturation"
    )
    assert "+1.5 ms (redis, 1 worker: POST x) | **missed**" in _target_row(
        text, "click p99 at saturation"
    )
    assert "not measured" in _target_row(text, "batch ingest")
    assert (tmp_path / "http_latency.png").stat().st_size > 0
    # p50, p90 and p99 of both runs, saturated and at the fixed rate.
    assert "| p50 ms | p90 ms | p99 ms |" in text and "| 1.00 | 2.00 | 3.00 |" in text
    assert "| p50 ms at 400/s | p90 ms at 400/s | p99 ms at 400/s |" in text
    assert "| 1.00 | 1.50 | 2.00 |" in text


def test_a_run_taking_turns_with_its_floor_is_judged_on_its_median_round(tmp_path: Path) -> None:
    """One host stall in one round (its p99 +6 ms over the whole run) does not decide the
    latency target when the case took turns with its floor; the whole run's p99 is still shown."""
    stalled = _http_row("GET", 1, 0.7, 2.0, 6.0)
    stalled["floor_same_rounds"] = {"throughput_rps": 140.0}
    stalled["paced"].update(p99_ms=8.0, p99_ms_median_part=2.2,
                            median_part_p99_minus_floor_ms=0.6)  # fmt: skip
    text = _write(tmp_path, {"http": {"load": {"rate": 400.0}, "cases": [stalled]}})
    assert "+0.6 ms (redis, 1 worker: GET x) | met" in _target_row(
        text, "recommendation p99 at 400 req/s, median of 5"
    )
    assert "| 140 | 0.70 |" in text and "| 8.00 | 2.20 |" in text


def test_the_http_table_shows_the_servers_cpu_per_request(tmp_path: Path) -> None:
    row = _http_row("GET", 1, 0.4, 2.0, 0.5)
    row.update(server_cpu_us=1290.4, server_cpu_vs_floor=2.58)
    bare = _http_row("GET", 1, 0.5, 1.0, 0.5)  # measured where /proc was not there
    text = _write(tmp_path, {"http": {"load": {"rate": 400.0}, "cases": [row, bare]}})
    assert "| server CPU µs/request | CPU x floor |" in text
    assert "| 0.40 | 1,290 | 2.58 |" in text
    assert "| 0.50 |  |  |" in text


def test_a_failed_section_is_reported_not_dropped(tmp_path: Path) -> None:
    text = _write(tmp_path, {"replay": {"error": "RuntimeError: boom", "seconds": 1.0}})
    assert "## replay" in text and "**failed**: `RuntimeError: boom`" in text


def test_ingest_and_memory_targets(tmp_path: Path) -> None:
    sections = {
        "ingestion": {"cases": [
            {"level": "store", "batch": 1, "events_per_s": 50_000.0, "p50_ms": 1.0,
             "p99_ms": 2.0, "vs_floor": 0.5},
            {"level": "store", "batch": 100, "events_per_s": 31_000.0, "p50_ms": 1.0,
             "p99_ms": 2.0, "vs_floor": 0.9},
        ]},
        "memory": {"redis": {"per_visitor": {"visitors": 3, "bytes_per_visitor": {
            "mean": 1500.0, "p50": 1400.0, "p99": 2000.0, "max": 2100.0}}}},
    }  # fmt: skip
    text = _write(tmp_path, sections)
    assert "31,000 events/s | met" in _target_row(text, "batch ingest")  # batches only
    assert "1,500 B | **missed**" in _target_row(text, "Redis <= 1 KiB")


def test_training_target_and_table(tmp_path: Path) -> None:
    def case(rows: int, ratio: float) -> dict[str, Any]:
        steps = {
            "direct": {"seconds": {"read_direct": 0.1, "fit_direct": 0.9}, "peak_rss_mb": 300.0},
            "train": {"seconds": {"read": 0.2, "train": 1.0}, "peak_rss_mb": 450.0},
            "evaluated": {"seconds": {"evaluate": 3.25, "total": 3.9}, "peak_rss_mb": 400.0},
        }
        return {"rows": rows, "steps": steps,
                "ratios": {"read+train / read_direct+fit_direct": ratio,
                           "cpu read+train / cpu direct": ratio - 0.5}}  # fmt: skip

    cases = {"online-retail": case(500_000, 1.2), "synthetic-1m": case(1_000_000, 2.0)}
    text = _write(tmp_path, {"training": {"cases": cases}})
    assert "1.20x | met" in _target_row(
        text, "training <= 1.3x the direct path (read + fit, online-retail)"
    )
    assert "2.00x | **missed**" in _target_row(
        text, "training <= 1.3x the direct path (read + fit, synthetic-1m)"
    )
    assert (
        "| synthetic-1m | 1,000,000 | 1.00 | 1.20 | 2.00x | 1.50x | 3.2 | 3.9 | 300 | 450 |" in text
    )
    assert (tmp_path / "training_scaling.png").is_file()


def test_candidate_tables_show_both_overlaps(tmp_path: Path) -> None:
    """The overlap with the exact page, and the same counting items tied with its 10th as
    right: on a sparse log, which tied item a page shows is an accident of numbering."""
    timing = {"p50_ms": 0.25, "p99_ms": 0.5}
    large = {"items": 55_368, "lists": 235, "probed": 12, "index_build_s": 0.7, "visitors": 300,
             "cases": {"customer, no session": {"exact": timing, "candidates": timing,
                                                "top10_overlap": 0.906,
                                                "top10_overlap_ties": 0.97}}}  # fmt: skip
    compute = {"items": 3659, "cases": {"anonymous, 5 clicks": timing},
               "candidates_taobao": large}  # fmt: skip
    text = _write(tmp_path, {"compute": compute})
    assert "| top-10 overlap | counting ties |" in text
    assert "| customer, no session | 0.250 | 0.500 | 0.250 | 0.500 | 0.906 | 0.970 |" in text


def test_the_header_names_the_cpu_when_it_is_known(tmp_path: Path) -> None:
    """One commit measured 2x apart on hosts with other CPUs: the report says which it ran on."""
    machine = {**MACHINE, "cpu": "Some Xeon, AVX-512, L2 2048K"}
    report.write({"started": "t", "quick": True, "machine": machine, "sections": {}}, tmp_path)
    assert "2 cpus (x86_64, Some Xeon, AVX-512, L2 2048K)" in (tmp_path / "report.md").read_text()
    assert "2 cpus (x86_64), Python" in _write(tmp_path, {})  # older results: no CPU field


def test_the_reload_table_shows_both_arms(tmp_path: Path) -> None:
    def arm(p99: float, worst: float) -> dict[str, Any]:
        return {"requests": 3200, "p50_ms": 0.7, "p99_ms": p99, "p999_ms": worst / 2,
                "max_ms": worst, "errors": 0}  # fmt: skip

    arms = {"steady": arm(2.1, 4.7), "reloading": {**arm(3.8, 35.8), "reload_seconds": [0.04] * 6}}
    data = {"rate_rps": 400.0, "rounds": 2, "seconds_per_round": 4.0,
            "reload_every_seconds": 1.0, "arms": arms}  # fmt: skip
    text = _write(tmp_path, {"reload": data})
    assert "a forced reload (load, verify, swap) every 1 s, 6 in all" in text
    assert "| steady | 3,200 | 0.70 | 2.10 | 2.35 | 4.7 | 0 |" in text
    assert "| reloading | 3,200 | 0.70 | 3.80 | 17.90 | 35.8 | 0 |" in text
