"""Serving one deployment: its functions first (when it has any), then `_redirects`, then
static files, `_headers` on the way out."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgeproxy.config.models import Site
from edgeproxy.context import RequestContext, counting_send
from edgeproxy.direct import DirectReply
from edgeproxy.edge.host import EdgeHost
from edgeproxy.responses import send_bytes
from edgeproxy.sites.functions import DeploymentFunctions, has_functions, request_path
from edgeproxy.sites.headers import HeaderChanges, HeaderRules
from edgeproxy.sites.redirects import RedirectMatch, RedirectRules
from edgeproxy.sites.static import FromDisk, StaticFiles
from edgeproxy.sites.store import Deployment
from edgeproxy.types import ASGIApp, Headers, Receive, Scope, Send

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

    def __init__(
        self,
        meta: Deployment,
        root: Path,
        site: Site,
        proxy: ProxyTo,
        edge: EdgeHost | None = None,
    ) -> None:
        self.meta = meta
        self.proxy = proxy
        self.preview_build = meta.branch != site.production_branch
        self.functions = (
            DeploymentFunctions(root, meta.id, meta.site, site, edge, self._assets_binding)
            if edge is not None and has_functions(root)
            else None
        )
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
        send = counting_send(send, ctx)
        if self.functions is not None:
            downstream = self._assets_app(scope, path, host, preview, ctx)
            # Functions see their deployment's environment, whichever host reached it: a
            # production-branch deployment is production even at its preview alias.
            ran = await self.functions.run(
                scope, receive, send, path=path, preview=self.preview_build, ctx=ctx,
                downstream=downstream,
            )  # fmt: skip
            if ran:
                return
        await self.serve_assets(
            scope, receive, send, path=path, host=host, preview=preview, ctx=ctx
        )

    def direct(
        self,
        scope: Scope,
        *,
        path: str,
        host: str,
        preview: bool,
        ctx: RequestContext,
        reply: DirectReply,
    ) -> bool:
        """Answer from callbacks (`edgeproxy.direct`) what needs no await: a file held in
        memory (or a redirect, 304 or 404 the index decides) where no function and no
        `_redirects` rule applies. A function's request goes to the runner at once, as
        resolved (`DeploymentFunctions.direct`).
        False, with nothing sent, for the rest."""
        if self.functions is not None:
            chain = self.functions.chain(path, scope["method"])
            if chain is not None:
                downstream = self._assets_app(scope, path, host, preview, ctx)
                self.functions.direct(chain, self.preview_build, ctx, downstream, reply)
                return True
        if len(self.redirects):
            redirect = self.redirects.match(host, path, scope["query_string"])
            if redirect is not None and self._applies(redirect, path):
                return False
        decorate = self._decorator(path, host, preview) if len(self.headers) or preview else None
        answer = self.static.answer(scope, unquote(path), decorate)
        if isinstance(answer, FromDisk):
            return False
        status, headers, body = answer
        ctx.bytes_sent = len(body)
        reply.respond(status, headers, body)
        return True

    def _assets_app(
        self, original: Scope, path: str, host: str, preview: bool, ctx: RequestContext
    ) -> ASGIApp:
        """The deployment without its functions, as an ASGI app: what `ctx.next()` and
        `env.ASSETS` reach (`_serve_downstream`)."""
        return functools.partial(self._serve_downstream, original, path, host, preview, ctx)

    async def _serve_downstream(
        self,
        original: Scope,
        path: str,
        host: str,
        preview: bool,
        ctx: RequestContext,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """A request the handler rewrote is served by its own path; the original keeps
        `path`, which a mounted site has already stripped of its prefix."""
        raw = scope.get("raw_path")
        own = path if raw is None or raw == original.get("raw_path") else request_path(scope)
        await self.serve_assets(scope, receive, send, path=own, host=host, preview=preview, ctx=ctx)

    def _assets_binding(self, preview: bool) -> ASGIApp:
        """`env.ASSETS`: the static side for any request a handler makes up."""

        async def assets(scope: Scope, receive: Receive, send: Send) -> None:
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            ctx = RequestContext(host=host, client_ip="", scheme=scope.get("scheme", "http"))
            await self.serve_assets(
                scope, receive, send, path=request_path(scope), host=host, preview=preview,
                ctx=ctx,
            )  # fmt: skip

        return assets

    def close(self) -> None:
        if self.functions is not None:
            self.functions.close()

    async def serve_assets(
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
        """`_redirects`, then static files."""
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
