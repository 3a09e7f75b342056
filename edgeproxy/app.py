"""Building the ASGI app from a config file, and its lifespan: clients, watchers, reloads."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from edgeproxy.accesslog import AccessLog
from edgeproxy.admin.api import AdminAPI
from edgeproxy.admin.objects import ObjectsAdmin
from edgeproxy.cache.layer import CacheStats, site_tag
from edgeproxy.cache.store import CacheStore
from edgeproxy.config.edge import ObjectsConfig
from edgeproxy.config.loader import load_config
from edgeproxy.config.models import RulesConfig
from edgeproxy.config.reload import watch_config
from edgeproxy.context import RequestContext
from edgeproxy.direct import Tasks
from edgeproxy.edge.capture import OutputCapture
from edgeproxy.edge.handlers import HandlerModule
from edgeproxy.edge.host import EdgeHost
from edgeproxy.edge.loader import RouteHandlers
from edgeproxy.edge.logs import LogHub
from edgeproxy.edge.metrics import HandlerStats
from edgeproxy.edge.reports import InvocationReports
from edgeproxy.edge.route import load_route_handlers
from edgeproxy.edge.runner import EdgeRunner
from edgeproxy.edge.watchdog import LoopWatchdog
from edgeproxy.exceptions import ConfigError, ConfigIssue, ObjectError
from edgeproxy.gateway import Gateway
from edgeproxy.internal import InternalApp
from edgeproxy.metrics import Metrics
from edgeproxy.objects import ObjectSystem
from edgeproxy.objects.config import load_namespaces, object_settings
from edgeproxy.proxy.client import UpstreamClient
from edgeproxy.proxy.forward import forward_to_url
from edgeproxy.proxy.healthchecks import run_health_checks
from edgeproxy.proxy.upstreams import UpstreamPool, UpstreamRegistry
from edgeproxy.runtime import Runtime, build_runtime, resolve_state_dir
from edgeproxy.server import AbortedResponseFilter
from edgeproxy.sites.git import GitBackend, ensure_repository
from edgeproxy.sites.hosting import SiteHosting
from edgeproxy.types import Receive, Scope, Send

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

logger = logging.getLogger("edgeproxy")

CONFIG_ENV = "EDGEPROXY_CONFIG"
# The collector's thresholds once serving (generation 0 is 700 by default; see startup()).
GC_THRESHOLDS = (10_000, 20, 20)
STATE_DIR_ENV = "EDGEPROXY_STATE_DIR"


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


class EdgeApp:
    """The running gateway: serves with the current runtime and swaps it on reload."""

    def __init__(self, config_path: str | os.PathLike[str], state_dir: str | None = None) -> None:
        self._gc_thresholds = gc.get_threshold()
        self.config_path = Path(config_path).absolute()
        self.state_dir_override = state_dir
        self.metrics = Metrics()
        self.registry = UpstreamRegistry()
        self._runtime: Runtime | None = None
        self._session: aiohttp.ClientSession | None = None
        self.client = UpstreamClient()
        self.cache = CacheStore(256 * 1024 * 1024)
        self.cache_stats = CacheStats(self.cache)
        self.metrics.registry.register(self.cache_stats)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._health: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = {}
        self._ready = False
        self.reloads = 0
        self.last_error: ConfigError | None = None
        self.last_attempt = 0.0
        self.hosting: SiteHosting | None = None
        self.objects: ObjectSystem | None = None
        self._objects_config: ObjectsConfig | None = None
        handler_stats = HandlerStats()
        self.metrics.registry.register(handler_stats)
        self.handler_logs = LogHub()
        self.watchdog = LoopWatchdog(handler_stats)
        self.reports = InvocationReports(self.handler_logs, handler_stats)
        self.runner = EdgeRunner(self.reports, self.handler_logs, self.watchdog)
        self._capture = OutputCapture()
        self.edge: EdgeHost | None = None
        self._route_handlers: RouteHandlers | None = None
        admin = AdminAPI(
            lambda: self._hosting(),
            lambda: self.runtime.config.admin.token,
            lambda: self.runtime.config.server.max_body_size,
            self.config_path,
            self.cache,
            ObjectsAdmin(lambda: self.objects),
            self.handler_logs,
        )
        git = GitBackend(
            lambda: self.state_dir / "git",
            lambda: self._hosting().sites,
            lambda: self.runtime.config.admin.token,
        )
        self.internal = InternalApp(
            self.status,
            lambda: self._ready,
            self.metrics,
            lambda peer: self.runtime.internal_networks.contains(peer),
            admin,
            git,
        )
        self.gateway: Gateway | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the app has not started (lifespan startup not run)")
        return self._runtime

    def _edge(self) -> EdgeHost:
        if self.edge is None:
            raise RuntimeError("the app has not started (lifespan startup not run)")
        return self.edge

    def _hosting(self) -> SiteHosting:
        if self.hosting is None:
            raise RuntimeError("the app has not started (lifespan startup not run)")
        return self.hosting

    @property
    def state_dir(self) -> Path:
        return resolve_state_dir(self.runtime.config, self.config_path, self.state_dir_override)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.gateway is None:
            raise RuntimeError("the app has not started (lifespan startup not run)")
        await self.gateway(scope, receive, send)

    def direct(self, cycle: RequestResponseCycle, tasks: Tasks) -> bool:
        """Offered each request by our HTTP protocol before it starts an ASGI task."""
        return self.gateway is not None and self.gateway.direct(cycle, tasks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except ConfigError as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        try:
            await self._startup()
        except BaseException:
            # Whatever was opened before the failure (a config or object-class error).
            self._capture.uninstall()
            await self.watchdog.stop()
            if self._session is not None:
                await self._session.close()
            if self.objects is not None:
                await self.objects.stop(grace=1.0)
            raise

    async def _startup(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        config = load_config(self.config_path)
        state_dir = resolve_state_dir(config, self.config_path, self.state_dir_override)
        handlers = self._load_handlers(config)
        await self._start_objects(config.objects, state_dir)
        self.edge = EdgeHost(self.runner, self.objects, config.objects)
        self.hosting = SiteHosting(state_dir, self.config_path.parent, self._proxy_to_url)
        self.hosting.edge = self.edge
        await self.watchdog.start()
        self._capture.install()
        self._apply(config, handlers)
        access_log = AccessLog() if config.server.access_log else None
        self.gateway = Gateway(lambda: self.runtime, self.internal, self.metrics, access_log)
        self._tasks.append(
            asyncio.create_task(watch_config(self.config_path, self.reload, self._stop))
        )
        self._tasks.append(asyncio.create_task(self._purge_on_publish()))
        if threading.current_thread() is threading.main_thread():
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)
        logging.getLogger("uvicorn.error").addFilter(AbortedResponseFilter())
        # Everything loaded so far lives as long as the process. Freezing it keeps the
        # collector from rescanning it on every full collection, which measured as the whole
        # of the p99 tail (17 ms pauses) under load.
        gc.collect()
        gc.freeze()
        # Requests leave no reference cycles (tests/test_cycles.py), so young collections
        # find next to nothing; at the default threshold (700) they ran every ~70 function
        # requests and cost ~1 us a request in-process. Fewer, at the same cost each.
        self._gc_thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        self._ready = True
        logger.info("serving %d routes from %s", len(config.routes), self.config_path)

    async def shutdown(self) -> None:
        self._ready = False
        self._stop.set()
        cancelled = await self.runner.waits.drain(self.runtime.config.server.timeouts.shutdown)
        if cancelled:
            logger.warning("shutdown: cancelled %d unfinished ctx.wait_until task(s)", cancelled)
        await self.watchdog.stop()
        self._capture.uninstall()
        if threading.current_thread() is threading.main_thread():
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for stop, _ in self._health.values():
            stop.set()
        tasks = [*self._tasks, *(task for _, task in self._health.values())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.client.close()
        if self._session is not None:
            await self._session.close()
        if self.objects is not None:
            # Last: handlers' wait_until work may still be writing to objects.
            await self.objects.stop(grace=10.0)
        gc.set_threshold(*self._gc_thresholds)

    async def _start_objects(self, config: ObjectsConfig, state_dir: Path) -> None:
        """Start the durable-object system when the config names any namespace."""
        self._objects_config = config
        if not config.namespaces:
            return
        namespaces = load_namespaces(config, self.config_path)
        system = ObjectSystem(object_settings(config, state_dir), namespaces)
        try:
            await system.start()
        except ObjectError as exc:
            raise ConfigError([ConfigIssue("objects", str(exc), str(self.config_path))]) from exc
        self.objects = system
        logger.info(
            "durable objects: %s in %d jurisdiction(s)",
            ", ".join(sorted(config.namespaces)),
            len(config.jurisdictions) + 1,
        )

    def reload(self) -> bool:
        """Load the config file again; on any error keep serving the last good config."""
        self.last_attempt = time.time()
        try:
            config = load_config(self.config_path)
            handlers = self._load_handlers(config)
        except ConfigError as exc:
            self.last_error = exc
            self.metrics.reloads.labels("error").inc()
            self.metrics.config_ok.set(0)
            logger.error(
                "config reload failed; still serving version %d:\n%s", self.runtime.version, exc
            )
            return False
        if config.objects != self._objects_config:
            logger.warning(
                "the objects section changed: it takes effect at the next restart (objects keep "
                "one live instance each, so their classes and storage are not swapped live)"
            )
        self._apply(config, handlers)
        self.metrics.reloads.labels("ok").inc()
        logger.info("config reloaded: version %d", self.runtime.version)
        return True

    async def _purge_on_publish(self) -> None:
        """Drop a site's cached pages when it publishes (uploads, git builds, rollbacks)."""
        hosting = self._hosting()
        hosting.published_sites()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.5)
            for site in hosting.published_sites():
                purged = self.cache.purge_tag(site_tag(site))
                if purged:
                    logger.info("site %s published: purged %d cached responses", site, purged)

    async def _proxy_to_url(
        self, scope: Scope, receive: Receive, send: Send, url: str, ctx: RequestContext
    ) -> None:
        max_body = self.runtime.config.server.max_body_size
        await forward_to_url(self.client, scope, receive, send, url, ctx, max_body_size=max_body)

    def _load_handlers(self, config: RulesConfig) -> dict[int, HandlerModule]:
        """Import every route's `handler:`; a failing one fails the whole (re)load."""
        loader, handlers = load_route_handlers(config, self.config_path)
        previous, self._route_handlers = self._route_handlers, loader
        if previous is not None:
            previous.close()
        return handlers

    def _apply(self, config: RulesConfig, handlers: dict[int, HandlerModule]) -> None:
        if self._session is None:
            raise RuntimeError("the upstream client session is not open")
        digest = hashlib.sha256(self.config_path.read_bytes()).hexdigest()[:12]
        added, dropped = self.registry.update(config.origins)
        version = self._runtime.version + 1 if self._runtime else 1
        self.cache.max_bytes = config.cache.max_bytes
        self.reports.stream = sys.stderr if config.server.handler_reports else None
        hosting = self._hosting()
        hosting.configure(config.sites)
        hosting.publish_sources()
        self._ensure_repositories(config, hosting.state_dir)
        self._runtime = build_runtime(
            config,
            hosting=hosting,
            cache_store=self.cache,
            cache_stats=self.cache_stats,
            edge=self._edge(),
            handlers=handlers,
            pools=self.registry.pools,
            client=self.client,
            session=self._session,
            version=version,
            digest=digest,
        )
        self.reloads += 1 if version > 1 else 0
        self.last_error = None
        self.metrics.config_ok.set(1)
        for pool in dropped:
            stopped = self._health.pop(id(pool), None)
            if stopped is not None:
                stopped[0].set()
        for pool in added:
            self._start_health_checks(pool)

    def _ensure_repositories(self, config: RulesConfig, state_dir: Path) -> None:
        for name, site in config.sites.items():
            try:
                ensure_repository(
                    state_dir / "git", name, site.production_branch, self.config_path, state_dir
                )
            except (OSError, subprocess.CalledProcessError) as exc:
                logger.warning("site %s: no git repository (git push is off): %s", name, exc)

    def _start_health_checks(self, pool: UpstreamPool) -> None:
        if pool.config.health_check is None or self._session is None:
            return
        stop = asyncio.Event()
        task = asyncio.create_task(run_health_checks(self._session, pool, stop))
        self._health[id(pool)] = (stop, task)

    def status(self) -> dict[str, Any]:
        runtime = self.runtime
        return {
            "config": {
                "path": str(self.config_path),
                "version": runtime.version,
                "digest": runtime.digest,
                "loaded_at": _iso(runtime.loaded_at),
                "reloads": self.reloads,
            },
            "last_reload": {
                "ok": self.last_error is None,
                "at": _iso(self.last_attempt) if self.last_attempt else None,
                "errors": [str(issue) for issue in self.last_error.issues]
                if self.last_error
                else [],
            },
            "routes": len(runtime.table.routes),
            "origins": {
                name: [
                    {
                        "url": target.url,
                        "healthy": target.healthy,
                        "ejected": target.ejected_until > time.monotonic(),
                        "active": target.active,
                    }
                    for target in pool.targets
                ]
                for name, pool in self.registry.pools.items()
            },
        }


def create_app(config_path: str | os.PathLike[str], state_dir: str | None = None) -> EdgeApp:
    return EdgeApp(config_path, state_dir)


def app_from_env() -> EdgeApp:
    """The app for `uvicorn --factory`: config path and state dir come from the environment."""
    return EdgeApp(os.environ.get(CONFIG_ENV, "rules.yaml"), os.environ.get(STATE_DIR_ENV) or None)
