"""Answering a request from the server's own callbacks, without an ASGI task.

uvicorn runs every request as a task that calls the ASGI app, which then speaks in message
dicts; for a proxied GET that is a task, a dozen coroutine frames, an `asyncio.Event` and two
futures per request, measured at about a third of its cost (bench/README.md). A request that
needs nothing awaited but the origin's answer — a GET or HEAD without a body, on a route
whose action offers `direct` — is answered from callbacks instead: our protocol offers it
to the gateway before starting a task (`EdgeHttpProtocol._start_asgi_task`), the action
writes the request upstream and answers when the response has arrived in full.

Only the ordinary case is taken this way. Whatever is not ordinary — an origin failing or
timing out, a body still streaming, a client not reading — is handed over to the ASGI path
mid-exchange (`DirectReply.hand_over`): it resumes the same request, with the same context,
in a task, and owns every error page, retry and streaming rule as it does for any request.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Awaitable, Callable, Coroutine
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol, cast

from edgeproxy.context import RequestContext
from edgeproxy.responses import send_response
from edgeproxy.types import DISCONNECT_HOOKS, ASGIApp, Headers, Receive, Scope, Send

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

# Scope key: `(DirectReply, resume)` when a direct answer was handed over to the ASGI path.
RESUME = "edgeproxy.resume"

Resume = Callable[[Scope, Receive, Send], Awaitable[None]]

# As uvicorn validates what an app sends (httptools_impl.HEADER_RE / HEADER_VALUE_RE).
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
# Every byte but the controls uvicorn refuses in a value (tab is allowed).
_NOT_CONTROL = bytes(byte for byte in range(256) if byte == 9 or 32 <= byte != 127)
# Header names seen valid; names repeat from response to response.
_GOOD_NAMES: set[bytes] = set()
_GOOD_NAMES_LIMIT = 1024
_name = operator.itemgetter(0)
_FIELD = b": ".join
_NO_BODY = frozenset({204, 304})
_STATUS_LINES: dict[int, bytes] = {}


class Tasks(Protocol):
    """What the server offers a direct answer: the ASGI task of the server's app it did not
    start (yet), or an eager one of another app (`edgeproxy.eager`)."""

    def start_asgi_task(self, cycle: RequestResponseCycle) -> None: ...

    def run_eagerly(
        self, coro: Coroutine[Any, Any, Any], failed: Callable[[BaseException], None]
    ) -> None: ...


class DirectReply:
    """One request being answered outside an ASGI task."""

    __slots__ = ("_finish", "_tasks", "ctx", "cycle", "started")

    def __init__(
        self,
        cycle: RequestResponseCycle,
        tasks: Tasks,
        ctx: RequestContext,
        started: float,
        finish: Callable[[Scope, RequestContext, float], None],
    ) -> None:
        self.cycle = cycle
        self.ctx = ctx
        self.started = started
        self._tasks = tasks
        self._finish = finish

    @property
    def scope(self) -> Scope:
        return cast(Scope, self.cycle.scope)

    @property
    def writable(self) -> bool:
        """False when the client has gone or is not reading what we already wrote."""
        cycle = self.cycle
        return not cycle.disconnected and not cycle.flow.write_paused

    def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """Write the whole response now and account for the request. Headers uvicorn
        would refuse are handed over instead, to be refused there as any app's are."""
        if not write_response(self.cycle, status, headers, body):
            self.hand_over(functools.partial(_send_whole, status, headers, body))
            return
        self.ctx.status = status
        self.finish()

    def write(self, status: int, headers: Headers, body: bytes) -> bool:
        """Write a whole response at once from the app `run()` runs for this request
        (`write_response`). False, with nothing written, leaves it to uvicorn's `send`:
        a client already gone, a header name not in lowercase. Raises ValueError, with
        nothing written, for a header uvicorn would refuse."""
        cycle = self.cycle
        if cycle.response_started or cycle.disconnected:
            return False
        for name, _ in headers:
            if not name.islower():
                return False
        if not write_response(cycle, status, headers, body):
            raise ValueError("a response header no server may send")
        return True

    def done(self, status: int, sent: int) -> None:
        """The end of a request `run()` handed to another app: its status and the body
        bytes sent, then what `finish()` does."""
        ctx = self.ctx
        ctx.status = status
        ctx.bytes_sent += sent
        # As finish(), inline: one call fewer for every function request.
        scope: Scope = self.cycle.scope  # type: ignore[assignment]
        scope[DISCONNECT_HOOKS].clear()
        self._finish(scope, ctx, self.started)

    def relay(self, status: int, fields: bytes, body: bytes) -> None:
        """Write the whole response now from a header block already valid on the wire
        (`write_relayed`), and account for the request."""
        write_relayed(self.cycle, status, fields, body)
        self.ctx.status = status
        self.finish()

    def finish(self) -> None:
        """Metrics and access log, once the request is over (answered, or the client left)."""
        scope = self.scope
        # The hooks' owners refer back to this request: left in place, each request would
        # be a reference cycle for the garbage collector (measured at 6% of a proxied GET).
        scope[DISCONNECT_HOOKS].clear()
        self._finish(scope, self.ctx, self.started)

    def hand_over(self, resume: Resume) -> None:
        """Go on in an ASGI task: the gateway calls `resume(scope, receive, send)` there
        with this request's context, as if the request had taken that path from the start."""
        self.scope[RESUME] = (self, resume)
        self._tasks.start_asgi_task(self.cycle)

    def run(self, app: ASGIApp) -> None:
        """Go on with `app`, an ASGI app of its own rather than the gateway's, as a task
        whose first step runs at once (`edgeproxy.eager`): it owns the rest of the request,
        its error pages included, and calls `finish()` when it is over. What it raises is
        dealt with as uvicorn deals with an app's exception."""
        cycle = self.cycle
        # An ASGI app is a coroutine function (the runner's is).
        coro: Coroutine[Any, Any, None] = app(cycle.scope, cycle.receive, cycle.send)  # type: ignore[arg-type,assignment]
        self._tasks.run_eagerly(coro, self._failed)

    def _failed(self, exc: BaseException) -> None:
        """What uvicorn's `run_asgi` does with an app that raised: it is logged, and a 500
        is sent if nothing was yet, else the connection is closed."""
        cycle = self.cycle
        cycle.logger.error("Exception in ASGI application\n", exc_info=exc)
        if cycle.response_started:
            cycle.transport.close()
        elif not cycle.disconnected:
            cycle.keep_alive = False
            write_response(
                cycle,
                500,
                [(b"content-type", b"text/plain; charset=utf-8")],
                b"Internal Server Error",
            )


