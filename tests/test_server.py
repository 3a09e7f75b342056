"""The response transport of one request: head and first body chunk in one send."""

from __future__ import annotations

import asyncio

from edgeproxy.server import _HeadCoalescer

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_head_and_body_leave_in_one_write() -> None:
    async def run() -> list[bytes]:
        transport = FakeTransport()
        coalescer = _HeadCoalescer(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        coalescer.write(HEAD)
        coalescer.write(b"hello")
        await asyncio.sleep(0)
        return transport.writes

    assert asyncio.run(run()) == [HEAD + b"hello"]


def test_a_head_whose_body_is_late_is_sent_at_the_next_loop_iteration() -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        transport = FakeTransport()
        coalescer = _HeadCoalescer(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        coalescer.write(HEAD)
        before = list(transport.writes)
        await asyncio.sleep(0)
        coalescer.write(b"event")
        return before, transport.writes

    before, after = asyncio.run(run())
    assert before == []
    assert after == [HEAD, b"event"]


def test_close_sends_a_held_head_first() -> None:
    async def run() -> FakeTransport:
        transport = FakeTransport()
        coalescer = _HeadCoalescer(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        coalescer.write(HEAD)
        coalescer.close()
        await asyncio.sleep(0)
        return transport

    transport = asyncio.run(run())
    assert transport.writes == [HEAD]
    assert transport.closed


def test_body_chunks_after_the_first_pass_straight_through() -> None:
    async def run() -> list[bytes]:
        transport = FakeTransport()
        coalescer = _HeadCoalescer(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        coalescer.write(HEAD)
        coalescer.write(b"a")
        coalescer.write(b"b")
        return transport.writes

    assert asyncio.run(run()) == [HEAD + b"a", b"b"]
