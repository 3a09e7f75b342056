"""A deployment's `functions/` (Pages Functions): loaded with it, run before its static files.

Functions ship inside the deployment (`functions/` and an optional `_routes.json` at its
root; neither is ever served as a file). Each deployment loads its own copy of the code, so
a preview runs its branch's version next to production's. Loading happens when a deploy is
made, where a syntax or import error refuses the deploy with its traceback, and again when
the deployment is first served.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from edgeproxy.config.models import Site
from edgeproxy.context import RequestContext
from edgeproxy.direct import DirectReply
from edgeproxy.edge.env import Env
from edgeproxy.edge.functions import SiteFunctions
from edgeproxy.edge.handlers import Chain
from edgeproxy.edge.host import PREVIEW, PRODUCTION, EdgeHost, limits
from edgeproxy.edge.runner import make_call
from edgeproxy.exceptions import FunctionsUnavailable, HandlerLoadError, StoreError
from edgeproxy.routing.paths import parse_path
from edgeproxy.sites.store import Deployment, SiteStore
from edgeproxy.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("edgeproxy.sites")

FUNCTIONS_DIR = "functions"
ROUTES_FILE = "_routes.json"


def has_functions(root: Path) -> bool:
    return (root / FUNCTIONS_DIR).is_dir() or (root / ROUTES_FILE).is_file()


def load_functions(root: Path, deploy_id: str) -> SiteFunctions:
    return SiteFunctions.load(root / FUNCTIONS_DIR, deploy_id, root / ROUTES_FILE)


def check_functions(store: SiteStore, deployment: Deployment) -> None:
    """Load a new deployment's functions once; on failure remove it and refuse the deploy."""
    root = store.deployment_dir(deployment.id)
    if not has_functions(root):
        return
    try:
        load_functions(root, deployment.id).close()
    except HandlerLoadError as exc:
        store.discard(deployment.id)
        raise StoreError(f"the deployment's functions failed to load: {exc}", 422) from exc


def include_project_functions(checkout: Path, output: Path) -> Path | None:
    """Cloudflare keeps `functions/` at the project root, beside the build output: the
    directory to add to the deployment as `functions/`, if the output has none of its own."""
    project = checkout / FUNCTIONS_DIR
    if (output / FUNCTIONS_DIR).exists() or not project.is_dir() or project.is_symlink():
        return None
    return project


class DeploymentFunctions:
    """The functions of one served deployment, with their env per environment."""

    def __init__(
        self,
        root: Path,
        deploy_id: str,
        site_name: str,
        site: Site,
        host: EdgeHost,
        assets: Callable[[bool], ASGIApp],
    ) -> None:
        """`assets(preview)` is the deployment's static side for `env.ASSETS`."""
        self.assets = assets
        self.site_name = site_name
        self.site = site
        self.host = host
        self.limits = limits(site.functions)
        self._envs: dict[bool, Env] = {}
        self.functions: SiteFunctions | None = None
        self.error = ""
        try:
            self.functions = load_functions(root, deploy_id)
        except HandlerLoadError as exc:
            # Fail closed: a deployment whose middleware (say, an auth check) is missing must
            # not serve its files as if it had none.
            self.error = str(exc)
            logger.error("site %s deployment %s: %s", site_name, deploy_id[:8], exc)

    def env(self, preview: bool) -> Env:
        env = self._envs.get(preview)
        if env is None:
            variables = self.site.env.preview if preview else self.site.env.production
            env = self._envs[preview] = self.host.site_env(
                self.site_name, variables, preview, self.assets(preview)
            )
        return env

    async def run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        path: str,
        preview: bool,
        ctx: RequestContext,
        downstream: ASGIApp,
    ) -> bool:
        """Answer the request with the matching functions, whose `ctx.next()` reaches
        `downstream`; False when none match."""
        chain = self.chain(path, scope.get("method", "GET"))
        if chain is None:
            return False
        ctx.status = await self.host.runner.run(
            scope,
            receive,
            send,
            chain,
            env=self.env(preview),
            environment=PREVIEW if preview else PRODUCTION,
            request_id=ctx.request_id,
            site=self.site_name,
            downstream=downstream,
            limits=self.limits,
        )
        return True

    def chain(self, path: str, method: str) -> Chain | None:
        """The functions that answer `path` (normalized, still percent-encoded), if any."""
        if self.functions is None:
            raise FunctionsUnavailable(
                f"the functions of this deployment failed to load: {self.error.splitlines()[0]}"
            )
        return self.functions.match(unquote(path) if "%" in path else path, method)

    def direct(
        self,
        chain: Chain,
        preview: bool,
        ctx: RequestContext,
        downstream: ASGIApp,
        reply: DirectReply,
    ) -> None:
        """Answer a request the direct path resolved with `chain`, with the runner as its
        app, run as an eager task (`DirectReply.run`): it writes a complete response at once
        (`DirectReply.write`) and accounts for the request when it is over."""
        call = make_call((
            chain, self.env(preview), PREVIEW if preview else PRODUCTION, ctx.request_id,
            self.site_name, downstream, self.limits, reply.done, reply.write,
        ))  # fmt: skip
        reply.run(functools.partial(self.host.runner.handle, call))

    def close(self) -> None:
        if self.functions is not None:
            self.functions.close()


def request_path(scope: Scope) -> str:
    """The normalized path of a (possibly rewritten) request, as static serving takes it."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    return parse_path(raw.split(b"?", 1)[0]).normalized
