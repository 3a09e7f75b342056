"""The gateway: the ASGI entry point every request passes through (or its direct answer)."""

from __future__ import annotations

import functools
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from edgeproxy.accesslog import AccessLog
from edgeproxy.actions import Action
from edgeproxy.context import RequestContext
from edgeproxy.direct import DirectReply, Tasks, resumed
from edgeproxy.exceptions import BadRequest, NotFound, RequestError, ResponseAborted, UpstreamError
from edgeproxy.metrics import Metrics
from edgeproxy.responses import deny_websocket, send_error
from edgeproxy.routing.paths import RequestPath, parse_path
from edgeproxy.routing.table import RouteMatch
from edgeproxy.runtime import Runtime
from edgeproxy.sites.hosting import HostMatch
from edgeproxy.types import DISCONNECT_HOOKS, ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

logger = logging.getLogger("edgeproxy.gateway")

INTERNAL_PREFIX = b"/_edge/"
_DIRECT_METHODS = frozenset({"GET", "HEAD"})
_BODY_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


def request_host(scope: Scope) -> str:
    host: bytes | None = None
    count = 0
    # A loop, not a comprehension: this runs for every request.
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
            count += 1
    if count != 1 or host is None:
        raise BadRequest(f"a request needs exactly one Host header (got {count})")
    return host.decode("latin-1")


class RequestIds:
    """Request IDs unique across restarts and workers: a random prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):08x}"


class Gateway:
    """Routes each request to its route's action, or to the internal `/_edge/` app."""

    def __init__(
        self,
        runtime: Callable[[], Runtime],
        internal: ASGIApp,
        metrics: Metrics,
        access_log: AccessLog | None,
    ) -> None:
        self.runtime = runtime
        self.internal = internal
        self.metrics = metrics
        self.access_log = access_log
        self.request_ids = RequestIds()

    @staticmethod
    def _observe_websocket(send: Send, ctx: RequestContext) -> Send:
        """Note the handshake's outcome in `ctx` (the proxy sends accept itself)."""

        async def observed(message: Message) -> None:
            if message["type"] == "websocket.accept":
                ctx.status = 101
            await send(message)

        return observed

    def _context(self, scope: Scope) -> RequestContext:
        client = scope.get("client")
        ctx = RequestContext(
            host="", client_ip=client[0] if client else "", scheme=scope.get("scheme", "http")
        )
        ctx.request_id = self.request_ids.next()
        return ctx

    def _resolve(
        self, scope: Scope, raw_path: bytes, runtime: Runtime, ctx: RequestContext
    ) -> tuple[RequestPath, HostMatch | RouteMatch]:
        """Where the request goes: a site's deployment by host, or a route (sets ctx.route)."""
        ctx.host = request_host(scope)
        peer = ctx.client_ip
        if runtime.trusted.trusts(peer):
            forwarded = [v for n, v in scope["headers"] if n == b"x-forwarded-for"]
            ctx.client_ip = runtime.trusted.client_ip(peer, forwarded)
        path = parse_path(raw_path)
        if runtime.hosting is not None:
            site = runtime.hosting.match_host(ctx.host)
            if site is not None:
                ctx.route = f"site:{site.site}"
                return path, site
        match = runtime.table.match(ctx.host, path, scope.get("method", "GET"))
        if match is None:
            raise NotFound(f"no route for {ctx.host}{path.normalized}")
        ctx.route = match.route.name
        return path, match

    def direct(self, cycle: RequestResponseCycle, tasks: Tasks) -> bool:
        """Answer a GET or HEAD without a body from callbacks, if its action can
        (`edgeproxy.direct`); False, with nothing done, leaves it to the ASGI path."""
        scope = cast(Scope, cycle.scope)
        if scope["method"] not in _DIRECT_METHODS:
            return False
        for name, _ in scope["headers"]:
            if name in _BODY_FRAMING:
                return False
        raw_path: bytes = scope["raw_path"]
        if raw_path.startswith(INTERNAL_PREFIX) or raw_path == INTERNAL_PREFIX[:-1]:
            return False
        runtime = self.runtime()
        started = time.perf_counter()
        ctx = self._context(scope)
        try:
            path, target = self._resolve(scope, raw_path, runtime, ctx)
            reply = DirectReply(cycle, tasks, ctx, started, self.finish)
            if isinstance(target, HostMatch):
                assert runtime.hosting is not None
                if runtime.hosting.direct(scope, target, path.normalized, ctx, reply):
                    return True
            else:
                begin = getattr(target.route.payload, "direct", None)
                if begin is not None and begin(scope, target, path, ctx, reply):
                    return True
        except RequestError:
            return False
        # Not answerable from callbacks (a function, a cache miss...): the ASGI path takes
        # the request as resolved here rather than routing it again.
        reply.hand_over(functools.partial(self._dispatch, runtime, path, target, ctx))
        return True

    @staticmethod
    async def _dispatch(
        runtime: Runtime,
        path: RequestPath,
        target: HostMatch | RouteMatch,
        ctx: RequestContext,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Serve a resolved request: by the site its host names, or by its route's action."""
        if isinstance(target, HostMatch):
            assert runtime.hosting is not None
            await runtime.hosting.serve(scope, receive, send, target, path.normalized, ctx)
            return
        action: Action = target.route.payload  # type: ignore[assignment]
        if scope["type"] == "websocket":
            if not hasattr(action, "websocket"):
                raise BadRequest(f"route {ctx.route} does not accept WebSocket connections")
            await action.websocket(scope, receive, send, target, path, ctx)
        else:
            await action(scope, receive, send, target, path, ctx)

    def finish(self, scope: Scope, ctx: RequestContext, started: float) -> None:
        """Account for a request that is over: metrics, and the access log when it is on."""
        seconds = time.perf_counter() - started
        self.metrics.requests.observe(ctx.route, ctx.status, seconds)
        if self.access_log is not None:
            self.access_log.write(scope, ctx, seconds, ctx.request_id)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        if raw_path.startswith(INTERNAL_PREFIX) or raw_path == INTERNAL_PREFIX[:-1]:
            await self.internal(scope, receive, send)
            return
        handed_over = resumed(scope)
        if handed_over is not None:
            reply, resume = handed_over
            ctx, started = reply.ctx, reply.started
        else:
            started = time.perf_counter()
            ctx = self._context(scope)
        if scope["type"] == "websocket":
            send = self._observe_websocket(send, ctx)
        try:
            if handed_over is not None:
                await resume(scope, receive, send)
                return
            runtime = self.runtime()
            path, target = self._resolve(scope, raw_path, runtime, ctx)
            await self._dispatch(runtime, path, target, ctx, scope, receive, send)
        except RequestError as exc:
            ctx.error = exc.code
            if isinstance(exc, UpstreamError):
                self.metrics.upstream_errors.labels(ctx.route, exc.code).inc()
                logger.warning("%s %s: %s", ctx.route, exc.code, exc.detail)
            if ctx.status:
                # Actions set the status as they start the response; too late for an error page.
                raise ResponseAborted(exc.detail) from exc
            ctx.status = exc.status
            if scope["type"] == "websocket":
                await deny_websocket(scope, send, exc, ctx.request_id)
            else:
                await send_error(scope, send, exc, ctx.request_id)
        finally:
            # As DirectReply.finish: the hooks' owners would keep each request in a cycle.
            hooks = scope.get(DISCONNECT_HOOKS)
            if hooks:
                hooks.clear()
            self.finish(scope, ctx, started)
