"""Running the gateway under uvicorn, with the HTTP/1 strictness a proxy needs.

uvicorn's httptools protocol already refuses Content-Length together with
Transfer-Encoding, folded headers and malformed chunking. This subclass adds what uvicorn
lacks for a server that faces the internet directly:

- a header-read timeout, so a client dribbling its headers (slowloris) is cut off;
- only origin-form request targets (`/path`): absolute-form (`http://other/`) would let a
  client pick the authority, and authority-form (CONNECT) is not a proxy's business here;
- exactly one `Host` header.

It also offers each request to the app's `direct(cycle, protocol)` before starting its ASGI
task, from a callback of its own: the gateway answers the ordinary GET from callbacks
(`edgeproxy.direct`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

import uvicorn
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from edgeproxy.eager import EagerTasks
from edgeproxy.exceptions import ResponseAborted
from edgeproxy.types import DISCONNECT_HOOKS
from edgeproxy.writes import WriteBatch, write_batch

logger = logging.getLogger("edgeproxy.server")

HEADER_TIMEOUT_ENV = "EDGEPROXY_HEADER_READ_TIMEOUT"
_RESPONSE_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"x-edge-error: header-timeout\r\ncontent-length: 41\r\nconnection: close\r\n\r\n"
    b"request headers were not received in time"
)


_LINGER_SECONDS = 2.0
# Loop callbacks between a request's parsing and its answer from callbacks: the gateway's
# `direct` (`_offer`), then the first step of an eager task (a function's).
_ANSWER_STAGES = 2


class RequestRejected(Exception):
    """Raised inside a parser callback; httptools turns it into a parser error."""


class EdgeHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = float(os.environ.get(HEADER_TIMEOUT_ENV, "10"))
        # loop.time() by which the current request's headers must be complete; 0 when not
        # waiting. A sweep checks all connections each interval instead of a timer per
        # request, which measured at a few percent of a request's cost.
        self.header_deadline = 0.0
        # loop.time() at which an idle keep-alive connection is closed; 0 while busy. Kept
        # for the same sweep instead of uvicorn's timer per response (~1.4 us to arm and
        # cancel a libuv timer).
        self.idle_deadline = 0.0
        self._host_count = 0
        self._rejection = ""
        self._batched: _BatchedTransport | None = None
        self._eager: EagerTasks | None = None  # the server's, once a request needed it

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.header_timeout > 0:
            self.header_deadline = self.loop.time() + self.header_timeout
        _Sweep.ensure(self)

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn's: its keep-alive timer is never armed here (`on_response_complete`).
        self.idle_deadline = 0.0

    def on_response_complete(self) -> None:
        # uvicorn's, but the keep-alive timeout becomes `idle_deadline`.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self.idle_deadline = self.loop.time() + self.timeout_keep_alive

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio.Protocol allows a bool
        # The client closed its side. uvloop would close ours now, dropping an answer that
        # waits in the write batch or is being made from callbacks (`_start_asgi_task`): a
        # client that half-closes after its request (`nc -N`) would get nothing, and be
        # logged as answered. What is written goes now; while a request is in progress the
        # close waits for the stages queued before it and sends what they wrote, then the
        # connection closes as uvloop would have (a request still waiting sees its client
        # gone).
        write_batch(self.loop).flush()
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return None
        self.loop.call_soon(self._close_after_stages, _ANSWER_STAGES)
        return True

    def _close_after_stages(self, stages: int) -> None:
        if stages:
            self.loop.call_soon(self._close_after_stages, stages - 1)
            return
        write_batch(self.loop).flush()
        self.transport.close()
        # uvloop reports the loss a callback later; an answer made meanwhile would go into
        # a closed transport and be logged as sent. The request learns of it now.
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
            _client_left(cycle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.header_deadline = 0.0
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            _client_left(cycle)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[DISCONNECT_HOOKS] = []  # type: ignore[literal-required]
        self._host_count = 0
        # A request pipelined behind one answered at once (edgeproxy.direct) begins after
        # that answer made the connection idle.
        self.idle_deadline = 0.0
        if not self.header_deadline and self.header_timeout > 0:
            self.header_deadline = self.loop.time() + self.header_timeout

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's, counting Host headers on the way.
        name = name.lower()
        if name == b"host":
            self._host_count += 1
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.header_deadline = 0.0
        if not self.url.startswith(b"/"):
            self._rejection = (
                "request target must be a path starting with '/' (absolute-form refused)"
            )
            raise RequestRejected(self._rejection)
        if self._host_count != 1:
            self._rejection = f"a request needs exactly one Host header (got {self._host_count})"
            raise RequestRejected(self._rejection)
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        if cycle.transport is self.transport:
            if self._batched is None:
                self._batched = _BatchedTransport(self.transport, write_batch(self.loop))
            cycle.transport = self._batched  # type: ignore[assignment]
        # A request the gateway can answer from callbacks gets no task (edgeproxy.direct).
        direct = getattr(app, "direct", None)
        if direct is None:
            super()._start_asgi_task(cycle, app)
        else:
            # Offered from a callback of its own, soon, not from the parser's callback we are
            # in: the loop then parses all the requests that arrived in one iteration, then
            # answers them one after the other, and each stage's code and data stay in the
            # CPU's caches. Answered inside the parser's callback, a static file measured
            # about a fifth slower (bench/README.md).
            self.loop.call_soon(self._offer, direct, cycle, app)

    def _offer(
        self,
        direct: Callable[[RequestResponseCycle, EdgeHttpProtocol], bool],
        cycle: RequestResponseCycle,
        app: ASGI3Application,
    ) -> None:
        # A client gone meanwhile (its close may be known only to the transport yet): the
        # ASGI path accounts for it as for any request.
        if cycle.disconnected or cycle.transport.is_closing() or not direct(cycle, self):
            super()._start_asgi_task(cycle, app)

    def start_asgi_task(self, cycle: RequestResponseCycle) -> None:
        """Run `cycle` in an ASGI task of the server's app after all: a direct answer handed
        it over."""
        super()._start_asgi_task(cycle, self.app)

    def run_eagerly(
        self, coro: Coroutine[Any, Any, Any], failed: Callable[[BaseException], None]
    ) -> None:
        """Run `coro` as a task, but with its first step run before it needs a task of its
        own (`edgeproxy.eager`): what answers at once gets none. What it raises goes to
        `failed`."""
        eager = self._eager
        if eager is None:
            eager = getattr(self.server_state, "edge_eager", None)
            if eager is None:
                eager = EagerTasks(self.loop, self.tasks)
                self.server_state.edge_eager = eager  # type: ignore[attr-defined]
            self._eager = eager
        eager.start(coro, failed)

    def send_400_response(self, msg: str) -> None:
        # uvicorn writes this straight to the socket: whatever earlier (pipelined) response
        # still waits in the write batch must go first.
        write_batch(self.loop).flush()
        super().send_400_response(self._rejection or msg)

    def header_timed_out(self) -> None:
        self.header_deadline = 0.0
        if self.transport is not None and not self.transport.is_closing():
            logger.info("closing connection from %s: headers not received in time", self.client)
            self.transport.write(_RESPONSE_408)
            # Lingering close, as nginx does: closing with the client's bytes still unread
            # sends a reset that can destroy the 408 before the client reads it. Stop
            # writing, ignore what else arrives, and close a moment later.
            self.transport.write_eof()
            self.header_timeout = 0.0
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)


def _client_left(cycle: RequestResponseCycle) -> None:
    """Call the request's disconnect hooks, once: they are taken off the list first (a
    hook may also end the request, which clears it)."""
    hooks: list[Callable[[], None]] = cycle.scope.get(DISCONNECT_HOOKS, [])  # type: ignore[assignment]
    called = tuple(hooks)
    hooks.clear()
    for hook in called:
        hook()


class _BatchedTransport:
    """The response transport as one request's cycle sees it: writes go to the loop's
    write batch (`edgeproxy.writes`), so a response's head and first body chunk leave in
    one send, and the responses of one loop iteration leave together at its end."""

    __slots__ = ("batch", "transport")

    def __init__(self, transport: asyncio.Transport, batch: WriteBatch) -> None:
        self.transport = transport
        self.batch = batch

    def write(self, data: bytes) -> None:
        self.batch.write(self.transport, data)

    def close(self) -> None:
        self.batch.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class _Sweep:
    """Closes connections whose request headers are overdue or whose keep-alive idle time
    is up; one per server."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, connections: set[Any], interval: float
    ) -> None:
        self.loop = loop
        self.connections = connections
        self.interval = interval
        self.loop.call_later(interval, self.sweep)

    @classmethod
    def ensure(cls, protocol: EdgeHttpProtocol) -> None:
        state = protocol.server_state
        if getattr(state, "edge_sweep", None) is None:
            timeouts = [protocol.header_timeout, protocol.timeout_keep_alive]
            interval = min(0.5, *(timeout / 4 for timeout in timeouts if timeout > 0))
            state.edge_sweep = cls(protocol.loop, protocol.connections, interval)  # type: ignore[attr-defined]

    def sweep(self) -> None:
        now = self.loop.time()
        for protocol in list(self.connections):
            deadline = getattr(protocol, "header_deadline", 0.0)
            if deadline and now >= deadline:
                protocol.header_timed_out()
            idle = getattr(protocol, "idle_deadline", 0.0)
            if idle and now >= idle:
                protocol.idle_deadline = 0.0
                protocol.timeout_keep_alive_handler()
        self.loop.call_later(self.interval, self.sweep)


def run(
    *,
    host: str,
    port: int,
    workers: int,
    keep_alive: float,
    shutdown_timeout: float,
    header_timeout: float,
) -> None:
    """Serve `edgeproxy.app:app_from_env` until SIGINT/SIGTERM, draining in-flight requests."""
    os.environ[HEADER_TIMEOUT_ENV] = str(header_timeout)
    uvicorn.run(
        "edgeproxy.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=EdgeHttpProtocol,
        ws="websockets-sansio",
        loop="uvloop",
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        # Proxied responses keep the origin's Date; the gateway dates its own (responses.py).
        date_header=False,
        access_log=False,
        timeout_keep_alive=int(keep_alive) or 1,
        timeout_graceful_shutdown=int(shutdown_timeout) or 1,
        log_level="info",
    )


class AbortedResponseFilter(logging.Filter):
    """Logs an origin failure mid-response as one line instead of uvicorn's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ResponseAborted):
            record.msg = "response aborted: %s"
            record.args = (record.exc_info[1],)
            record.exc_info = None
            record.exc_text = None
        return True
