"""The forwarding client against scripted origins: raw bytes over loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from edgeproxy.exceptions import (
    PayloadTooLarge,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from edgeproxy.proxy import client as client_module
from edgeproxy.proxy.client import UpstreamClient
from edgeproxy.proxy.upstreams import Target

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(script: Script) -> tuple[asyncio.Server, Target]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await script(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, Target(f"http://127.0.0.1:{port}")


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def fetch(
    client: UpstreamClient,
    target: Target,
    method: str = "GET",
    body: AsyncIterator[bytes] | None = None,
    length: int | None = None,
    read_timeout: float = 5.0,
) -> tuple[int, dict[bytes, bytes], bytes]:
    response = await client.request(
        target, method, b"/x?y=1", [(b"host", b"o")], body, length, 2.0, read_timeout
    )
    chunks = []
    while chunk := await response.read():
        chunks.append(chunk)
    response.release()
    return response.status, dict(response.headers), b"".join(chunks)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


def test_request_head_and_keep_alive_reuse() -> None:
    heads: list[bytes] = []
    connections = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                heads.append(await read_head(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok")

    async def main() -> None:
        server, target = await serve(script)
        client = UpstreamClient()
        for _ in range(3):
            assert await fetch(client, target) == (
                200,
                {b"content-length": b"2", b"x-a": b"1"},
                b"ok",
            )
        client.close()
        server.close()

    run(main())
    assert heads[0] == b"GET /x?y=1 HTTP/1.1\r\nhost: o\r\n\r\n"
    assert connections == 1


@pytest.mark.parametrize(
    ("response", "method", "expected_body"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", b"", id="head-has-no-body"
        ),
        pytest.param(
            b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", "GET", b"", id="304-has-no-body"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            "GET",
            b"abcde",
            id="chunked-body",
        ),
        pytest.param(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
            "GET",
            b"z",
            id="interim-response-skipped",
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\n\r\nuntil the end", "GET", b"until the end", id="body-until-close"
        ),
    ],
)
def test_response_framing(response: bytes, method: str, expected_body: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(response)
        await writer.drain()
        if b"Content-Length" not in response and b"chunked" not in response and method != "HEAD":
            writer.close()

    async def main() -> None:
        server, target = await serve(script)
        client = UpstreamClient()
        _, _, body = await fetch(client, target, method)
        assert body == expected_body
        client.close()
        server.close()

    run(main())


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        pytest.param(6, b"content-length: 6\r\n\r\nabcdef", id="declared-length"),
        pytest.param(
            None,
            b"transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
            id="chunked",
        ),
    ],
)
def test_request_body_framing(length: int | None, expected: bytes) -> None:
    received = bytearray()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await read_head(reader))
        received.extend(await reader.read(len(expected)))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    async def main() -> None:
        server, target = await serve(script)
        client = UpstreamClient()
        await fetch(client, target, "POST", chunks(b"abc", b"def"), length)
        client.close()
        server.close()

    run(main())
    assert bytes(received).endswith(expected)


def test_connection_idle_past_the_reuse_limit_is_not_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An origin closing idle connections on its own clock races a request written on one;
    # a request with a body has nothing to retry on, so old idle connections are dropped.
    monkeypatch.setattr(client_module, "_IDLE_REUSE_SECONDS", 0.05)
    connections = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await read_head(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
            await writer.drain()

    async def main() -> None:
        server, target = await serve(script)
        client = UpstreamClient()
        await fetch(client, target)
        await fetch(client, target)
        assert connections == 1
        await asyncio.sleep(0.1)
        await fetch(client, target)
        assert connections == 2
        client.close()
        server.close()

    run(main())


def test_bytes_after_a_complete_response_retire_the_connection() -> None:
    # A 304 framed as chunked with a terminating chunk: the response ends at its head, and
    # what follows would be read as the start of the next response on that connection.
    connections = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_head(reader)
        if connections == 1:
            writer.write(
                b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()  # hold the connection open until the client closes it

    async def main() -> None:
        server, target = await serve(script)
        client = UpstreamClient()
        assert (await fetch(client, target))[0] == 304
        await asyncio.sleep(0.05)
        assert (await fetch(client, target))[:3:2] == (200, b"ok")
        assert connections == 2
        client.close()
        server.close()

    run(main())


def test_stale_keep_alive_connection_is_replaced() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        # Answer once, then drop the connection as an origin's keep-alive timeout would.
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        await writer.drain()
        writer.close()

    async def main() -> None:
        server, target = await serve(script)
        client = UpstreamClient()
        assert (await fetch(client, target))[2] == b"1"
        await asyncio.sleep(0.05)
        assert (await fetch(client, target))[2] == b"1"
        client.close()
        server.close()

    run(main())


@pytest.mark.parametrize(
    ("response", "error"),
    [
        pytest.param(None, UpstreamTimeout, id="silence-is-timeout"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            UpstreamConnectError,
            id="truncated-body",
        ),
        pytest.param(b"NOT HTTP AT ALL\r\n\r\n", UpstreamProtocolError, id="garbage"),
        # A coding other than chunked would reach the client as undeclared body bytes.
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            UpstreamProtocolError,
            id="unsupported-transfer-coding",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            UpstreamProtocolError,
            id="coding-under-chunked",
        ),
    ],
)
def test_failures_map_to_edge_errors(response: bytes | None, error: type[Exception]) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        if response is None:
            await asyncio.sleep(5)
            return
        writer.write(response)
        await writer.drain()
        writer.close()

    async def main() -> None:
        server, target = await serve(script)
        client = UpstreamClient()
        with pytest.raises(error):
            await fetch(client, target, read_timeout=0.3)
        client.close()
        server.close()

    run(main())


def test_connection_refused() -> None:
    async def main() -> None:
        server, target = await serve(read_head)  # type: ignore[arg-type]
        server.close()
        await server.wait_closed()
        with pytest.raises(UpstreamConnectError, match="cannot connect"):
            await fetch(UpstreamClient(), target)

    run(main())


def test_body_error_surfaces_instead_of_waiting() -> None:
    async def too_large() -> AsyncIterator[bytes]:
        yield b"a"
        raise PayloadTooLarge("too big")

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.sleep(5)

    async def main() -> None:
        server, target = await serve(script)
        with pytest.raises(PayloadTooLarge):
            await fetch(UpstreamClient(), target, "POST", too_large(), None, read_timeout=10)
        server.close()

    run(main())


def _fed(*reads: bytes) -> client_module.UpstreamConnection:
    conn = client_module.UpstreamConnection(asyncio.new_event_loop(), ("o", 80), "o:80")
    conn.loop.close()
    for data in reads:
        conn.data_received(data)
    return conn


FIELDS = b"Server: x\r\nContent-Length: 2\r\nX-Case:  MiXeD\r\n"


def test_the_header_block_is_the_fields_as_they_arrived() -> None:
    conn = _fed(b"HTTP/1.1 200 OK\r\n" + FIELDS + b"\r\nok")
    assert conn.complete
    assert conn.status == 200
    assert conn.header_block() == FIELDS
    assert _fed(b"HTTP/1.1 204 No Content\r\n\r\n").header_block() == b""


def test_no_header_block_for_a_head_split_across_reads_or_after_an_interim_response() -> None:
    split = _fed(b"HTTP/1.1 200 OK\r\nServer: x\r\n", b"Content-Length: 2\r\n\r\nok")
    assert split.complete
    assert split.header_block() is None
    hinted = _fed(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n" + FIELDS + b"\r\nok"
    )
    assert hinted.status == 200
    assert hinted.header_block() is None
