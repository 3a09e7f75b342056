"""Route actions by the name `rules.yaml` uses for them: `proxy`, `redirect`, `respond`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from edgeproxy.config.models import Route, ServerConfig
from edgeproxy.context import RequestContext
from edgeproxy.direct import DirectReply
from edgeproxy.exceptions import BadRequest
from edgeproxy.proxy.client import UpstreamClient
from edgeproxy.proxy.forward import ProxyAction
from edgeproxy.proxy.headers import HeaderRules, TrustedProxies
from edgeproxy.proxy.upstreams import UpstreamPool
from edgeproxy.responses import send_bytes
from edgeproxy.routing.paths import RequestPath
from edgeproxy.routing.rewrite import PathRewriter, Template, redirect_target
from edgeproxy.routing.table import RouteMatch
from edgeproxy.sites.hosting import HostMatch, SiteHosting
from edgeproxy.sites.store import PRODUCTION
from edgeproxy.types import Message, Receive, Scope, Send


class Action(Protocol):
    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
    ) -> None: ...


async def pass_websocket(
    inner: object,
    scope: Scope,
    receive: Receive,
    send: Send,
    match: RouteMatch,
    path: RequestPath,
    ctx: RequestContext,
) -> None:
    """A wrapping action's WebSocket (cache, handler): straight to the wrapped action, if
    that takes WebSockets at all."""
    upgrade = getattr(inner, "websocket", None)
    if upgrade is None:
        raise BadRequest(f"route {ctx.route} does not accept WebSocket connections")
    await upgrade(scope, receive, send, match, path, ctx)


@dataclass(frozen=True)
class BuildContext:
    """What an action may need beyond its route."""

    server: ServerConfig
    pools: Mapping[str, UpstreamPool]
    trusted: TrustedProxies
    client: UpstreamClient
    session: aiohttp.ClientSession
    hosting: SiteHosting


class RedirectAction:
    def __init__(self, route: Route) -> None:
        assert route.redirect is not None
        self.status = route.redirect.status
        self.target = Template(route.redirect.to)
        self.response_rules = HeaderRules(route.headers.response)

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
    ) -> None:
        location = redirect_target(self.target, match, scope["query_string"])
        headers = self.response_rules.apply([(b"location", location.encode("latin-1"))])
        ctx.status = self.status
        await send_bytes(send, self.status, headers, b"")


class RespondAction:
    def __init__(self, route: Route) -> None:
        assert route.respond is not None
        self.status = route.respond.status
        self.body = route.respond.body.encode()
        headers = [(b"content-type", route.respond.content_type.encode())]
        self.headers = HeaderRules(route.headers.response).apply(headers)

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
    ) -> None:
        ctx.status = self.status
        ctx.bytes_sent = len(self.body)
        # uvicorn drops the body of a HEAD response but keeps its Content-Length.
        await send_bytes(send, self.status, self.headers, self.body)


class SiteAction:
    """`site: NAME` on a route: the site's production deployment, mounted at the route's prefix."""

    def __init__(self, route: Route, hosting: SiteHosting) -> None:
        assert route.site is not None
        self.site = route.site
        self.hosting = hosting
        self.response_rules = HeaderRules(route.headers.response)
        self.production = HostMatch(self.site, PRODUCTION, preview=False)

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
    ) -> None:
        mounted = path.raw_segments[: match.prefix_length]
        prefix = ("/" + "/".join(s.decode("latin-1") for s in mounted)) if mounted else ""
        rest = "/" + "/".join(path.segments[match.prefix_length :])
        await self.hosting.serve(
            scope, receive, self._mounted_send(send, prefix.encode()), self.production, rest, ctx
        )

    def direct(
        self,
        scope: Scope,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
        reply: DirectReply,
    ) -> bool:
        """As the site's own host would be answered (`SiteHosting.direct`), when mounted at
        the root without response rules; False otherwise."""
        if match.prefix_length or not self.response_rules.empty:
            return False
        return self.hosting.direct(scope, self.production, path.normalized, ctx, reply)

    def _mounted_send(self, send: Send, prefix: bytes) -> Send:
        """Apply the route's response headers; keep the site's own redirects under the mount."""
        if not prefix and self.response_rules.empty:
            return send

        async def mounted(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, prefix + value)
                    if name == b"location"
                    and value.startswith(b"/")
                    and not value.startswith(b"//")
                    else (name, value)
                    for name, value in message.get("headers", [])
                ]
                message = {**message, "headers": self.response_rules.apply(headers)}
            await send(message)

        return mounted


def _proxy(route: Route, build: BuildContext) -> Action:
    assert route.proxy is not None
    return ProxyAction(
        pool=build.pools[route.proxy],
        rewriter=PathRewriter(route),
        request_rules=HeaderRules(route.headers.request),
        response_rules=HeaderRules(route.headers.response),
        preserve_host=route.preserve_host,
        max_body_size=route.max_body_size or build.server.max_body_size,
        trusted=build.trusted,
        client=build.client,
        session=build.session,
    )


ACTIONS: Mapping[str, Callable[[Route, BuildContext], Action]] = {
    "proxy": _proxy,
    "redirect": lambda route, build: RedirectAction(route),
    "respond": lambda route, build: RespondAction(route),
    "site": lambda route, build: SiteAction(route, build.hosting),
}
