"""The coalescing transport: a turn's writes leave in one send, in order, and none is lost."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.transport import CoalescedWrites


class RecordingTransport(asyncio.Transport):
    """A transport that keeps what it is asked to send, as the kernel would see the sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.after_close: list[bytes] = []  # a real transport would warn and drop these
        self.closing = False

    def write(self, data: Any) -> None:
        (self.after_close if self.closing else self.sends).append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name == "sockname" else default


async def _next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_a_turns_writes_leave_in_one_send_at_its_end() -> None:
    transport = RecordingTransport()
    writes = CoalescedWrites(transport, asyncio.get_running_loop())
    writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    writes.write(b"{}")
    assert transport.sends == []  # held until the loop's turn ends
    await _next_turn()
    assert transport.sends == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    writes.writelines([b"a", b"b"])
    writes.write(b"c")
    await _next_turn()
    assert transport.sends[1:] == [b"abc"]


async def test_close_sends_what_is_held_first_and_later_writes_are_dropped() -> None:
    transport = RecordingTransport()
    writes = CoalescedWrites(transport, asyncio.get_running_loop())
    writes.write(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    writes.close()
    assert transport.sends == [b"HTTP/1.1 408 Request Timeout\r\n\r\n"]
    assert writes.is_closing()
    writes.write(b"too late")  # a response finishing after the connection was closed
    await _next_turn()
    assert transport.sends == [b"HTTP/1.1 408 Request Timeout\r\n\r\n"]
    assert transport.after_close == []


async def test_a_transport_closed_underneath_gets_nothing_more() -> None:
    transport = RecordingTransport()
    writes = CoalescedWrites(transport, asyncio.get_running_loop())
    writes.write(b"partial")
    transport.close()  # e.g. aborted by the protocol's own transport handle
    await _next_turn()
    assert transport.sends == transport.after_close == []


async def test_everything_else_is_the_transports_own() -> None:
    transport = RecordingTransport()
    writes = CoalescedWrites(transport, asyncio.get_running_loop())
    assert writes.get_extra_info("sockname") == ("127.0.0.1", 8000)
    assert writes.get_extra_info("peername", "none") == "none"
