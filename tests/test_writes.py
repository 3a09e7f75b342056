"""Socket writes gathered over one loop iteration (edgeproxy.writes) and the server's
per-response transport built on them."""

from __future__ import annotations

import asyncio

from uvicorn.config import Config
from uvicorn.server import ServerState

from edgeproxy.server import EdgeHttpProtocol, _BatchedTransport
from edgeproxy.writes import WriteBatch, write_batch

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


def test_a_response_head_and_body_leave_in_one_write_at_the_end_of_the_iteration() -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        transport = FakeTransport()
        batched = _BatchedTransport(transport, WriteBatch(asyncio.get_running_loop()))  # type: ignore[arg-type]
        batched.write(HEAD)
        batched.write(b"hello")
        during = list(transport.writes)
        await asyncio.sleep(0)
        return during, transport.writes

    during, after = asyncio.run(run())
    assert during == []
    assert after == [HEAD + b"hello"]


def test_writes_to_several_transports_keep_each_ones_order() -> None:
    async def run() -> tuple[FakeTransport, FakeTransport]:
        batch = WriteBatch(asyncio.get_running_loop())
        a, b = FakeTransport(), FakeTransport()
        batch.write(a, b"a1")  # type: ignore[arg-type]
        batch.write(b, b"b1")  # type: ignore[arg-type]
        batch.write(a, b"a2")  # type: ignore[arg-type]
        await asyncio.sleep(0)
        return a, b

    a, b = asyncio.run(run())
    assert a.writes == [b"a1", b"a2"]
    assert b.writes == [b"b1"]


def test_a_late_body_follows_its_head_in_the_next_iteration() -> None:
    async def run() -> list[bytes]:
        transport = FakeTransport()
        batched = _BatchedTransport(transport, WriteBatch(asyncio.get_running_loop()))  # type: ignore[arg-type]
        batched.write(HEAD)
        await asyncio.sleep(0)
        batched.write(b"event")
        await asyncio.sleep(0)
        return transport.writes

    assert asyncio.run(run()) == [HEAD, b"event"]


def test_close_sends_what_is_queued_first() -> None:
    async def run() -> FakeTransport:
        transport = FakeTransport()
        batched = _BatchedTransport(transport, WriteBatch(asyncio.get_running_loop()))  # type: ignore[arg-type]
        batched.write(HEAD)
        batched.close()
        await asyncio.sleep(0)
        return transport

    transport = asyncio.run(run())
    assert transport.writes == [HEAD]
    assert transport.closed


def test_nothing_is_written_to_a_transport_closed_meanwhile() -> None:
    async def run() -> FakeTransport:
        transport = FakeTransport()
        batch = WriteBatch(asyncio.get_running_loop())
        batch.write(transport, b"late")  # type: ignore[arg-type]
        transport.closed = True
        await asyncio.sleep(0)
        return transport

    assert asyncio.run(run()).writes == []


def test_a_400_written_by_the_server_follows_responses_still_batched() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    class Transport(FakeTransport):
        def get_extra_info(self, name: str, default: object = None) -> object:
            return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    async def run() -> list[bytes]:
        loop = asyncio.get_running_loop()
        config = Config(app=app, http=EdgeHttpProtocol, lifespan="off")
        config.load()
        protocol = EdgeHttpProtocol(config=config, server_state=ServerState(), app_state={})
        transport = Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        write_batch(loop).write(transport, b"HTTP/1.1 200 OK\r\n\r\n")  # type: ignore[arg-type]
        protocol.send_400_response("bad")
        return transport.writes

    writes = asyncio.run(run())
    assert writes[0] == b"HTTP/1.1 200 OK\r\n\r\n"
    assert writes[1].startswith(b"HTTP/1.1 400 ")
