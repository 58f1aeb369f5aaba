"""``python -m benchmarks.profile``: py-spy on the API under load, pyinstrument and py-spy on a
training run, on the small generated shop."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="py-spy attaches to processes through ptrace"
)


def _profile(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.profile", *args],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_serve_samples_the_server_under_the_case_it_names(small_shop: Path, tmp_path: Path) -> None:
    printed = _profile("serve", "--models", str(small_shop), "--store", "memory",
                       "--case", "GET recs, anonymous, 5 clicks", "--seconds", "2",
                       "--out", str(tmp_path))  # fmt: skip
    summary = (tmp_path / "serve-get-recs-anonymous-5-clicks.txt").read_text()
    assert printed.strip() == summary.strip()
    head = re.search(r"([\d,]+) req/s, server CPU ([\d,]+) µs/request, (\d+) errors", summary)
    assert head is not None, summary
    assert int(head[1].replace(",", "")) > 0 and int(head[2].replace(",", "")) > 0
    assert head[3] == "0"
    # The session's scoring is sampled inside the route, not only the server's event loop.
    inclusive = summary.split("inclusive samples")[1]
    assert "Recommender.recommend (engine/recommender.py)" in inclusive
    assert "recommendations (api/routes/recommendations.py)" in inclusive
    folded = (tmp_path / "serve-get-recs-anonymous-5-clicks.folded").read_text().splitlines()
    assert folded and all(line.rpartition(" ")[2].isdigit() for line in folded)


def test_serve_refuses_a_case_the_benchmark_does_not_have(small_shop: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.profile", "serve", "--models", str(small_shop),
         "--store", "memory", "--case", "GET recs, nobody", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "unknown case 'GET recs, nobody'" in done.stderr
    assert "GET recs, known customer" in done.stderr  # the cases there are


def test_train_writes_the_call_tree_and_every_threads_samples(
    small_shop: Path, tmp_path: Path
) -> None:
    log = small_shop.parent / "log.parquet"  # the log the shop was trained from
    printed = _profile("train", "--log", str(log), "--format", "generic", "--out", str(tmp_path))
    tree = (tmp_path / "train-log.txt").read_text()
    assert printed.strip() == tree.strip()
    assert "train_model" in tree and "read_purchase_log" in tree
    assert (tmp_path / "train-log.html").stat().st_size > 0
    threads = (tmp_path / "train-log-threads.txt").read_text()
    assert re.search(r"read and train, [\d.]+ s, [\d.]+ CPU-s", threads)
    assert "train_model (training/pipeline.py)" in threads.split("inclusive samples")[1]
