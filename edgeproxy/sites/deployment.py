"""Serving one deployment: `_redirects` first, then static files, `_headers` on the way out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgeproxy.config.models import Site
from edgeproxy.context import RequestContext
from edgeproxy.responses import send_bytes
from edgeproxy.sites.headers import HeaderChanges, HeaderRules
from edgeproxy.sites.redirects import RedirectMatch, RedirectRules
from edgeproxy.sites.static import StaticFiles
from edgeproxy.sites.store import Deployment
from edgeproxy.types import Headers, Receive, Scope, Send

NOINDEX = (b"x-robots-tag", b"noindex")
_HEADER_CACHE_SIZE = 4096

# Forwards the request to an absolute URL (Netlify's `200` rule with a URL destination).
ProxyTo = Callable[[Scope, Receive, Send, str, RequestContext], Awaitable[None]]
Decorate = Callable[[int, Headers], Headers]


def _read(root: Path, name: str) -> str:
    path = root / name
    if path.is_file() and not path.is_symlink():
        return path.read_text(errors="replace")
    return ""


class LiveDeployment:
    """A deployment loaded for serving: its file index and compiled rules files."""

    def __init__(self, meta: Deployment, root: Path, site: Site, proxy: ProxyTo) -> None:
        self.meta = meta
        self.proxy = proxy
        self.static = StaticFiles(root, immutable_paths=site.immutable_paths)
        self.dialect = site.redirects_dialect
        self.redirects, redirect_warnings = RedirectRules.parse(
            _read(root, "_redirects"), site.redirects_dialect
        )
        self.headers, header_warnings = HeaderRules.parse(_read(root, "_headers"))
        self._header_cache: dict[tuple[str, str], HeaderChanges] = {}
        self.warnings = [*redirect_warnings, *header_warnings]

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        path: str,
        host: str,
        preview: bool,
        ctx: RequestContext,
    ) -> None:
        """Answer `path` (normalized, still percent-encoded) from this deployment."""
        redirect = (
            self.redirects.match(host, path, scope["query_string"]) if len(self.redirects) else None
        )
        if redirect is not None and self._applies(redirect, path):
            if redirect.is_rewrite:
                target = unquote(urlsplit(redirect.location).path or "/")
                # A rewrite serves content, never a redirect: follow a clean-URL redirect of
                # the target (`/index.html` -> `/`) inside the deployment.
                resolution = self.static.resolve(target)
                if resolution.kind == "redirect":
                    target = resolution.location
                status = None if redirect.status == 200 else redirect.status
                ctx.status = await self.static.serve(
                    scope, receive, send, target, self._decorator(path, host, preview),
                    status=status,
                )  # fmt: skip
                return
            if redirect.is_proxy:
                await self.proxy(scope, receive, send, redirect.location, ctx)
                return
            headers: Headers = [(b"location", redirect.location.encode("latin-1"))]
            headers = self._decorate(path, host, preview, headers)
            ctx.status = redirect.status
            await send_bytes(send, redirect.status, headers, b"")
            return
        ctx.status = await self.static.serve(
            scope, receive, send, unquote(path), self._decorator(path, host, preview)
        )

    def _applies(self, redirect: RedirectMatch, path: str) -> bool:
        # Netlify skips a rule when a file exists at the path ("shadowing") unless it is
        # forced with `!`; Cloudflare Pages always applies its redirects before assets.
        if self.dialect == "netlify" and not redirect.force:
            return not self.static.exists(unquote(path))
        return True

    def _decorator(self, path: str, host: str, preview: bool) -> Decorate:
        def decorate(status: int, headers: Headers) -> Headers:
            return self._decorate(path, host, preview, headers)

        return decorate

    def _decorate(self, path: str, host: str, preview: bool, headers: Headers) -> Headers:
        if len(self.headers):
            # The deployment never changes, so neither does what _headers says for a path.
            key = (path, host)
            changes = self._header_cache.get(key)
            if changes is None:
                if len(self._header_cache) >= _HEADER_CACHE_SIZE:
                    self._header_cache.clear()
                changes = self._header_cache[key] = self.headers.for_path(path, host)
            headers = changes.apply(headers)
        if preview:
            headers = [*headers, NOINDEX]
        return headers
