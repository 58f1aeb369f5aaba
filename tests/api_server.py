"""The API to test against: in-process (its lifespan running) or ``personalize serve`` in a
subprocess, as deployed, with raw clients to talk to it."""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
from fastapi import FastAPI

from api.main import create_app
from api.settings import ApiSettings
from benchmarks.servers import HOST, engine_server, free_port
from engine.profiles import ProfileStore


class ApiClient(httpx.AsyncClient):
    app: FastAPI


@contextlib.asynccontextmanager
async def serving(
    settings: ApiSettings, store: ProfileStore | None = None
) -> AsyncIterator[ApiClient]:
    """A client talking to a running app (its lifespan started, and stopped on exit)."""
    app = create_app(settings, store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with ApiClient(transport=transport, base_url="http://api") as client:
            client.app = app
            yield client


@dataclass(frozen=True)
class Served:
    """Where the server listens and where its output (uvicorn's and the app's logs) goes."""

    port: int
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@contextlib.contextmanager
def serve(models: Path, folder: Path, options: Sequence[str] = ()) -> Iterator[Served]:
    """``personalize serve --models models *options`` on a free port, stopped on exit."""
    port = free_port()
    log = folder / f"serve-{port}.log"
    with engine_server(models, port, log, None, options=options):
        yield Served(port, log)


class RawClient:
    """One TCP connection that sends exactly the bytes it is given (no HTTP client rules)."""

    def __init__(self, served: Served) -> None:
        self.sock = socket.create_connection(served.address)
        self.received = b""
        self.closed = False

    def send(self, data: bytes) -> bool:
        """False once the server has dropped the connection."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def poll(self) -> bool:
        """Read what has arrived without waiting; True once the server has closed."""
        while not self.closed and select.select([self.sock], [], [], 0)[0]:
            self._read()
        return self.closed

    def wait_closed(self, seconds: float) -> bytes:
        """Everything the server sent, once it closes (socket.timeout after ``seconds``)."""
        self.sock.settimeout(seconds)
        while not self.closed:
            self._read()
        return self.received

    def _read(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        self.received += chunk
        self.closed = not chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@contextlib.contextmanager
def raw_clients(served: Served, n: int) -> Iterator[list[RawClient]]:
    """``n`` connections, all closed on exit."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(RawClient(served)) for _ in range(n)]
