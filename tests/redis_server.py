"""A private, throwaway redis-server for tests.

Tests never touch the machine's Redis (6379 or any other): each server here listens on a free
port on 127.0.0.1, keeps its files in a temporary directory and is terminated when the test (or
the session) ends. By default it persists nothing (``--save ''``, no AOF); a fault test can ask
for the append-only file and then kill the server (SIGKILL, a crash) and start it again on the
same port and directory, where it reloads what it had acknowledged.

Without a ``redis-server`` binary the tests fail with a clear message, unless
``PERSONALIZE_SKIP_REDIS=1`` asks to skip them instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

SKIP_ENV = "PERSONALIZE_SKIP_REDIS"
_START_TIMEOUT_SECONDS = 10.0


def redis_server_binary() -> str:
    """The redis-server path; fails (or skips, if PERSONALIZE_SKIP_REDIS=1) when missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = (
            "redis-server not found on PATH: the Redis tests start a private server. "
            "Install it (apt-get install redis-server, or scripts/_install.sh as root) "
            f"or set {SKIP_ENV}=1 to skip these tests."
        )
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    return binary


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server subprocess on a fixed port; can be stopped (or killed) and started again.

    Args:
        appendfsync: turn the append-only file on with this fsync policy (``always``: fsync
            before every reply; ``everysec``); None persists nothing.
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        appendfsync: str | None = None,
        options: Sequence[str] = (),
    ) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.appendfsync = appendfsync
        self.options = list(options)  # more redis-server arguments (cluster mode, TLS)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / f"redis-{self.port}.log"

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        if self._process is not None:
            raise RuntimeError("redis-server already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "no"]
            if self.appendfsync is None
            else ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        )
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            *persistence,
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", str(self.log),
            *self.options,
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not _pings(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                stderr = self._reap()
                log = self.log.read_text(errors="replace") if self.log.exists() else ""
                raise RuntimeError(
                    f"redis-server on port {self.port} did not start:\n{stderr}\n{log[-2000:]}"
                )
            time.sleep(0.02)

    def _reap(self, *, crash: bool = False) -> str:
        process, self._process = self._process, None
        if process is None:
            return ""
        if crash:
            process.kill()
        elif process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _, stderr = process.communicate()
        return stderr.decode(errors="replace")

    def stop(self) -> None:
        """Terminate the server (SIGTERM; SIGKILL if it lingers) and wait for it to exit."""
        self._reap()

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to flush, save or say goodbye to its clients."""
        self._reap(crash=True)


@contextmanager
def running_redis(directory: Path, port: int | None = None) -> Iterator[RedisServer]:
    """A started private server, stopped on exit; retries once if the free port was taken."""
    server = RedisServer(directory, port)
    try:
        server.start()
    except RuntimeError:
        if port is not None:
            raise
        server = RedisServer(directory)
        server.start()
    try:
        yield server
    finally:
        server.stop()


def _cluster_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"CLUSTER INFO\r\n")
            return b"cluster_state:ok" in sock.recv(4096)
    except OSError:
        return False


@contextmanager
def running_cluster(directory: Path, masters: int = 3) -> Iterator[list[RedisServer]]:
    """A Redis Cluster of ``masters`` private servers (no replicas), joined with
    ``redis-cli --cluster create``; every server is stopped on exit.

    Each node gets two free ports: clients' and the cluster bus's (``--cluster-port``), so no
    node depends on port + 10000 being free.
    """
    cli = shutil.which("redis-cli")
    if cli is None:
        redis_server_binary()  # the same message (or skip) as for a missing redis-server
        pytest.fail("redis-cli not found on PATH: the cluster tests create the cluster with it")
    nodes: list[RedisServer] = []
    try:
        for n in range(masters):
            node_dir = directory / f"node{n}"
            options = ["--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                       "--cluster-config-file", str(node_dir / "nodes.conf"),
                       "--cluster-node-timeout", "5000"]  # fmt: skip
            node = RedisServer(node_dir, options=options)
            nodes.append(node)
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        created = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout.decode()}")
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not all(_cluster_ok(node.port) for node in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster {addresses} did not reach cluster_state:ok")
            time.sleep(0.05)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@contextmanager
def running_sentinel(directory: Path, master_port: int, name: str) -> Iterator[int]:
    """A Redis Sentinel (``redis-server <conf> --sentinel``) watching the master on
    ``master_port`` as ``name``; yields its port and stops it on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = directory / "sentinel.conf"  # Sentinel rewrites its file, so it needs one
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor {name} 127.0.0.1 {master_port} 1\n"
    )
    process = subprocess.Popen(
        [redis_server_binary(), str(config), "--sentinel", "--logfile", str(directory / "log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not _pings(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis sentinel on port {port} did not start")
            time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
