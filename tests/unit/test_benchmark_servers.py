"""The benchmarks' view of a server's processes: its descendants and their CPU time."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from benchmarks.servers import cpu_seconds, descendants

# A parent that busies a thread, then starts a child that busies itself, then both wait: the
# server shape (uvicorn's main process and its workers), with a known CPU budget.
TREE = """
import subprocess, sys, threading, time
def spin(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
worker = threading.Thread(target=spin, args=(0.3,))
worker.start()
worker.join()
child = subprocess.Popen([sys.executable, "-c",
    "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass\\n"
    "print('spun', flush=True)\\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print("ready", child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_the_server_tree_and_its_cpu_count_the_threads_and_the_children() -> None:
    with subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True) as tree:
        try:
            assert tree.stdout is not None
            ready, child = tree.stdout.readline().split()
            assert ready == "ready" and descendants(tree.pid) == [int(child)]
            spent = cpu_seconds(tree.pid)
            # 0.3 s in the parent's thread and 0.3 s in the child, plus two interpreters'
            # start-up; without the thread or the child it could not pass 0.55 s.
            assert 0.55 <= spent < 5.0
            time.sleep(0.2)  # idle now: the count stays where it was
            later = cpu_seconds(tree.pid)
            assert later - spent < 0.05
        finally:
            tree.kill()
