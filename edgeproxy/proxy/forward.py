"""Forwarding one HTTP request to an upstream pool, streaming both bodies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp

from edgeproxy.context import RequestContext
from edgeproxy.direct import DirectReply
from edgeproxy.exceptions import (
    NoHealthyUpstream,
    PayloadTooLarge,
    ResponseAborted,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from edgeproxy.proxy.client import UpstreamClient, UpstreamResponse
from edgeproxy.proxy.disconnect import DisconnectWatcher
from edgeproxy.proxy.exchange import DirectExchange
from edgeproxy.proxy.headers import (
    VIA_FIELD,
    HeaderRules,
    TrustedProxies,
    client_response_headers,
    relayed_block,
    upstream_request_headers,
)
from edgeproxy.proxy.upstreams import Target, UpstreamPool
from edgeproxy.proxy.websocket import HANDSHAKE, proxy_websocket
from edgeproxy.routing.paths import RequestPath
from edgeproxy.routing.rewrite import PathRewriter
from edgeproxy.routing.table import RouteMatch
from edgeproxy.types import Headers, Receive, Scope, Send

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class RequestBody:
    """The client's body as an async iterator, enforcing the size limit as it streams."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self.started = False
        self.complete = False
        self.error: Exception | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        received = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.error = ClientGone()
                raise self.error
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self._limit:
                self.error = PayloadTooLarge(f"request body is larger than {self._limit} bytes")
                raise self.error
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                self.complete = True
                return


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when it has none (chunked or no body)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value)
    return None


def has_body(scope: Scope, length: int | None) -> bool:
    if length is not None:
        return length > 0
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


