"""`handler:` on a route: a Python function run as middleware around the route's action.

The handler sees the request before the cache and the action (proxy, site, redirect or
respond); `await ctx.next()` runs them and hands back their response. Its output goes to
the log hub under `route:<route name>`.
"""

from __future__ import annotations

from pathlib import Path

from edgeproxy.actions import Action, pass_websocket
from edgeproxy.config.models import RulesConfig
from edgeproxy.context import RequestContext, counting_send
from edgeproxy.edge.env import Env
from edgeproxy.edge.handlers import Chain, HandlerModule
from edgeproxy.edge.host import PRODUCTION
from edgeproxy.edge.loader import RouteHandlers
from edgeproxy.edge.runner import EdgeRunner, HandlerLimits
from edgeproxy.exceptions import ConfigError, ConfigIssue, HandlerLoadError
from edgeproxy.routing.paths import RequestPath, parse_path
from edgeproxy.routing.table import RouteMatch
from edgeproxy.types import Receive, Scope, Send


def load_route_handlers(
    config: RulesConfig, config_path: Path
) -> tuple[RouteHandlers, dict[int, HandlerModule]]:
    """Import every route's `handler:` (by route index); ConfigError lists each that fails.

    The caller closes the returned loader once the config it belongs to stops serving.
    """
    loader = RouteHandlers(config_path.parent)
    handlers: dict[int, HandlerModule] = {}
    issues = []
    for index, route in enumerate(config.routes):
        if route.handler is None:
            continue
        try:
            handlers[index] = loader.load(route.handler.function)
        except HandlerLoadError as exc:
            issues.append(ConfigIssue(f"routes[{index}].handler", str(exc), str(config_path)))
    if issues:
        loader.close()
        raise ConfigError(issues)
    return loader, handlers


def hub_key(route_name: str) -> str:
    return f"route:{route_name}"


class HandlerAction:
    """Runs the route's handler; its `ctx.next()` reaches the wrapped action."""

    def __init__(
        self,
        inner: Action,
        module: HandlerModule,
        runner: EdgeRunner,
        env: Env,
        limits: HandlerLimits,
        route_name: str,
    ) -> None:
        self.inner = inner
        self.module = module
        self.runner = runner
        self.env = env
        self.limits = limits
        self.hub = hub_key(route_name)

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
    ) -> None:
        found = self.module.chain(scope["method"])
        if found is None:
            await self.inner(scope, receive, send, match, path, ctx)
            return
        chain = Chain(found.middlewares, found.handler, dict(match.params))

        async def downstream(inner_scope: Scope, inner_receive: Receive, inner_send: Send) -> None:
            # A handler may pass on a rewritten request: route the action by its path.
            raw = inner_scope.get("raw_path")
            inner_path = path if raw is None or raw == scope.get("raw_path") else parse_path(raw)
            await self.inner(inner_scope, inner_receive, inner_send, match, inner_path, ctx)

        # The action counts what it hands the handler; the client gets what the handler sends.
        client_ctx = RequestContext(host=ctx.host, client_ip=ctx.client_ip, scheme=ctx.scheme)
        status = await self.runner.run(
            scope,
            receive,
            counting_send(send, client_ctx),
            chain,
            env=self.env,
            environment=PRODUCTION,
            request_id=ctx.request_id,
            site=self.hub,
            downstream=downstream,
            limits=self.limits,
        )
        ctx.status = status
        ctx.bytes_sent = client_ctx.bytes_sent

    async def websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: RouteMatch,
        path: RequestPath,
        ctx: RequestContext,
    ) -> None:
        """Handlers see HTTP requests only; a WebSocket goes to the wrapped action."""
        await pass_websocket(self.inner, scope, receive, send, match, path, ctx)
