"""An asyncio transport whose writes of one turn of the event loop leave in one send.

Both of the server's sockets that carry many small messages use it: an HTTP connection, where
uvicorn writes a response's head and body apart, and the pipelined Redis connection, where the
requests that one turn of the loop starts each write their read. One send (a system call and
a packet) instead of several saves the server's CPU on both ends; the data waits at most until
the loop's current turn ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


class CoalescedWrites:
    """A connection's transport, with the writes of one turn of the event loop sent together.

    Each write is held until the end of the loop's turn (or a close), then every one held goes
    out in a single send, in order. Everything but writing and closing is the transport's own.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def writelines(self, lines: Iterable[bytes]) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
