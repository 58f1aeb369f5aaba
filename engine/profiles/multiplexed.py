"""One pipelined Redis connection for the store's per-request calls: many on one socket at once.

redis-py's asyncio client spends tens of microseconds of CPU on every command (pool checkout
and release, its retry wrapper, observability hooks, its connection's reader): about half of a
whole request of the API's bare floor, and the largest single cost of a recommendation or a
click served from Redis. These calls (the read script per recommendation, the record scripts
per event) need none of it. Redis answers each connection's commands in the order they were
sent, so calls are written to one connection as they come, without waiting for each other,
their futures queued, and every reply (parsed by hiredis, which redis-py itself uses) settles
the oldest future. The calls of one turn of the event loop (the reads of the requests it
started) leave in one send (:mod:`engine.transport`): a request with a 20-click session then
costs the server 236 instead of 246 microseconds of CPU (medians of 7 alternating rounds of
``python -m benchmarks.profile serve``, 8 in flight). A recommendation's whole read (the
store's ``context``: script call and parse) takes 17-20 microseconds of CPU this way against
47-54 through redis-py (8 and 1 calls in flight, one process against a private redis-server,
on a quiet hour of a shared 2-core host).

Narrow on purpose: plain TCP (``redis://``) or a Unix socket (``unix://``), one server. An
error reply comes back as redis-py's exception for it (``NoScriptError`` for a script the
server lacks, which the store then loads). A call that gets no reply (no connection possible,
a dropped connection) fails with :class:`MultiplexError`, and the store repeats it through
redis-py, whose retries and backoff handle it; a reply late by ``timeout`` fails every call in
flight with :class:`MultiplexTimeoutError` and drops the connection (the next call reconnects).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.exceptions import NoScriptError, ResponseError

from engine.profiles.packing import pack
from engine.transport import CoalescedWrites


class MultiplexError(Exception):
    """No reply on the pipelined connection (not an error reply: those raise redis-py's own
    exceptions); redis-py may still succeed."""


class MultiplexTimeoutError(MultiplexError):
    """No reply within the timeout: the server is slow or gone, retrying would wait again."""


class _Protocol(asyncio.Protocol):
    """Writes calls as they come; settles their futures in order as replies arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._reader = hiredis.Reader(encoding="utf-8")
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._transport: CoalescedWrites | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The calls that one turn of the loop makes (the reads of the requests it started)
        # leave in one send.
        self._transport = CoalescedWrites(transport, self._loop)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            future, _ = self._waiting.popleft()
            if future.done():
                continue  # its caller was cancelled
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                error = NoScriptError if message.startswith("NOSCRIPT") else ResponseError
                future.set_exception(error(message))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(MultiplexError(f"connection lost: {exc or 'closed'}"))

    def call(self, packed: bytes, replies: int = 1) -> list[asyncio.Future[Any]]:
        """Send ``packed`` (``replies`` commands); a future per reply, in order."""
        if self.closed or self._transport is None:
            raise MultiplexError("connection closed")
        deadline = self._loop.time() + self._timeout
        futures = [self._loop.create_future() for _ in range(replies)]
        self._waiting.extend((future, deadline) for future in futures)
        self._transport.write(packed)
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._check)
        return futures

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._fail(MultiplexError("connection closed"))

    def _check(self) -> None:
        """One timer for every call in flight: the oldest call's deadline is the earliest."""
        self._timer = None
        if not self._waiting:
            return
        oldest = self._waiting[0][1]
        if self._loop.time() >= oldest:
            self._fail(MultiplexTimeoutError(f"no reply from Redis within {self._timeout} s"))
            if self._transport is not None:
                self._transport.abort()
        else:
            self._timer = self._loop.call_at(oldest, self._check)

    def _fail(self, error: MultiplexError) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)


class MultiplexedConnection:
    """A lazily opened, self-reopening pipelined connection to one Redis server.

    Args:
        host, port, db, username, password: where and as whom, as in a ``redis://`` URL.
        path: the server's Unix socket instead of ``host`` and ``port`` (a ``unix://`` URL).
        timeout: seconds a call may wait for its reply.
        connect_timeout: seconds to open the connection (and authenticate).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 1.0,
        connect_timeout: float = 1.0,
        path: str | None = None,
    ) -> None:
        self._address = (host, port)
        self._path = path
        self._db = db
        self._auth = (username, password)
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The commands sent in one write; their replies in order, an error reply as its
        exception in its place (as redis-py's ``execute(raise_on_error=False)``)."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connected()
        packed = b"".join(pack(tuple(command)) for command in commands)
        futures = protocol.call(packed, len(commands))
        replies: list[Any] = []
        # Awaited in turn, not gathered: the futures settle in order, and gather's own future
        # and callbacks cost more than a single read's reply handling.
        try:
            for future in futures:
                try:
                    replies.append(await future)
                except MultiplexError:
                    raise  # no reply at all: the connection's failure, not the command's
                except Exception as error:  # an error reply: in its place, as redis-py's
                    replies.append(error)
        except BaseException:
            # The connection failed (every future has its error) or the caller was cancelled:
            # cancel what is still pending and retrieve the rest, or asyncio logs them as lost.
            for other in futures:
                if not other.done():
                    other.cancel()
                elif not other.cancelled():
                    other.exception()
            raise
        return replies

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None

    async def _connected(self) -> _Protocol:
        # Calls arriving while the connection opens wait for the same attempt.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        try:
            self._protocol = await asyncio.shield(self._connecting)
        except (OSError, TimeoutError) as exc:
            raise MultiplexError(f"cannot connect to Redis: {exc}") from exc
        return self._protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        host, port = self._address

        def protocol_factory() -> _Protocol:
            return _Protocol(loop, self._timeout)

        async with asyncio.timeout(self._connect_timeout):
            if self._path is None:
                _, protocol = await loop.create_connection(protocol_factory, host, port)
            else:
                _, protocol = await loop.create_unix_connection(protocol_factory, self._path)
            try:
                username, password = self._auth
                if password is not None:
                    auth = ("AUTH", password) if username is None else ("AUTH", username, password)
                    await protocol.call(pack(auth))[0]
                if self._db:
                    await protocol.call(pack(("SELECT", self._db)))[0]
            except BaseException:
                protocol.close()
                raise
        return protocol
