"""All configured sites: which host names serve which deployment, and publishing.

Host names, checked before the route table:

    <production host>                      production deployment of the site that lists it
    <site>.<preview_domain>                production deployment (handy locally: demo.localhost)
    <alias>.<site>.<preview_domain>        the deployment an alias names: a branch alias
                                           (feature-x) or a deployment's 8-hex short ID

Deployments on disk are immutable, so a loaded deployment (its file index and compiled
rules) is cached by ID; the alias maps are re-read when aliases.json changes, checked at
most twice a second, so every worker sees a publish within half a second.
"""

from __future__ import annotations

import base64
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgeproxy.config.models import PreviewProtection, Site
from edgeproxy.context import RequestContext
from edgeproxy.direct import DirectReply
from edgeproxy.edge.host import EdgeHost
from edgeproxy.exceptions import NotFound, StoreError
from edgeproxy.memo import Memo
from edgeproxy.responses import send_bytes
from edgeproxy.sites.deployment import LiveDeployment, ProxyTo
from edgeproxy.sites.functions import check_functions
from edgeproxy.sites.headers import HeaderRules
from edgeproxy.sites.redirects import RedirectRules
from edgeproxy.sites.store import (
    PRODUCTION,
    BlobStore,
    Deployment,
    SiteStore,
    import_tree,
)
from edgeproxy.types import Receive, Scope, Send

logger = logging.getLogger("edgeproxy.sites")

# Each loaded deployment keeps up to 32 MiB of small files in memory (sites/static.py).
_LOADED_LIMIT = 16
_ALIAS_CHECK_SECONDS = 0.5
TOKEN_COOKIE = "edge_preview"


@dataclass(frozen=True, slots=True)
class HostMatch:
    site: str
    alias: str
    preview: bool


class _Aliases:
    """A site's alias map, re-read when aliases.json changes on disk."""

    __slots__ = ("checked", "mtime", "store", "value")

    def __init__(self, store: SiteStore) -> None:
        self.store = store
        self.value: dict[str, str] = {}
        self.mtime = -1
        self.checked = 0.0

    def get(self) -> dict[str, str]:
        now = time.monotonic()
        if now - self.checked >= _ALIAS_CHECK_SECONDS:
            self.checked = now
            try:
                mtime = self.store.aliases_path.stat().st_mtime_ns
            except FileNotFoundError:
                mtime = 0
            if mtime != self.mtime:
                self.mtime = mtime
                self.value = self.store.aliases()
        return self.value

    def refresh(self) -> None:
        self.checked = 0.0