def write_response(cycle: RequestResponseCycle, status: int, headers: Headers, body: bytes) -> bool:
    """What uvicorn's `send` does for a start message and a final body message, in one write;
    False, with nothing written, for a header it would refuse. Header names are lowercase,
    as everything the gateway builds has them.

    The body is complete, so the response is framed by its length (any Content-Length the
    headers carry is replaced); a HEAD response and 204/304 keep their headers' own.
    """
    if cycle.default_headers:
        headers = [*cycle.default_headers, *headers]
    framed = status not in _NO_BODY and cycle.scope["method"] != "HEAD"
    if framed:
        headers = [header for header in headers if header[0] != b"content-length"]
    head = wire_fields(headers)
    if head is None:
        return False
    if b"connection: " in head and _says_close(headers):
        cycle.keep_alive = False
        close = b""
    else:
        close = b"" if cycle.keep_alive else b"connection: close\r\n"
    if framed:
        length = b"content-length: %d\r\n" % len(body)
        data = b"".join((_status_line(status), head, length, close, b"\r\n", body))
    else:
        data = b"".join((_status_line(status), head, close, b"\r\n"))
    _write(cycle, data)
    return True


def wire_fields(headers: Headers) -> bytes | None:
    """`headers` as lines on the wire, each with its CRLF; None when uvicorn would refuse
    one of them (a control character in a field, a name that is not a token)."""
    if not headers:
        return b""
    head = b"\r\n".join(map(_FIELD, headers)) + b"\r\n"
    # Of the control characters, only the CR LF ending each line: none inside a field.
    if head.translate(None, _NOT_CONTROL) != b"\r\n" * len(headers):
        return None
    if not _GOOD_NAMES.issuperset(map(_name, headers)) and not _valid_names(headers):
        return None
    return head


def write_relayed(cycle: RequestResponseCycle, status: int, fields: bytes, body: bytes) -> None:
    """`write_response` for a header block passed on as it is: CRLF-terminated lines that
    are valid on the wire and frame `body` themselves (an origin's, as our strict parser
    accepted them, with nothing hop-by-hop among them; a stored response's, checked once by
    `wire_fields`). Building and checking each field again measured at 2-3 us a request."""
    if cycle.default_headers:
        fields = (wire_fields(cycle.default_headers) or b"") + fields
    close = b"" if cycle.keep_alive else b"connection: close\r\n"
    _write(cycle, b"".join((_status_line(status), fields, close, b"\r\n", body)))


def _write(cycle: RequestResponseCycle, data: bytes) -> None:
    """Send a whole response, as uvicorn's `send` ends one."""
    cycle.response_started = True
    cycle.response_complete = True
    cycle.waiting_for_100_continue = False
    cycle.transport.write(data)
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()


def _valid_names(headers: Headers) -> bool:
    for name, _ in headers:
        if name not in _GOOD_NAMES:
            if not name or _BAD_NAME.search(name):
                return False
            if len(_GOOD_NAMES) < _GOOD_NAMES_LIMIT:
                _GOOD_NAMES.add(name)
    return True


def _says_close(headers: Headers) -> bool:
    return any(
        name == b"connection" and b"close" in [t.strip() for t in value.lower().split(b",")]
        for name, value in headers
    )


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line


async def _send_whole(
    status: int, headers: Headers, body: bytes, scope: Scope, receive: Receive, send: Send
) -> None:
    await send_response(send, status, headers, body)


def resumed(scope: Scope) -> tuple[DirectReply, Resume] | None:
    """The direct answer this ASGI call continues, if any (taken out of the scope)."""
    value: Any = scope.pop(RESUME, None)
    return value  # type: ignore[no-any-return]
