"""The cache in front of a route's action: lookup, revalidation, stale serving, coalescing.

Wraps any action (proxy, site) as a shared cache per RFC 9111; the decisions themselves
(storable? fresh? which variant?) are made by `edgeproxy.cache.policy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edgeproxy.actions import pass_websocket
from edgeproxy.cache import policy
from edgeproxy.cache.directives import parse_cache_control, response_directives
from edgeproxy.cache.ranges import partial_response
from edgeproxy.cache.store import CacheStore, Entry
from edgeproxy.context import RequestContext
from edgeproxy.direct import DirectReply, wire_fields
from edgeproxy.exceptions import UpstreamError
from edgeproxy.memo import Memo
from edgeproxy.responses import send_bytes, send_response
from edgeproxy.routing.paths import RequestPath
from edgeproxy.routing.table import RouteMatch
from edgeproxy.types import DISCONNECT_HOOKS, Headers, Message, Receive, Scope, Send

Inner = Callable[[Scope, Receive, Send, RouteMatch, RequestPath, RequestContext], Awaitable[None]]

_CONDITIONAL = frozenset(
    {b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since", b"if-range"}
)
_COALESCE_WAIT = 10.0
_REQUEST_DIRECTIVES = frozenset({b"cache-control", b"pragma"})
_SERVABLE = frozenset({policy.Decision.FRESH, policy.Decision.STALE_OK})
# Request fields that can turn a stored 200 into a 304, 206 or 416.
_CONDITIONAL_OR_RANGE = frozenset({b"if-none-match", b"if-modified-since", b"range"})
# Fields a hit sets itself rather than send as stored.
_SET_PER_HIT = frozenset({b"age", b"cache-status", b"content-length"})
_NO_BODY = frozenset({204, 304})
_name = operator.itemgetter(0)


@dataclass(frozen=True)
class CacheSettings:
    default_ttl: float | None
    max_ttl: float | None
    stale_if_error: float
    query: Literal["keep", "sort", "ignore"]
    query_allow: frozenset[str]
    max_object_size: int
    cdn_header: bytes | None = b"cdn-cache-control"


class _Capture:
    """A `send` that records the response (and optionally forwards it to the client)."""

    def __init__(self, send: Send | None, limit: int) -> None:
        self.send = send
        self.limit = limit
        self.status = 0
        self.headers: Headers = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.oversized = False
        self.complete = False
        self.response_time = 0.0
        self.decorate: Callable[[int, Headers], Headers] | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
            self.response_time = time.time()
            # Always decorate: it also decides whether the response will be stored, which a
            # background refresh or a validation (no client to send to) needs as well.
            headers = self.decorate(self.status, self.headers) if self.decorate else self.headers
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            self.size += len(body)
            if not self.oversized:
                if self.size <= self.limit:
                    self.chunks.append(body)
                else:
                    self.oversized = True
                    self.chunks = []
            self.complete = not message.get("more_body", False)
        if self.send is not None:
            await self.send(message)

    @property
    def body(self) -> bytes | None:
        return b"".join(self.chunks) if self.complete and not self.oversized else None


class CachingAction:
    """A route action with a shared cache in front of it."""

    def __init__(
        self,
        inner: Inner,
        settings: CacheSettings,
        store: CacheStore,
        stats: CacheStats,
        tags: frozenset[str] = frozenset(),
    ) -> None:
        self.tags = tags
        self.inner = inner
        self.settings = settings
        self.store = store
        self.stats = stats
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._keys: Memo[tuple[str, str, bytes], str] = Memo()
        self._refreshing: set[str] = set()

    def key(self, scope: Scope, ctx: RequestContext) -> str:
        path_qs = scope.get("raw_path") or scope["path"].encode()
        if scope["query_string"]:
            path_qs += b"?" + scope["query_string"]
        # A pure function of these and the route's settings: popular URLs are keyed once.
        known = (ctx.scheme, ctx.host, path_qs)
        key = self._keys.get(known)
        if key is None:
            key = self._keys.remember(
                known,
                policy.cache_key(
                    "GET",
                    ctx.scheme,
                    ctx.host,
                    path_qs,
                    query=self.settings.query,
                    allow=self.settings.query_allow,
                ),
            )
        return key

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
    ) -> None:
        method = scope["method"]
        key = self.key(scope, ctx)
        if method not in ("GET", "HEAD"):
            capture = _Capture(send, 0)
            await self.inner(scope, receive, capture, match, path, ctx)
            if policy.invalidates(method, capture.status):
                self._invalidate(key, capture.headers, ctx)
            return
        request_headers = scope["headers"]
        entry, evaluation = self._lookup(key, request_headers)
        decision = evaluation.decision if evaluation is not None else policy.Decision.MISS
        if entry is not None and evaluation is not None:
            if decision in _SERVABLE:
                self.stats.hits += 1
                status = policy.cache_status(True, ttl=evaluation.ttl)
                await self._serve(scope, send, entry, ctx, status, evaluation.age)
                return
            if decision is policy.Decision.STALE_OK_WHILE_REVALIDATE:
                self.stats.stale += 1
                status = policy.cache_status(True, ttl=evaluation.ttl, detail="revalidating")
                await self._serve(scope, send, entry, ctx, status, evaluation.age)
                self._refresh_later(key, scope, match, path, ctx)
                return
            if decision in (policy.Decision.STALE_REVALIDATE, policy.Decision.MUST_VALIDATE):
                await self._validate(key, scope, receive, send, match, path, ctx, entry, evaluation)
                return
        if decision is policy.Decision.GATEWAY_TIMEOUT or (
            entry is None and _only_if_cached(request_headers)
        ):
            ctx.status = 504
            headers = [(b"cache-status", policy.cache_status(False, detail="only-if-cached"))]
            await send_bytes(send, 504, headers, b"")
            return
        fwd = evaluation.fwd if evaluation is not None and evaluation.fwd else "uri-miss"
        await self._miss(key, scope, receive, send, match, path, ctx, fwd)

    async def websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
    ) -> None:
        """WebSockets are never cached: they go to the wrapped action as they are."""
        await pass_websocket(self.inner, scope, receive, send, match, path, ctx)

    # lookup and serving

    def _variant(self, key: str, request_headers: Headers) -> Entry | None:
        """The first stored variant whose Vary values match this request (never `Vary: *`)."""
        for entry in self.store.variants(key):
            names = entry.vary_names
            if names is None or (names and policy.vary_key(names, request_headers) != entry.vary):
                continue
            return entry
        return None

    @staticmethod
    def _plain_age(entry: Entry, request_headers: Headers, now: float) -> float | None:
        """The entry's age when it may be used as it is, without re-parsing anything: fresh
        (RFC 9111 §4.2), no `no-cache`, no request directives. None otherwise."""
        if not entry.plain or any(n in _REQUEST_DIRECTIVES for n, _ in request_headers):
            return None
        age = entry.initial_age + (now - entry.response_time)
        return age if age < entry.lifetime else None

    def _lookup(
        self, key: str, request_headers: Headers
    ) -> tuple[Entry | None, policy.Evaluation | None]:
        """The stored variant matching this request and what may be done with it."""
        now = time.time()
        entry = self._variant(key, request_headers)
        if entry is None:
            return None, None
        age = self._plain_age(entry, request_headers, now)
        if age is not None:
            return entry, policy.Evaluation(
                policy.Decision.FRESH, age=age, ttl=entry.lifetime - age
            )
        evaluation = policy.evaluate(
            entry.headers,
            entry.request_time,
            entry.response_time,
            request_headers,
            now,
            status=entry.status,
            cdn_header=self.settings.cdn_header,
            default_ttl=self.settings.default_ttl,
            max_ttl=self.settings.max_ttl,
            stale_if_error=self.settings.stale_if_error or None,
        )
        return entry, evaluation

    async def _serve(
        self, scope: Scope, send: Send, entry: Entry, ctx: RequestContext, status: bytes, age: float
    ) -> None:
        await send_response(send, *self._hit(scope, entry, ctx, status, age))

    def _hit(
        self, scope: Scope, entry: Entry, ctx: RequestContext, status: bytes, age: float
    ) -> tuple[int, Headers, bytes]:
        """The response to send from a stored one: status, headers and body."""
        headers = [(n, v) for n, v in entry.headers if n not in (b"age", b"cache-status")]
        headers += [(b"age", b"%d" % age), (b"cache-status", status)]
        request = scope["headers"]
        if not any(name in _CONDITIONAL_OR_RANGE for name, _ in request):
            ctx.status = entry.status
            ctx.bytes_sent = len(entry.body)
            return entry.status, headers, entry.body
        if policy.client_not_modified(request, entry.headers):
            ctx.status = 304
            kept = [
                (n, v) for n, v in headers if n not in (b"content-length", b"transfer-encoding")
            ]
            return 304, kept, b""
        status_code, body = entry.status, entry.body
        if status_code == 200 and scope["method"] == "GET":
            partial = partial_response(scope["headers"], headers, body)
            if partial is not None:
                status_code, headers, body = partial.status, partial.headers, partial.body
        ctx.status = status_code
        ctx.bytes_sent = len(body)
        return status_code, headers, body

    def direct(
        self,
        scope: Scope,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
        reply: DirectReply,
    ) -> bool:
        """Answer a plainly fresh hit from callbacks (`edgeproxy.direct`); False for anything
        else (a miss, stale, request directives), which the ASGI path then handles."""
        request_headers = scope["headers"]
        entry = self._variant(self.key(scope, ctx), request_headers)
        if entry is None:
            return False
        age = self._plain_age(entry, request_headers, time.time())
        if age is None:
            return False
        self.stats.hits += 1
        status = policy.hit_status(entry.lifetime - age)
        if (
            entry.wire is not None
            and scope["method"] == "GET"
            and entry.status not in _NO_BODY
            and _CONDITIONAL_OR_RANGE.isdisjoint(map(_name, request_headers))
        ):
            # The usual hit: the stored block as it is, with this hit's own fields.
            body = entry.body
            ctx.bytes_sent = len(body)
            per_hit = b"age: %d\r\ncache-status: %b\r\ncontent-length: %d\r\n" % (
                age,
                status,
                len(body),
            )
            reply.relay(entry.status, entry.wire + per_hit, body)
            return True
        code, headers, body = self._hit(scope, entry, ctx, status, age)
        reply.respond(code, headers, body)
        return True

    # fetching

    async def _miss(
        self,
        key: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
        fwd: str,
    ) -> None:
        waiting = self._inflight.get(key)
        if waiting is not None:
            self.stats.coalesced += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiting), _COALESCE_WAIT)
            entry, evaluation = self._lookup(key, scope["headers"])
            if (
                entry is not None
                and evaluation is not None
                and evaluation.decision is policy.Decision.FRESH
            ):
                self.stats.hits += 1
                status = policy.cache_status(True, ttl=evaluation.ttl, collapsed=True)
                await self._serve(scope, send, entry, ctx, status, evaluation.age)
                return
        leader = asyncio.get_running_loop().create_future()
        self._inflight.setdefault(key, leader)
        self.stats.misses += 1
        try:
            await self._fetch(key, scope, receive, send, match, path, ctx, fwd, leader)
        finally:
            if self._inflight.get(key) is leader:
                del self._inflight[key]
            if not leader.done():
                leader.set_result(None)

    async def _fetch(
        self,
        key: str,
        scope: Scope,
        receive: Receive,
        send: Send | None,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
        fwd: str,
        leader: asyncio.Future[None] | None = None,
    ) -> _Capture:
        capture = _Capture(send, self.settings.max_object_size)
        request_time = time.time()
        storable = False

        def decorate(status: int, headers: Headers) -> Headers:
            nonlocal storable
            storable = (
                scope["method"] == "GET"
                and policy.response_storable(
                    "GET", status, scope["headers"], headers, cdn_header=self.settings.cdn_header
                )
                and self._cookie_safe(headers)
            )
            if not storable and leader is not None and not leader.done():
                # Waiters must not wait for a response that will not be stored.
                leader.set_result(None)
            detail = policy.cache_status(False, fwd=fwd, stored=storable)
            return [*headers, (b"cache-status", detail)]

        capture.decorate = decorate
        await self.inner(scope, receive, capture, match, path, ctx)
        body = capture.body
        if storable and body is not None:
            names = policy.vary_names(capture.headers)
            if names is not None:
                entry = self._entry(
                    status=capture.status,
                    headers=capture.headers,
                    body=body,
                    request_time=request_time,
                    response_time=capture.response_time,
                    vary=policy.vary_key(names, scope["headers"]),
                    tags=_tags(capture.headers) | self.tags,
                )
                self.store.put(key, entry)
        return capture

    async def _validate(
        self,
        key: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
        entry: Entry,
        evaluation: policy.Evaluation,
    ) -> None:
        self.stats.revalidations += 1
        conditional = [(n, v) for n, v in scope["headers"] if n not in _CONDITIONAL]
        conditional += policy.conditional_headers(entry.headers)
        validating = {**scope, "method": "GET", "headers": conditional, DISCONNECT_HOOKS: []}
        fwd = evaluation.fwd or "stale"
        try:
            capture = await self._fetch(key, validating, receive, None, match, path, ctx, fwd)
        except UpstreamError:
            if not evaluation.serve_on_error:
                raise
            self.stats.stale += 1
            status = policy.cache_status(True, fwd=fwd, detail="origin-unreachable")
            await self._serve(scope, send, entry, ctx, status, evaluation.age)
            return
        if capture.status == 304:
            updated = self._entry(
                status=entry.status,
                headers=policy.updated_headers(entry.headers, capture.headers),
                body=entry.body,
                request_time=time.time(),
                response_time=capture.response_time,
                vary=entry.vary,
                tags=entry.tags,
            )
            self.store.replace(key, entry, updated)
            status = policy.cache_status(True, fwd=fwd, fwd_status=304, detail="revalidated")
            await self._serve(scope, send, updated, ctx, status, 0)
            return
        if capture.status >= 500 and evaluation.serve_on_error:
            self.stats.stale += 1
            status = policy.cache_status(
                True, fwd=fwd, fwd_status=capture.status, detail="origin-error"
            )
            await self._serve(scope, send, entry, ctx, status, evaluation.age)
            return
        # A new response replaced the stored one: send what was captured.
        assert capture.decorate is not None
        headers = capture.decorate(capture.status, capture.headers)
        ctx.status = capture.status
        body = capture.body or b""
        await send({"type": "http.response.start", "status": capture.status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": body if scope["method"] == "GET" else b""}
        )

    def _cookie_safe(self, headers: Headers) -> bool:
        """A `Set-Cookie` response is stored only when the origin says so explicitly.

        RFC 9111 lets a shared cache store it, but replaying one visitor's cookie (a
        session) to every later visitor is the classic cache leak; like Varnish, store it
        only with `public` or `s-maxage`.
        """
        if not any(name == b"set-cookie" for name, _ in headers):
            return True
        directives, _ = response_directives(headers, cdn_header=self.settings.cdn_header)
        return directives.public or directives.s_maxage is not None

    def _entry(
        self,
        *,
        status: int,
        headers: Headers,
        body: bytes,
        request_time: float,
        response_time: float,
        vary: tuple[tuple[str, str], ...],
        tags: frozenset[str],
    ) -> Entry:
        directives, _ = response_directives(headers, cdn_header=self.settings.cdn_header)
        return Entry(
            status=status,
            headers=headers,
            body=body,
            request_time=request_time,
            response_time=response_time,
            vary=vary,
            tags=tags,
            vary_names=policy.vary_names(headers),
            lifetime=policy.freshness_lifetime(
                headers,
                response_time,
                status=status,
                cdn_header=self.settings.cdn_header,
                default_ttl=self.settings.default_ttl,
                max_ttl=self.settings.max_ttl,
            ),
            initial_age=policy.current_age(headers, request_time, response_time, response_time),
            plain=not directives.no_cache,
            wire=wire_fields([header for header in headers if header[0] not in _SET_PER_HIT]),
        )

    def _refresh_later(
        self, key: str, scope: Scope, match: RouteMatch, path: RequestPath, ctx: RequestContext
    ) -> None:
        if key in self._refreshing:
            return
        self._refreshing.add(key)

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def refresh() -> None:
            try:
                quiet = RequestContext(host=ctx.host, client_ip=ctx.client_ip, scheme=ctx.scheme)
                fresh_scope = {**scope, "method": "GET", DISCONNECT_HOOKS: []}
                await self._fetch(key, fresh_scope, receive, None, match, path, quiet, "stale")
            except UpstreamError:
                pass
            finally:
                self._refreshing.discard(key)

        task = asyncio.ensure_future(refresh())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    def _invalidate(self, key: str, headers: Headers, ctx: RequestContext) -> None:
        """RFC 9111 §4.4: the target URI, and Location / Content-Location on the same origin."""
        self.store.purge(key)
        origin = f"{ctx.scheme}://{ctx.host}".encode("latin-1").lower()
        for name, value in headers:
            if name not in (b"location", b"content-location"):
                continue
            if value.lower().startswith(origin + b"/"):
                value = value[len(origin) :]
            if value.startswith(b"/") and not value.startswith(b"//"):
                self.store.purge(policy.cache_key("GET", ctx.scheme, ctx.host, value))


@dataclass(eq=False)  # hashable: the Prometheus registry keys collectors by identity
class CacheStats(Collector):
    """Cache counters, exported as Prometheus series when scraped."""

    store: CacheStore
    hits: int = 0
    misses: int = 0
    stale: int = 0
    revalidations: int = 0
    coalesced: int = 0

    def collect(self) -> Iterator[Metric]:
        counters = {
            "hits": (self.hits, "Requests answered from the cache."),
            "misses": (self.misses, "Requests the cache forwarded for lack of a stored response."),
            "stale": (
                self.stale,
                "Stale responses served (while revalidating or on origin error).",
            ),
            "revalidations": (self.revalidations, "Conditional requests sent to validate."),
            "coalesced": (self.coalesced, "Requests that waited for another's identical miss."),
            "evictions": (self.store.evictions, "Stored responses evicted to stay in bounds."),
        }
        for name, (value, text) in counters.items():
            yield CounterMetricFamily(f"edgeproxy_cache_{name}", text, value=value)
        yield GaugeMetricFamily(
            "edgeproxy_cache_bytes", "Bytes held by stored responses.", value=self.store.bytes
        )
        yield GaugeMetricFamily(
            "edgeproxy_cache_entries", "Stored responses.", value=len(self.store)
        )


_BACKGROUND: set[asyncio.Task[None]] = set()


def site_tag(site: str) -> str:
    """The tag of every cached response a site served, purged when the site publishes."""
    return f"site:{site}"


def cache_key_for_url(url: str) -> str:
    """The cache key of an absolute URL as a client would request it (for purging)."""
    parts = urlsplit(url)
    path_qs = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return policy.cache_key("GET", parts.scheme, parts.netloc, path_qs.encode())


def _only_if_cached(headers: Headers) -> bool:
    return parse_cache_control([v for n, v in headers if n == b"cache-control"]).only_if_cached


def _tags(headers: Headers) -> frozenset[str]:
    return frozenset(
        tag.strip()
        for n, v in headers
        if n == b"cache-tag"
        for tag in v.decode("latin-1").split(",")
        if tag.strip()
    )