class ProxyAction:
    """The `proxy:` action of one route."""

    def __init__(
        self,
        *,
        pool: UpstreamPool,
        rewriter: PathRewriter,
        request_rules: HeaderRules,
        response_rules: HeaderRules,
        preserve_host: bool,
        max_body_size: int,
        trusted: TrustedProxies,
        client: UpstreamClient,
        session: aiohttp.ClientSession,
    ) -> None:
        self.pool = pool
        self.rewriter = rewriter
        self.request_rules = request_rules
        self.response_rules = response_rules
        self.preserve_host = preserve_host
        self.max_body_size = max_body_size
        self.trusted = trusted
        self.client = client
        self.session = session

    def upstream_headers(
        self, scope: Scope, ctx: RequestContext, target: Target, prefix: str | None
    ) -> Headers:
        peer = scope["client"][0] if scope.get("client") else ""
        host = ctx.host.encode("latin-1")
        headers = upstream_request_headers(
            scope["headers"],
            peer_trusted=self.trusted.trusts(peer),
            peer=peer,
            scheme=ctx.scheme,
            host=host,
            prefix=prefix,
            upstream_host=host if self.preserve_host else target.netloc_bytes,
        )
        return self.request_rules.apply(headers)

    def _upstream_path(self, scope: Scope, match: RouteMatch, path: RequestPath) -> bytes:
        path_qs = self.rewriter.upstream_path(match, path).encode("latin-1")
        if scope["query_string"]:
            path_qs += b"?" + scope["query_string"]
        return path_qs

    def direct(
        self,
        scope: Scope,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
        reply: DirectReply,
    ) -> bool:
        """Forward a GET or HEAD without a body on an idle pooled connection and answer from
        callbacks (`edgeproxy.direct`); with no connection idle, hand it to the ASGI path."""
        try:
            target = self.pool.select(ctx.client_ip)
        except NoHealthyUpstream:
            return False
        path_qs = self._upstream_path(scope, match, path)
        headers = self.upstream_headers(
            scope, ctx, target, self.rewriter.stripped_prefix(match, path)
        )
        conn = self.client.send_now(
            target,
            scope["method"],
            target.base_path_bytes + path_qs,
            headers,
            self.pool.config.read_timeout,
        )
        if conn is not None:
            conn.listener = DirectExchange(self, scope, match, path, reply, target, conn).on_event
            return True

        # Connecting takes awaiting: the ASGI path does it, to the target chosen here.
        async def connect(scope: Scope, receive: Receive, send: Send) -> None:
            await self.forward(scope, receive, send, match, path, ctx, chosen=target)

        reply.hand_over(connect)
        return True

    def answer_direct(self, exchange: DirectExchange) -> None:
        """The whole response has arrived for a direct exchange: answer the client."""
        conn, target, ctx = exchange.conn, exchange.target, exchange.reply.ctx
        target.active -= 1
        ctx.upstream_seconds = time.perf_counter() - exchange.started
        self.pool.record_success(target)
        status = conn.status
        body = conn.take_body() if conn.body else b""
        ctx.bytes_sent = len(body)
        # Usually the origin's header block passes as it is; else field by field.
        fields = conn.header_block() if self.response_rules.empty else None
        if fields is not None:
            fields = relayed_block(conn.headers, fields)
        if fields is not None:
            self.client.release(conn)
            exchange.reply.relay(status, fields + VIA_FIELD, body)
            return
        headers = self._response_headers(conn.headers, exchange.match, exchange.path, ctx, target)
        self.client.release(conn)
        exchange.reply.respond(status, headers, body)

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
    ) -> None:
        await self.forward(scope, receive, send, match, path, ctx)

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
        sent: DirectExchange | None = None,
        chosen: Target | None = None,
    ) -> None:
        """Forward the request; with `sent`, go on with a direct exchange handed over; with
        `chosen`, try that target first (the direct path chose it before handing over)."""
        length = declared_length(scope)
        if length is not None and length > self.max_body_size:
            raise PayloadTooLarge(
                f"request body of {length} bytes is larger than the limit of {self.max_body_size}"
            )
        path_qs = self._upstream_path(scope, match, path)
        prefix = self.rewriter.stripped_prefix(match, path)
        method = scope["method"]
        body = RequestBody(receive, self.max_body_size) if has_body(scope, length) else None
        origin = self.pool.config

        watcher = DisconnectWatcher(scope, receive)
        if body is None:
            watcher.start()
        tried: list[Target] = []
        try:
            while True:
                if sent is not None:
                    # Written, and counted active, by the direct exchange.
                    target, conn, started = sent.target, sent.conn, sent.started
                    headers = self.upstream_headers(scope, ctx, target, prefix)
                    sent = None
                else:
                    target = chosen or self.pool.select(ctx.client_ip, tried)
                    chosen = None
                    headers = self.upstream_headers(scope, ctx, target, prefix)
                    ctx.upstream = target.url
                    started = time.perf_counter()
                    target.active += 1
                    conn = None
                try:
                    response = await self.client.request(
                        target,
                        method,
                        target.base_path_bytes + path_qs,
                        headers,
                        body.__aiter__() if body is not None else None,
                        length,
                        origin.connect_timeout,
                        origin.read_timeout,
                        sent=conn,
                    )
                except (UpstreamConnectError, UpstreamTimeout) as exc:
                    target.active -= 1
                    self.pool.record_failure(target)
                    tried.append(target)
                    retryable = (
                        isinstance(exc, UpstreamConnectError)
                        and method in IDEMPOTENT
                        and (body is None or not body.started)
                        and len(tried) <= origin.retries
                        and len(tried) < len(self.pool.targets)
                    )
                    if not retryable:
                        raise
                    continue
                except BaseException:
                    target.active -= 1
                    raise
                break
            watcher.start()
            try:
                self.pool.record_success(target)
                await self._relay(response, send, match, path, ctx, target)
            finally:
                target.active -= 1
                ctx.upstream_seconds = time.perf_counter() - started
                response.release()
        except ClientGone:
            ctx.status = 499
        except asyncio.CancelledError:
            if watcher.gone:
                # The client left: drop the upstream exchange quietly, as nginx logs 499.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                ctx.status = 499
                return
            raise
        finally:
            watcher.stop()

    async def websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
    ) -> None:
        upstream_path = self.rewriter.upstream_path(match, path)
        prefix = self.rewriter.stripped_prefix(match, path)
        target = self.pool.select(ctx.client_ip)
        url = target.url + upstream_path
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self.upstream_headers(scope, ctx, target, prefix)
            if name not in HANDSHAKE
        ]
        ctx.upstream = target.url
        target.active += 1
        try:
            await proxy_websocket(
                receive,
                send,
                session=self.session,
                url=url,
                headers=headers,
                subprotocols=list(scope.get("subprotocols", [])),
                close_timeout=self.pool.config.read_timeout,
                where=target.url,
            )
        except (UpstreamConnectError, UpstreamTimeout):
            self.pool.record_failure(target)
            raise
        finally:
            target.active -= 1

    def _response_headers(
        self,
        headers: Headers,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
        target: Target,
    ) -> Headers:
        """The origin's response headers for the client: hop-by-hop out, locations mapped
        back through the public host and prefix, the route's response rules applied."""

        def relocate(value: bytes) -> bytes:
            origin = target.origin.encode()
            rest = value
            absolute = value.startswith(origin) and value[len(origin) : len(origin) + 1] in (
                b"",
                b"/",
                b"?",
            )
            if absolute:
                rest = value[len(origin) :] or b"/"
            elif not value.startswith(b"/") or value.startswith(b"//"):
                return value
            base = target.base_path_bytes
            if base and (rest == base or rest.startswith(base + b"/")):
                rest = rest[len(base) :] or b"/"
            mapped = self.rewriter.public_path(rest.decode("latin-1"), match, path)
            rest = mapped.encode("latin-1") if mapped is not None else rest
            if absolute:
                return f"{ctx.scheme}://{ctx.host}".encode("latin-1") + rest
            return rest

        return self.response_rules.apply(client_response_headers(headers, relocate))

    async def _relay(
        self,
        response: UpstreamResponse,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
        target: Target,
    ) -> None:
        headers = self._response_headers(response.headers, match, path, ctx, target)
        await relay(response, headers, send, ctx)


