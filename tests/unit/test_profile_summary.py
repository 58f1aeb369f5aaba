"""The profiler's summary of collapsed stacks: own and inclusive samples per function."""

from __future__ import annotations

import pytest

from benchmarks.profile import NO_PYTHON_FRAME, summarize

PROCESS = 'process 42:"python -m personalize serve"'


def test_samples_are_summed_per_function_whatever_the_line() -> None:
    summary = summarize(
        [
            f"{PROCESS};run (api/cli.py:10);score (engine/kernels.py:5) 3\n",
            f"{PROCESS};run (api/cli.py:11);score (engine/kernels.py:9) 2\n",
            f"{PROCESS};run (api/cli.py:10);send (api/server.py:70) 5\n",
        ]
    )
    assert summary.total == 10
    assert summary.own == {"score (engine/kernels.py)": 5, "send (api/server.py)": 5}
    assert summary.inclusive["run (api/cli.py)"] == 10
    assert PROCESS not in summary.inclusive  # py-spy's process frame is not a function


def test_a_recursive_function_counts_once_per_sample() -> None:
    summary = summarize(["a (m.py:1);b (m.py:2);a (m.py:1);b (m.py:3) 4\n", "a (m.py:1) 1\n"])
    assert summary.inclusive == {"a (m.py)": 5, "b (m.py)": 4}
    assert summary.own == {"b (m.py)": 4, "a (m.py)": 1}


def test_a_stack_of_the_process_alone_is_named_and_the_table_gives_shares() -> None:
    summary = summarize([f"{PROCESS} 1\n", "f (m.py:1) 3\n", "\n"])
    assert summary.own[NO_PYTHON_FRAME] == 1
    table = summary.table()
    assert "4 samples" in table
    assert " 75.0%  f (m.py)" in table and " 25.0%  " + NO_PYTHON_FRAME in table


@pytest.mark.parametrize("line", ["f (m.py:1) x\n", "f (m.py:1)\n"])
def test_a_line_without_a_count_is_an_error(line: str) -> None:
    with pytest.raises(ValueError):
        summarize([line])
