"""The gateway: the pure-ASGI entry point every request passes through."""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable

from edgeproxy.accesslog import AccessLog
from edgeproxy.actions import Action
from edgeproxy.context import RequestContext
from edgeproxy.exceptions import BadRequest, NotFound, RequestError, ResponseAborted, UpstreamError
from edgeproxy.metrics import Metrics
from edgeproxy.responses import deny_websocket, send_error
from edgeproxy.routing.paths import parse_path
from edgeproxy.runtime import Runtime
from edgeproxy.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("edgeproxy.gateway")

INTERNAL_PREFIX = b"/_edge/"


def request_host(scope: Scope) -> str:
    hosts = [value for name, value in scope["headers"] if name == b"host"]
    if len(hosts) != 1:
        raise BadRequest(f"a request needs exactly one Host header (got {len(hosts)})")
    host: bytes = hosts[0]
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        if raw_path.startswith(INTERNAL_PREFIX) or raw_path == INTERNAL_PREFIX[:-1]:
            await self.internal(scope, receive, send)
            return
        runtime = self.runtime()
        started = time.perf_counter()
        client = scope.get("client")
        peer = client[0] if client else ""
        ctx = RequestContext(host="", client_ip=peer, scheme=scope.get("scheme", "http"))
        request_id = ctx.request_id = self.request_ids.next()
        if scope["type"] == "websocket":
            send = self._observe_websocket(send, ctx)
        try:
            ctx.host = request_host(scope)
            if runtime.trusted.trusts(peer):
                forwarded = [v for n, v in scope["headers"] if n == b"x-forwarded-for"]
                ctx.client_ip = runtime.trusted.client_ip(peer, forwarded)
            path = parse_path(raw_path)
            if runtime.hosting is not None:
                site = runtime.hosting.match_host(ctx.host)
                if site is not None:
                    ctx.route = f"site:{site.site}"
                    await runtime.hosting.serve(scope, receive, send, site, path.normalized, ctx)
                    return
            match = runtime.table.match(ctx.host, path, scope.get("method", "GET"))
            if match is None:
                raise NotFound(f"no route for {ctx.host}{path.normalized}")
            ctx.route = match.route.name
            action: Action = match.route.payload  # type: ignore[assignment]
            if scope["type"] == "websocket":
                if not hasattr(action, "websocket"):
                    raise BadRequest(f"route {ctx.route} does not accept WebSocket connections")
                await action.websocket(scope, receive, send, match, path, ctx)
            else:
                await action(scope, receive, send, match, path, ctx)
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
                await deny_websocket(scope, send, exc, request_id)
            else:
                await send_error(scope, send, exc, request_id)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe(ctx.route, ctx.status, seconds)
            if self.access_log is not None:
                self.access_log.write(scope, ctx, seconds, request_id)