async def relay(
    response: UpstreamResponse, headers: Headers, send: Send, ctx: RequestContext
) -> None:
    """Send the origin's status with `headers`, then stream its body to the client."""
    ctx.status = response.status
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    try:
        while True:
            chunk = await response.read()
            ctx.bytes_sent += len(chunk)
            # The last part goes out with the end of the body: one write, not two.
            if not chunk or response.done:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError as exc:
        raise ResponseAborted(f"{exc.detail} after {ctx.bytes_sent} bytes") from exc
    await send({"type": "http.response.body", "body": chunk, "more_body": False})


def _without_credentials(headers: Headers) -> Headers:
    """The client's headers minus what authenticates it to us (a third party gets none)."""
    kept: Headers = []
    for name, value in headers:
        if name == b"authorization":
            continue
        if name == b"cookie":
            crumbs = [c for c in value.split(b";") if not c.strip().startswith(b"edge_preview=")]
            if not crumbs:
                continue
            value = b";".join(crumbs).strip()
        kept.append((name, value))
    return kept


async def forward_to_url(
    client: UpstreamClient,
    scope: Scope,
    receive: Receive,
    send: Send,
    url: str,
    ctx: RequestContext,
    *,
    max_body_size: int,
    wait: float = 30.0,
) -> None:
    """Forward the request to an absolute URL (a `_redirects` proxy rule), no pool or retries."""
    parts = urlsplit(url)
    target = Target(f"{parts.scheme}://{parts.netloc}")
    path_qs = (parts.path or "/").encode("latin-1")
    if parts.query:
        path_qs += b"?" + parts.query.encode("latin-1")
    length = declared_length(scope)
    if length is not None and length > max_body_size:
        raise PayloadTooLarge(f"request body of {length} bytes is larger than {max_body_size}")
    body = RequestBody(receive, max_body_size) if has_body(scope, length) else None
    peer = scope["client"][0] if scope.get("client") else ""
    headers = upstream_request_headers(
        _without_credentials(scope["headers"]),
        peer_trusted=False,
        peer=peer,
        scheme=ctx.scheme,
        host=ctx.host.encode("latin-1"),
        prefix=None,
        upstream_host=target.netloc_bytes,
    )
    ctx.upstream = target.url
    response = await client.request(
        target,
        scope["method"],
        path_qs,
        headers,
        body.__aiter__() if body is not None else None,
        length,
        wait,
        wait,
    )
    try:
        await relay(response, client_response_headers(response.headers, None), send, ctx)
    finally:
        response.release()
