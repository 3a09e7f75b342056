"""A compiled config: the route table with an action attached to each route.

A `Runtime` is built once per successful (re)load and never changed; a reload swaps the
reference the gateway reads, so a request runs start to end on the runtime it began with.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from edgeproxy.actions import ACTIONS, BuildContext
from edgeproxy.cache.layer import CacheSettings, CacheStats, CachingAction, site_tag
from edgeproxy.cache.store import CacheStore
from edgeproxy.config.models import RulesConfig
from edgeproxy.edge.handlers import HandlerModule
from edgeproxy.edge.host import EdgeHost, limits
from edgeproxy.edge.route import HandlerAction
from edgeproxy.proxy.client import UpstreamClient
from edgeproxy.proxy.headers import Networks, TrustedProxies
from edgeproxy.proxy.upstreams import UpstreamPool
from edgeproxy.routing.table import RouteTable
from edgeproxy.sites.hosting import SiteHosting


@dataclass(frozen=True)
class Runtime:
    config: RulesConfig
    table: RouteTable
    trusted: TrustedProxies
    internal_networks: Networks
    hosting: SiteHosting | None
    version: int
    digest: str
    loaded_at: float = field(default_factory=time.time)


def build_runtime(
    config: RulesConfig,
    *,
    pools: Mapping[str, UpstreamPool],
    client: UpstreamClient,
    session: aiohttp.ClientSession,
    hosting: SiteHosting,
    cache_store: CacheStore,
    cache_stats: CacheStats,
    edge: EdgeHost,
    handlers: Mapping[int, HandlerModule],
    version: int,
    digest: str,
) -> Runtime:
    """Compile `config` (already validated by the loader) into a runtime.

    `handlers` are the loaded `handler:` modules by route index (edgeproxy.edge.loader).
    """
    trusted = TrustedProxies(config.server.trusted_proxies)
    build = BuildContext(
        server=config.server,
        pools=pools,
        trusted=trusted,
        client=client,
        session=session,
        hosting=hosting,
    )
    table = RouteTable(config.routes)
    for route in table.routes:
        action = ACTIONS[route.config.action](route.config, build)
        cache = route.config.cache
        if cache is not None and cache.enabled:
            settings = CacheSettings(
                default_ttl=cache.default_ttl,
                max_ttl=cache.max_ttl,
                stale_if_error=cache.stale_if_error,
                query=cache.query,
                query_allow=frozenset(cache.query_allow),
                max_object_size=cache.max_object_size,
                cdn_header=cache.cdn_cache_control.lower().encode()
                if cache.cdn_cache_control
                else None,
            )
            # A site's cached pages are purged when the site publishes (app.py).
            tags = frozenset({site_tag(route.config.site)} if route.config.site else ())
            action = CachingAction(action, settings, cache_store, cache_stats, tags)
        handler = route.config.handler
        if handler is not None:
            # Outside the cache: the handler sees every request, hits included.
            action = HandlerAction(
                action,
                handlers[route.index],
                edge.runner,
                edge.route_env(handler.env),
                limits(handler),
                route.name,
            )
        route.payload = action
    return Runtime(
        config=config,
        table=table,
        trusted=trusted,
        internal_networks=Networks(config.server.internal_networks),
        # None when no site is configured, so the gateway skips host matching entirely.
        hosting=hosting if config.sites else None,
        version=version,
        digest=digest,
    )


def resolve_state_dir(config: RulesConfig, config_path: Path, override: str | None) -> Path:
    """The state dir: --state-dir, else `server.state_dir` relative to the config file."""
    if override:
        return Path(override).resolve()
    return (config_path.parent / config.server.state_dir).resolve()
