"""The HTTP/1.1 protocol ``personalize serve`` gives uvicorn: its own, with two bounds it lacks.

uvicorn arms a timer only between requests (``timeout_keep_alive``), so a client that opens a
connection and sends its request a byte at a time (slowloris) holds the connection, and a task
slot under ``limit_concurrency``, for as long as it likes; and its httptools parser buffers a
request head of any size. This protocol adds:

* a request deadline: the whole request, head and body, must arrive within
  ``request_timeout_seconds`` of its first byte (or of the connection, for a client that sends
  nothing); else 408 and the connection is closed;
* a head limit: a request line plus headers over ``h11_max_incomplete_event_size`` bytes (the
  same bound uvicorn's h11 protocol applies) gets 431 and the connection is closed;

and it sends what a connection's responses write in one turn of the event loop at once: uvicorn
writes a response's head and its body separately, two sends and two packets for every
response, where the client needs one.

Used as ``uvicorn.run(..., http="api.server:BoundedHttpToolsProtocol")``; every worker process
imports it by that name.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.settings import ApiSettings
from engine.transport import CoalescedWrites

PROTOCOL = "api.server:BoundedHttpToolsProtocol"
DEFAULT_MAX_HEAD_BYTES = 16 * 1024  # uvicorn's h11 default


@functools.cache
def _request_timeout() -> float:
    """Read once per worker process, from the same environment its app is built from."""
    return ApiSettings().request_timeout_seconds


def _response(status: bytes, text: str) -> bytes:
    body = text.encode()
    head = (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n"
    )
    return head + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request deadline and a bounded request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_head = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self._timeout = _request_timeout()
        self._deadline: asyncio.TimerHandle | None = None
        self._started: float | None = None  # when the request in progress began arriving
        self._head_bytes: int | None = 0  # bytes of the current head; None once it is complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # its flow control pauses the transport itself
        # Every write goes through it, the protocol's own (errors, 408, 431) too, so responses
        # to pipelined requests stay in order. Two sends a response cost the server about 20 us
        # of CPU over one, a tenth of a recommendation (python -m benchmarks.http_latency).
        self.transport = CoalescedWrites(transport, self.loop)  # type: ignore[assignment]
        self._begin()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a head that completed in this chunk is fine, whatever follows.
        if self._head_bytes is not None and self._head_bytes > self._max_head:
            self._refuse(b"431 Request Header Fields Too Large", "request head too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begin()

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._started = None
        self._head_bytes = 0  # the next request's head is counted from here
        super().on_message_complete()

    def _begin(self) -> None:
        """Start the clock of a request. The timer is not set per request (on a keep-alive
        connection that would be a timer made, pushed on the loop's heap and cancelled on every
        request): it fires at most once per timeout and checks the request in progress then.
        """
        self._started = self.loop.time()
        if self._deadline is None:
            self._deadline = self.loop.call_at(self._started + self._timeout, self._check)

    def _check(self) -> None:
        self._deadline = None
        if self._started is None:
            return  # idle between requests: uvicorn's keep-alive timeout applies
        due = self._started + self._timeout
        if self.loop.time() < due:
            self._deadline = self.loop.call_at(due, self._check)  # a later request's deadline
            return
        head_done = self._head_bytes is None
        if head_done and self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # too late for a status line: just drop the client
        else:
            self._refuse(b"408 Request Timeout", "request not received in time")

    def _refuse(self, status: bytes, text: str) -> None:
        self._started = None
        if not self.transport.is_closing():
            # Debug, not info: a flood of slow clients must not become a flood of log lines.
            self.logger.debug("closing connection from %s: %s", self.client, text)
            self.transport.write(_response(status, text))
            self.transport.close()