class SiteHosting:
    def __init__(self, state_dir: Path, config_dir: Path, proxy: ProxyTo) -> None:
        self.state_dir = state_dir
        self.config_dir = config_dir
        self.proxy = proxy
        self.blobs = BlobStore(state_dir / "blobs")
        self.sites: Mapping[str, Site] = {}
        self.stores: dict[str, SiteStore] = {}
        self._aliases: dict[str, _Aliases] = {}
        self._hosts: dict[str, str] = {}
        self._preview_domains: dict[str, list[str]] = {}
        # Host headers already resolved to a site (or to none), until the next `configure`.
        self._matched: Memo[str, HostMatch | None] = Memo()
        self._loaded: OrderedDict[str, LiveDeployment] = OrderedDict()
        # Set by the app: runs deployments' functions (none without it).
        self.edge: EdgeHost | None = None
        self._seen_aliases: dict[str, int] = {}

    def configure(self, sites: Mapping[str, Site]) -> None:
        """Adopt the `sites:` section (at start and on every reload)."""
        self.sites = sites
        for name in sites:
            if name not in self.stores:
                store = SiteStore(self.state_dir, name, self.blobs)
                store.clean_incomplete()
                self.stores[name] = store
                self._aliases[name] = _Aliases(store)
        self._hosts = {host: name for name, site in sites.items() for host in site.hosts}
        domains: dict[str, list[str]] = {}
        for name, site in sites.items():
            domains.setdefault(site.preview_domain.lower(), []).append(name)
        self._preview_domains = domains
        self._matched = Memo()
        # Site settings (env, limits) may have changed: serve from freshly loaded deployments.
        self._retire_all()

    def _retire_all(self) -> None:
        while self._loaded:
            self._loaded.popitem(last=False)[1].close()

    def publish_sources(self) -> None:
        """Publish each site's `source` directory if the site has no production deployment."""
        for name, site in self.sites.items():
            if site.source is None or PRODUCTION in self.stores[name].aliases():
                continue
            source = (self.config_dir / site.source).resolve()
            if not source.is_dir():
                logger.warning("site %s: source %s is not a directory", name, source)
                continue
            try:
                deployment = self.deploy_directory(
                    name,
                    source,
                    branch=site.production_branch,
                    message="published from source",
                    origin="source",
                )
            except StoreError as exc:
                logger.error("site %s: %s is not published: %s", name, source, exc)
                continue
            logger.info("site %s: published %s as %s", name, source, deployment.short_id)

    # host resolution (hot path)

    def match_host(self, host: str) -> HostMatch | None:
        try:
            return self._matched[host]
        except KeyError:
            pass
        return self._matched.remember(host, self._match_host(host))

    def _match_host(self, host: str) -> HostMatch | None:
        name = host.rpartition(":")[0] if host.rfind(":") > host.rfind("]") else host
        name = name.lower().rstrip(".")
        site = self._hosts.get(name)
        if site is not None:
            return HostMatch(site, PRODUCTION, preview=False)
        for domain, sites in self._preview_domains.items():
            if not name.endswith("." + domain):
                continue
            labels = name[: -len(domain) - 1].split(".")
            if len(labels) == 1 and labels[0] in sites:
                return HostMatch(labels[0], PRODUCTION, preview=False)
            if len(labels) == 2 and labels[1] in sites:
                return HostMatch(labels[1], labels[0], preview=True)
        return None

    def deployment_for(self, site: str, alias: str) -> LiveDeployment | None:
        store = self.stores[site]
        deploy_id = self._aliases[site].get().get(alias)
        if deploy_id is None and len(alias) == 8:
            deploy_id = store.resolve(alias)
        if deploy_id is None:
            return None
        loaded = self._loaded.get(deploy_id)
        if loaded is not None:
            self._loaded.move_to_end(deploy_id)
            return loaded
        try:
            meta = store.deployment(deploy_id)
        except StoreError:
            return None
        loaded = LiveDeployment(
            meta, store.deployment_dir(deploy_id), self.sites[site], self.proxy, self.edge
        )
        self._loaded[deploy_id] = loaded
        if len(self._loaded) > _LOADED_LIMIT:
            self._loaded.popitem(last=False)[1].close()
        return loaded

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: HostMatch,
        path: str,
        ctx: RequestContext,
    ) -> None:
        protection = self.sites[match.site].preview_protection
        admitted = (
            not match.preview
            or protection is None
            or await self._admit(scope, send, protection, ctx)
        )
        if not admitted:
            return
        deployment = self.deployment_for(match.site, match.alias)
        if deployment is None:
            raise NotFound(f"site {match.site!r} has no deployment {match.alias!r}")
        await deployment.serve(
            scope, receive, send, path=path, host=ctx.host, preview=match.preview, ctx=ctx
        )

    def direct(
        self, scope: Scope, match: HostMatch, path: str, ctx: RequestContext, reply: DirectReply
    ) -> bool:
        """`serve` from callbacks when the deployment can (`LiveDeployment.direct`); never
        for a protected preview, whose checks may answer themselves."""
        if match.preview and self.sites[match.site].preview_protection is not None:
            return False
        deployment = self.deployment_for(match.site, match.alias)
        if deployment is None:
            return False
        return deployment.direct(
            scope, path=path, host=ctx.host, preview=match.preview, ctx=ctx, reply=reply
        )

    async def _admit(
        self, scope: Scope, send: Send, protection: PreviewProtection, ctx: RequestContext
    ) -> bool:
        """Check preview protection; answers 401 (or sets the token cookie) itself."""
        headers = dict(scope["headers"])
        if protection.basic_auth is not None:
            expected = base64.b64encode(
                f"{protection.basic_auth.username}:{protection.basic_auth.password}".encode()
            )
            given = headers.get(b"authorization", b"")
            if given[:6].lower() == b"basic " and hmac.compare_digest(given[6:].strip(), expected):
                return True
            ctx.status = 401
            await send_bytes(
                send,
                401,
                [
                    (b"www-authenticate", b'Basic realm="preview", charset="UTF-8"'),
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                ],
                b"this preview needs a username and password\n",
            )
            return False
        token = (protection.token or "").encode()
        offered = [headers.get(b"authorization", b"").removeprefix(b"Bearer ").strip()]
        for part in headers.get(b"cookie", b"").split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == TOKEN_COOKIE.encode():
                offered.append(value)
        query = scope["query_string"]
        from_query = b""
        for pair in query.split(b"&"):
            name, _, value = pair.partition(b"=")
            if name == b"edge_token":
                from_query = value
        if any(hmac.compare_digest(candidate, token) for candidate in offered if candidate):
            return True
        if from_query and hmac.compare_digest(from_query, token):
            # Swap the token in the URL for a cookie, and drop it from the address bar.
            cookie = f"{TOKEN_COOKIE}={protection.token}; Path=/; HttpOnly; SameSite=Lax"
            rest = b"&".join(p for p in query.split(b"&") if not p.startswith(b"edge_token="))
            location = scope.get("raw_path", b"/") + (b"?" + rest if rest else b"")
            ctx.status = 303
            await send_bytes(
                send, 303, [(b"location", location), (b"set-cookie", cookie.encode())], b""
            )
            return False
        ctx.status = 401
        await send_bytes(
            send,
            401,
            [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")],
            b"this preview needs a token: ?edge_token=... or Authorization: Bearer ...\n",
        )
        return False

    def published_sites(self) -> list[str]:
        """Sites whose aliases changed since the last call (any process may publish)."""
        changed = []
        for name, store in self.stores.items():
            try:
                mtime = store.aliases_path.stat().st_mtime_ns
            except FileNotFoundError:
                mtime = 0
            if self._seen_aliases.get(name, mtime) != mtime:
                changed.append(name)
            self._seen_aliases[name] = mtime
        return changed

    # publishing

    def deploy_directory(
        self,
        site: str,
        directory: Path,
        *,
        branch: str,
        commit: str = "",
        message: str = "",
        origin: str,
    ) -> Deployment:
        files = import_tree(self.blobs, directory)
        return self.deploy_files(
            site, files, branch=branch, commit=commit, message=message, origin=origin
        )

    def deploy_files(
        self,
        site: str,
        files: Mapping[str, str],
        *,
        branch: str,
        commit: str = "",
        message: str = "",
        origin: str = "upload",
    ) -> Deployment:
        """Create a deployment from uploaded blobs, check its rules files, publish it."""
        store = self.stores[site]
        config = self.sites[site]
        warnings = self.rules_warnings(files, config)
        deployment = store.create(
            files, branch=branch, commit=commit, message=message, origin=origin, warnings=warnings
        )
        check_functions(store, deployment)
        store.publish(deployment, config.production_branch)
        store.prune(config.retention)
        self._aliases[site].refresh()
        return deployment

    def rules_warnings(self, files: Mapping[str, str], config: Site) -> list[str]:
        return rules_warnings(self.blobs, files, config)

    def set_alias(self, site: str, alias: str, deploy_id: str | None) -> dict[str, str]:
        aliases = self.stores[site].set_aliases({alias: deploy_id})
        self._aliases[site].refresh()
        return aliases


def rules_warnings(blobs: BlobStore, files: Mapping[str, str], config: Site) -> list[str]:
    """What `_redirects` and `_headers` in `files` would skip, line by line."""
    warnings: list[str] = []
    if "_redirects" in files:
        text = blobs.path(files["_redirects"]).read_text(errors="replace")
        warnings += RedirectRules.parse(text, config.redirects_dialect)[1]
    if "_headers" in files:
        text = blobs.path(files["_headers"]).read_text(errors="replace")
        warnings += HeaderRules.parse(text)[1]
    return warnings
