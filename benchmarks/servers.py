"""Processes the benchmarks start and always stop: uvicorn apps and private redis-servers.

Every server binds 127.0.0.1 on a free port chosen here; nothing is sent anywhere else.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from benchmarks.fixtures import REPO

HOST = "127.0.0.1"  # loopback only
START_TIMEOUT_SECONDS = 60.0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a server's workers and theirs), from one read of Linux's
    /proc; a process that exits meanwhile is left out."""
    return _below(pid, _processes())


def cpu_seconds(pid: int) -> float:
    """CPU time so far of a process (all its threads, ended ones too) and of its descendants (a
    server's workers), in the kernel's clock ticks (10 ms); NaN where there is no Linux /proc.

    Read before and after a load, it gives the server's CPU per request: on a host whose speed
    drifts, and whose cores the load generator shares, a steadier figure than req/s.
    """
    if not Path("/proc/self/stat").is_file():
        return math.nan
    table = _processes()
    ticks = sum(table[p][1] for p in [pid, *_below(pid, table)] if p in table)
    return ticks / os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, int]]:
    """Each process's parent and CPU ticks (user + system), from /proc/<pid>/stat."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):  # exited while read
            fields = stat.read_text().rsplit(")", 1)[1].split()
            table[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


def _below(pid: int, table: dict[int, tuple[int, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for process, (parent, _) in table.items():
        children.setdefault(parent, []).append(process)
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        process = todo.pop()
        out.append(process)
        todo += children.get(process, [])
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(
    command: list[str], log: Path, ready: Callable[[], bool]
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until the block ends (SIGTERM, then SIGKILL); wait until ``ready()``.

    The block gets the process (its pid, to sample its memory).
    """
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{' '.join(command[:4])} did not start:\n{tail}")
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as reply:
                return bool(reply.status == 200)
        except OSError:  # refused while starting, or an HTTP error status
            return False

    return check


def redis_pongs(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    return check


def uvicorn_server(
    port: int, log: Path, workers: int = 1
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """The floor app with the settings ``personalize serve`` gives uvicorn."""
    command = [sys.executable, "-m", "uvicorn", "benchmarks.bare_app:app",
               "--host", HOST, "--port", str(port), "--workers", str(workers),
               "--no-access-log", "--timeout-keep-alive", "65", "--lifespan", "on"]  # fmt: skip
    return running(command, log, http_ok(f"http://{HOST}:{port}/ping"))


def engine_server(
    models: Path,
    port: int,
    log: Path,
    redis_url: str | None,
    workers: int = 1,
    *,
    options: Sequence[str] = (),
    ready_path: str = "/readyz",
    entry: str = "personalize",
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """``personalize serve`` as a user runs it (embedded store unless ``redis_url``).

    ``options`` are more ``serve`` flags; started means ``ready_path`` answers 200 (``/healthz``
    for a server expected to start unready). ``entry="api.cli"`` runs the same ``serve`` without
    importing the trainer's commands, which starts in about half the time.
    """
    command = [sys.executable, "-m", entry, "serve", "--models", str(models), "--host", HOST,
               "--port", str(port), "--workers", str(workers), *options]  # fmt: skip
    if redis_url is not None:
        command += ["--redis-url", redis_url]
    return running(command, log, http_ok(f"http://{HOST}:{port}{ready_path}"))


def redis_server(
    binary: str, port: int, directory: Path
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """A private, throwaway redis-server: loopback only, persists nothing."""
    command = [binary, "--port", str(port), "--bind", HOST, "--save", "",
               "--appendonly", "no", "--dir", str(directory), "--daemonize", "no"]  # fmt: skip
    return running(command, directory / "redis.log", redis_pongs(port))


@contextlib.contextmanager
def private_redis(work: Path) -> Iterator[str]:
    """:func:`redis_server` from PATH on a free port, in ``work / "redis"``; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found on PATH: install redis-server (Debian)")
    port = free_port()
    (work / "redis").mkdir()
    with redis_server(binary, port, work / "redis"):
        yield f"redis://{HOST}:{port}/0"


def _exit(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds, so every server started is stopped


def stop_servers_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so the context managers above stop their servers."""
    signal.signal(signal.SIGTERM, _exit)
