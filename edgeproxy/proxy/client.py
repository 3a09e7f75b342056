"""A lean HTTP/1.1 client for forwarding: keep-alive pools on asyncio protocols, httptools parsing.

aiohttp's client spends most of a proxied request in its own machinery (bench/README.md
has the figures); a proxy needs far less of it. This client sends the request head it is
given (the caller has already removed hop-by-hop headers and framing), frames the body
itself, and hands back the status, the raw header list and the body as it arrives, with
flow control in both directions. WebSockets and health checks still use aiohttp.

Failures are raised as edgeproxy's own exceptions, mapped here once: refused or reset →
`UpstreamConnectError`, silence past a timeout → `UpstreamTimeout`, broken HTTP →
`UpstreamProtocolError`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import httptools

from edgeproxy.deadlines import Deadlines
from edgeproxy.exceptions import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from edgeproxy.proxy.upstreams import Target
from edgeproxy.types import Headers
from edgeproxy.writes import write_batch

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
_MAX_IDLE_PER_TARGET = 128
# An idle connection older than this is not reused. Servers close idle keep-alive
# connections on their own clock (Node.js and Apache after 5 s), and a request written just
# as the close arrives fails with nothing to retry it on when it has a body. Staying under
# the shortest common timeout trades a reconnect after a lull for never racing it.
_IDLE_REUSE_SECONDS = 4.0
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
_FIELD = b": ".join


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to an origin, carrying one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[str, int], where: str) -> None:
        self.loop = loop
        self.key = key
        self.where = where
        self.head_only = False
        self.idle_since = 0.0
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._pool: deque[UpstreamConnection] | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.body: deque[bytes] = deque()
        self.reading_paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        # Called after each event of an exchange nobody awaits (edgeproxy.direct): bytes
        # parsed, an error, the connection lost. It clears itself once it has decided.
        self.listener: Callable[[], None] | None = None
        self.start(head_only=False)

    def start(self, head_only: bool) -> None:
        """Prepare for the next exchange on this connection."""
        if head_only or self.head_only:
            # After a HEAD the parser still expects the body the headers announced.
            self.parser = httptools.HttpResponseParser(self)
        self.head_only = head_only
        self.status = 0
        self.headers: Headers = []
        self.head_ready = False
        self.until_close = False
        self.complete = False
        self.keep_alive = False
        self.received_any = False
        self.error: BaseException | None = None
        self.buffered = 0
        # The bytes the response's head arrived in, when it arrived whole in the exchange's
        # first read (as it nearly always does): `header_block` cuts the fields out of it.
        self._head_chunk: bytes | None = None
        self._interim = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._pool is not None:
            # Closed while idle: the origin timed the keep-alive out.
            self._pool.remove(self)
            self._pool = None
        if self.until_close and not self.complete:
            # A body without Content-Length or chunking ends when the connection does.
            self.complete = True
        elif not self.complete and self.error is None:
            self.error = UpstreamConnectError(f"connection to {self.where} was closed mid-exchange")
        self._wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)
        self._notify()

    def data_received(self, data: bytes) -> None:
        first = not self.received_any
        self.received_any = True
        try:
            self.parser.feed_data(data)
            if first and self.head_ready and not self._interim:
                self._head_chunk = data
        except httptools.HttpParserUpgrade:
            # A 101 to a request that asked for no upgrade: nothing to relay it to.
            self._fail(UpstreamProtocolError(f"{self.where} switched protocols unasked"))
        except httptools.HttpParserCallbackError as exc:
            # A callback refused the message (see on_headers_complete): say why.
            cause = exc.__context__ if isinstance(exc.__context__, UpstreamProtocolError) else None
            self._fail(cause or UpstreamProtocolError(f"{self.where} sent invalid HTTP: {exc}"))
        except httptools.HttpParserError as exc:
            if not self.complete:
                self._fail(UpstreamProtocolError(f"{self.where} sent invalid HTTP: {exc}"))
            else:
                # Bytes after a complete response (a body sent with a 304, say): the
                # response stands, but the connection's framing can't be trusted again.
                self.keep_alive = False
                self.close()
        self._notify()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            # Interim responses (103 Early Hints) are not relayed; wait for the final one.
            self.headers = []
            self._interim = True
            return
        if status > 599:
            # RFC 9110 §15: three digits, but only 1xx-5xx mean anything; nothing to relay.
            raise UpstreamProtocolError(f"{self.where} answered with status {status}")
        bodiless = self.head_only or status in (204, 304)
        if not bodiless:
            framing = [header for header in self.headers if header[0] in _FRAMING]
            codings = [value for name, value in framing if name == b"transfer-encoding"]
            if codings and b",".join(codings).strip().lower() != b"chunked":
                # Only chunked is relayed (as nginx): any other transfer coding would reach
                # the client as undeclared bytes of the body.
                raise UpstreamProtocolError(
                    f"{self.where} sent an unsupported Transfer-Encoding: "
                    f"{b', '.join(codings).decode('latin-1')!r}"
                )
            self.until_close = not framing
        self.status = status
        self.head_ready = True
        if bodiless:
            self.keep_alive = bool(self.parser.should_keep_alive())
            self.complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.head_only:
            return
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.head_ready:
            return
        if not self.head_only:
            self.keep_alive = bool(self.parser.should_keep_alive())
            self.complete = True
        self._wake()

    def header_block(self) -> bytes | None:
        """The response's header fields as they arrived, each line with its CRLF (no status
        line, no blank line), when the head came whole in one read; else None.

        The strict parser has accepted them: names are tokens and values hold no control
        characters but tab, just what a server may send on.
        """
        chunk = self._head_chunk
        if chunk is None:
            return None
        fields_start = chunk.find(b"\r\n") + 2
        fields_end = chunk.find(b"\r\n\r\n") + 2
        return chunk[fields_start:fields_end]

    # used by UpstreamClient and UpstreamResponse

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def wake_on_done(self, task: asyncio.Task[None]) -> None:
        self._wake()

    def _notify(self) -> None:
        if self.listener is not None:
            self.listener()

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()
        self.close()
        self._notify()

    def expire(self, timeout: float) -> None:
        """Fail the exchange for silence past `timeout` (a timer's callback)."""
        if not self.head_ready or not self.complete:
            self._fail(UpstreamTimeout(f"{self.where} sent nothing for {timeout:g}s"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def wait(self, silence: float) -> None:
        """Until something arrives (head, body, end or error), or `silence` seconds pass.

        A timer handle rather than `asyncio.timeout`: this runs per read on the hot path.
        """
        self.waiter = self.loop.create_future()
        timer = self.loop.call_later(silence, self._timed_out, self.waiter, silence)
        try:
            await self.waiter
        finally:
            timer.cancel()
            self.waiter = None

    def _timed_out(self, waiter: asyncio.Future[None], timeout: float) -> None:
        if not waiter.done():
            self.expire(timeout)

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    def take_body(self) -> bytes:
        chunk = self.body.popleft() if len(self.body) == 1 else b"".join(self.body)
        self.body.clear()
        self.buffered = 0
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return chunk


class UpstreamResponse:
    """The status and headers of an origin's response, and its body as it arrives."""

    __slots__ = ("_client", "_conn", "_read_timeout", "_writer", "headers", "status")

    def __init__(
        self,
        client: UpstreamClient,
        conn: UpstreamConnection,
        read_timeout: float,
        writer: asyncio.Task[None] | None,
    ) -> None:
        self._client = client
        self._conn = conn
        self._read_timeout = read_timeout
        self._writer = writer
        self.status = conn.status
        self.headers = conn.headers

    async def read(self) -> bytes:
        """The next part of the body as it arrives; b"" once it is complete."""
        conn = self._conn
        while True:
            if conn.body:
                return conn.take_body()
            if conn.complete:
                return b""
            if conn.error is not None:
                raise conn.error
            await conn.wait(self._read_timeout)

    @property
    def done(self) -> bool:
        """True when the whole body has been read."""
        return self._conn.complete and not self._conn.body

    def release(self) -> None:
        """Return the connection to its pool if the exchange ended cleanly, else close it."""
        writer_done = self._writer is None or self._writer.done()
        if not writer_done and self._writer is not None:
            self._writer.cancel()
        self._client.release(self._conn, reusable=writer_done)


class UpstreamClient:
    """Keep-alive connection pools per (host, port), shared by every route and reload."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], deque[UpstreamConnection]] = {}
        self._tls = ssl.create_default_context()
        # Read timeouts of `send_now` exchanges.
        self._expiry: Deadlines[UpstreamConnection] = Deadlines(UpstreamConnection.expire)

    def send_now(
        self,
        target: Target,
        method: str,
        path_qs: bytes,
        headers: Headers,
        read_timeout: float,
    ) -> UpstreamConnection | None:
        """Write a request without a body on an idle keep-alive connection, now; None, with
        nothing sent, when no connection is idle. The caller sets the connection's
        `listener`, called as the response arrives (it fails with UpstreamTimeout after
        `read_timeout` of silence); `settle` ends that, and `request(..., sent=conn)` then
        awaits the response instead."""
        conn = self._idle_connection(target)
        if conn is None:
            return None
        conn.start(method == "HEAD")
        head = _request_head(method, path_qs, headers, False, None)
        write_batch(conn.loop).write(conn.transport, head)  # type: ignore[arg-type]
        self._expiry.add(conn, conn.loop, read_timeout)
        return conn

    def settle(self, conn: UpstreamConnection) -> None:
        """Stop calling the listener of a `send_now` exchange, and its timeout."""
        conn.listener = None
        self._expiry.discard(conn)

    def release(self, conn: UpstreamConnection, reusable: bool = True) -> None:
        """Return the connection to its pool if its exchange ended cleanly, else close it."""
        self.settle(conn)
        clean = conn.complete and conn.keep_alive and conn.error is None and not conn.closed
        if clean and reusable:
            self._put_back(conn)
        else:
            conn.close()

    async def request(
        self,
        target: Target,
        method: str,
        path_qs: bytes,
        headers: Headers,
        body: AsyncIterator[bytes] | None,
        content_length: int | None,
        connect_timeout: float,
        read_timeout: float,
        sent: UpstreamConnection | None = None,
    ) -> UpstreamResponse:
        """Send one request and wait for the response head; with `sent`, the request was
        already written on that connection by `send_now`."""
        head = _request_head(method, path_qs, headers, body is not None, content_length)
        head_only = method == "HEAD"
        while True:
            writer = None
            if sent is not None:
                conn, sent = sent, None
                self.settle(conn)
            else:
                conn = self._idle_connection(target) or await self._connect(target, connect_timeout)
                conn.start(head_only)
                if body is None:
                    # With the other heads and responses of this loop iteration (writes.py).
                    write_batch(conn.loop).write(conn.transport, head)  # type: ignore[arg-type]
                else:
                    conn.transport.write(head)  # type: ignore[union-attr]
                    writer = asyncio.ensure_future(_write_body(conn, body, content_length is None))
                    # A failing body (too large, client gone) must wake the wait for the head.
                    writer.add_done_callback(conn.wake_on_done)
            try:
                while not conn.head_ready:
                    if conn.error is not None:
                        raise conn.error
                    if writer is not None and writer.done() and writer.exception() is not None:
                        raise writer.exception()  # type: ignore[misc]
                    await conn.wait(read_timeout)
            except UpstreamConnectError:
                conn.close()
                # A reused keep-alive connection the origin had just closed: try a fresh one,
                # as long as nothing of the request body was consumed.
                if conn.reused and not conn.received_any and body is None:
                    continue
                raise
            except BaseException:
                conn.close()
                if writer is not None:
                    writer.cancel()
                raise
            return UpstreamResponse(self, conn, read_timeout, writer)

    def _idle_connection(self, target: Target) -> UpstreamConnection | None:
        idle = self._idle.get((target.host, target.port))
        if not idle:
            return None
        # The connection's loop, not asyncio.get_running_loop(): before Python 3.12 that
        # makes a getpid() system call each time, measured at a tenth of a proxied GET.
        oldest_usable = idle[-1].loop.time() - _IDLE_REUSE_SECONDS
        while idle:
            conn = idle.pop()
            conn._pool = None
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if conn.idle_since < oldest_usable:
                # The newest is too old, so all are (the deque is in order of return).
                conn.close()
                for stale in idle:
                    stale._pool = None
                    stale.close()
                idle.clear()
                return None
            conn.reused = True
            return conn
        return None

    async def _connect(self, target: Target, limit: float) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        key = (target.host, target.port)
        tls: dict[str, Any] = {}
        if target.scheme == "https":
            tls = {"ssl": self._tls, "server_hostname": target.host}
        try:
            async with asyncio.timeout(limit):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(loop, key, target.url),
                    target.host,
                    target.port,
                    **tls,
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"cannot connect to {target.url} within {limit:g}s") from exc
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UpstreamConnectError(f"cannot connect to {target.url}: {reason}") from exc
        return conn

    def _put_back(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = deque()
        if len(idle) >= _MAX_IDLE_PER_TARGET:
            conn.close()
            return
        conn._pool = idle
        conn.idle_since = conn.loop.time()
        conn._head_chunk = None  # up to a whole read's bytes, not to be kept while idle
        idle.append(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in list(idle):
                conn._pool = None
                conn.close()
        self._idle.clear()


def _request_head(
    method: str, path_qs: bytes, headers: Headers, has_body: bool, content_length: int | None
) -> bytes:
    framing = b""
    if has_body:
        if content_length is None:
            framing = b"transfer-encoding: chunked\r\n"
        else:
            framing = b"content-length: %d\r\n" % content_length
    # Joined in C, no Python bytecode per header (the proxy's hot path).
    fields = b"\r\n".join(map(_FIELD, headers))
    return b"".join(
        (
            method.encode(),
            b" ",
            path_qs,
            b" HTTP/1.1\r\n",
            fields,
            b"\r\n" if fields else b"",
            framing,
            b"\r\n",
        )
    )


async def _write_body(conn: UpstreamConnection, body: AsyncIterator[bytes], chunked: bool) -> None:
    transport = conn.transport
    assert transport is not None
    async for chunk in body:
        if conn.closed:
            return
        if chunked:
            transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            transport.write(chunk)
        await conn.drain()
    if chunked and not conn.closed:
        transport.write(b"0\r\n\r\n")
