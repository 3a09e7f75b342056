"""The admin API under `/_edge/api/`: deployments, aliases, rollback.

Every endpoint but `openapi.json` needs `Authorization: Bearer <admin.token>`; without a
configured token the API is off and answers 401 to everything. Deploying is a three-step
upload that sends only what the server lacks (as Netlify's file-digest deploys do):

1. `POST /sites/{site}/deploys` with `{"branch", "commit", "message", "files": {path: sha256}}`
   answers `{"upload": ID, "required": [sha256, ...]}`;
2. `PUT /sites/{site}/uploads/{ID}/files/{sha256}` with each required file's bytes;
3. `POST /sites/{site}/uploads/{ID}/finalize` creates and publishes the deployment.

The deploy hook `POST /sites/{site}/hooks/push` takes no bearer token: it is authenticated by
`X-Hub-Signature-256` (HMAC-SHA256 of the body with the site's `webhook_secret`), and starts
`edgeproxy build` in the background, answering 202 with a build ID to poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, Router

from edgeproxy.admin.objects import ObjectsAdmin
from edgeproxy.admin.openapi import OPENAPI
from edgeproxy.cache.layer import cache_key_for_url
from edgeproxy.cache.store import CacheStore
from edgeproxy.edge.logs import LogHub
from edgeproxy.exceptions import StoreError
from edgeproxy.sites.builds import (
    PUBLIC_PORT_ENV,
    PUBLIC_SCHEME_ENV,
    SHA1,
    ZERO_SHA,
    builds_dir,
    read_build_status,
    write_build_status,
)
from edgeproxy.sites.hosting import SiteHosting
from edgeproxy.sites.store import (
    PRODUCTION,
    SHA256,
    branch_alias,
    safe_relative,
    write_atomic,
)

UPLOAD_ID = SHA256  # uploads are named by 64 random hex characters
_PUSH_HOOK = re.compile(r"^/_edge/api/sites/[^/]+/hooks/push$")


def error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


class AdminAPI:
    """A Starlette router: off the proxy's hot path, so the convenience is affordable."""

    def __init__(
        self,
        hosting: Callable[[], SiteHosting],
        token: Callable[[], str | None],
        max_file_size: Callable[[], int],
        config_path: Path,
        cache: CacheStore,
        objects: ObjectsAdmin,
        logs: LogHub,
    ) -> None:
        self.logs = logs
        self.cache = cache
        self.hosting = hosting
        self.token = token
        self.max_file_size = max_file_size
        self.config_path = config_path
        self._builds: set[asyncio.Task[None]] = set()
        prefix = "/_edge/api"
        self.router = Router(
            routes=[
                Route(f"{prefix}/openapi.json", self.openapi, methods=["GET"]),
                Route(f"{prefix}/sites", self.sites, methods=["GET"]),
                Route(f"{prefix}/cache/purge", self.purge, methods=["POST"]),
                Route(f"{prefix}/logs", self.handler_logs, methods=["GET"]),
                Route(f"{prefix}/sites/{{site}}/deploys", self.deployments, methods=["GET"]),
                Route(f"{prefix}/sites/{{site}}/deploys", self.start_deploy, methods=["POST"]),
                Route(
                    f"{prefix}/sites/{{site}}/deploys/{{deploy_id}}",
                    self.deployment,
                    methods=["GET"],
                ),
                Route(
                    f"{prefix}/sites/{{site}}/uploads/{{upload}}/files/{{digest}}",
                    self.upload_file,
                    methods=["PUT"],
                ),
                Route(
                    f"{prefix}/sites/{{site}}/uploads/{{upload}}/finalize",
                    self.finalize,
                    methods=["POST"],
                ),
                Route(
                    f"{prefix}/sites/{{site}}/deploys/{{deploy_id}}/log",
                    self.deployment_log,
                    methods=["GET"],
                ),
                Route(f"{prefix}/sites/{{site}}/hooks/push", self.push_hook, methods=["POST"]),
                Route(f"{prefix}/sites/{{site}}/builds/{{build_id}}", self.build, methods=["GET"]),
                Route(f"{prefix}/sites/{{site}}/rollback", self.rollback, methods=["POST"]),
                Route(
                    f"{prefix}/sites/{{site}}/aliases/{{alias}}", self.set_alias, methods=["PUT"]
                ),
                Route(
                    f"{prefix}/sites/{{site}}/aliases/{{alias}}",
                    self.delete_alias,
                    methods=["DELETE"],
                ),
                *objects.routes(prefix),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        public = scope["path"] == "/_edge/api/openapi.json" or _PUSH_HOOK.match(scope["path"])
        if scope["type"] == "http" and not public:
            denied = self._refusal(scope)
            if denied is not None:
                await denied(scope, receive, send)
                return
        try:
            await self.router(scope, receive, send)
        except StoreError as exc:
            await error(exc.status, "refused", str(exc))(scope, receive, send)

    def _refusal(self, scope: Any) -> Response | None:
        token = self.token()
        if not token:
            return error(
                401, "admin-disabled", "the admin API is off: set admin.token in rules.yaml"
            )
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
        if not given or not hmac.compare_digest(given, token.encode()):
            response = error(401, "unauthorized", "missing or wrong bearer token")
            response.headers["www-authenticate"] = 'Bearer realm="edgeproxy"'
            return response
        return None

    # helpers

    def _site(self, request: Request) -> str:
        site = request.path_params["site"]
        if site not in self.hosting().sites:
            known = ", ".join(sorted(self.hosting().sites)) or "none"
            raise StoreError(f"no site {site!r} (known: {known})", 404)
        return str(site)

    def _urls(self, request: Request, site: str, deploy_id: str, branch: str) -> dict[str, str]:
        config = self.hosting().sites[site]
        port = request.url.port
        suffix = f"{site}.{config.preview_domain}" + (f":{port}" if port else "")
        scheme = request.url.scheme
        urls = {
            "deployment": f"{scheme}://{deploy_id[:8]}.{suffix}/",
            "branch": f"{scheme}://{branch_alias(branch)}.{suffix}/",
        }
        if branch == config.production_branch:
            urls["production"] = f"{scheme}://{suffix}/"
            for host in config.hosts:
                urls.setdefault("production_host", f"{scheme}://{host}/")
        return urls

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"the body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise StoreError("the body must be a JSON object")
        return data

    # endpoints

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def purge(self, request: Request) -> Response:
        """Drop cached responses: one `url`, every URL under a `prefix`, a `tag`, or `all`."""
        data = await self._json(request)
        if isinstance(data.get("url"), str):
            purged = self.cache.purge(cache_key_for_url(data["url"]))
        elif isinstance(data.get("prefix"), str):
            purged = self.cache.purge_prefix(cache_key_for_url(data["prefix"]))
        elif isinstance(data.get("tag"), str):
            purged = self.cache.purge_tag(data["tag"])
        elif data.get("all") is True:
            purged = self.cache.clear()
        else:
            raise StoreError('give one of {"url": U}, {"prefix": U}, {"tag": T} or {"all": true}')
        return JSONResponse({"purged": purged})

    async def handler_logs(self, request: Request) -> Response:
        """Edge handlers' output: `?site=S` (its functions) or `?route=R` (a route's
        `handler:`), `&since=EPOCH`; `&follow=1` streams new entries as NDJSON."""
        site, route = request.query_params.get("site"), request.query_params.get("route")
        if bool(site) == bool(route):
            raise StoreError("give exactly one of ?site=NAME or ?route=NAME")
        if site and site not in self.hosting().sites:
            known = ", ".join(sorted(self.hosting().sites)) or "none"
            raise StoreError(f"no site {site!r} (known: {known})", 404)
        key = site or f"route:{route}"
        try:
            since = float(request.query_params.get("since") or 0) or None
        except ValueError as exc:
            raise StoreError("since must be a number (seconds since the epoch)") from exc
        entries = [entry.as_dict() for entry in self.logs.entries(key, since)]
        if request.query_params.get("follow") not in ("1", "true"):
            return JSONResponse({"entries": entries})
        subscription = self.logs.subscribe(key)

        async def stream() -> AsyncIterator[bytes]:
            try:
                for entry in entries:
                    yield json.dumps(entry).encode() + b"\n"
                async for live in subscription:
                    yield json.dumps(live.as_dict()).encode() + b"\n"
            finally:
                subscription.close()

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    async def sites(self, request: Request) -> Response:
        hosting = self.hosting()
        return JSONResponse(
            {
                name: {"hosts": site.hosts, "aliases": hosting.stores[name].aliases()}
                for name, site in hosting.sites.items()
            }
        )

    async def deployments(self, request: Request) -> Response:
        site = self._site(request)
        store = self.hosting().stores[site]
        aliases = store.aliases()
        listed = []
        for deployment in store.deployments():
            item = deployment.to_json()
            item["aliases"] = sorted(a for a, target in aliases.items() if target == deployment.id)
            listed.append(item)
        return JSONResponse({"site": site, "deployments": listed})

    async def deployment(self, request: Request) -> Response:
        site = self._site(request)
        store = self.hosting().stores[site]
        deploy_id = (
            store.resolve(request.path_params["deploy_id"]) or request.path_params["deploy_id"]
        )
        return JSONResponse(store.deployment(deploy_id).to_json())

    async def start_deploy(self, request: Request) -> Response:
        site = self._site(request)
        data = await self._json(request)
        files = data.get("files")
        branch = data.get("branch") or self.hosting().sites[site].production_branch
        if not isinstance(files, dict) or not files:
            raise StoreError("'files' must be a non-empty object of path -> sha256")
        for name, digest in files.items():
            safe_relative(name)
            if not isinstance(digest, str) or not SHA256.match(digest):
                raise StoreError(f"file {name!r}: {digest!r} is not a sha256 hex digest")
        for key in ("branch", "commit", "message"):
            if key in data and not isinstance(data[key], str):
                raise StoreError(f"'{key}' must be a string")
        blobs = self.hosting().blobs
        required = sorted({digest for digest in files.values() if not blobs.has(digest)})
        upload = secrets.token_hex(32)
        session = {
            "branch": branch,
            "commit": data.get("commit", ""),
            "message": data.get("message", ""),
            "files": {name.lstrip("/"): digest for name, digest in files.items()},
        }
        write_atomic(self._upload_path(site, upload), json.dumps(session).encode())
        return JSONResponse({"upload": upload, "required": required}, status_code=201)

    def _upload_path(self, site: str, upload: str) -> Any:
        if not UPLOAD_ID.match(upload):
            raise StoreError(f"no upload {upload!r}", 404)
        return self.hosting().stores[site].root / "uploads" / f"{upload}.json"

    def _session(self, site: str, upload: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._upload_path(site, upload).read_text())
        except FileNotFoundError:
            raise StoreError(f"no upload {upload!r} for site {site!r}", 404) from None
        return data

    async def upload_file(self, request: Request) -> Response:
        site = self._site(request)
        session = self._session(site, request.path_params["upload"])
        digest = request.path_params["digest"]
        if digest not in session["files"].values():
            raise StoreError(f"{digest} is not a file of this upload", 409)
        size = await self.hosting().blobs.put_stream(digest, request.stream(), self.max_file_size())
        return JSONResponse({"digest": digest, "bytes": size})

    async def finalize(self, request: Request) -> Response:
        site = self._site(request)
        upload = request.path_params["upload"]
        session = self._session(site, upload)
        hosting = self.hosting()
        missing = sorted({d for d in session["files"].values() if not hosting.blobs.has(d)})
        if missing:
            raise StoreError(
                f"{len(missing)} file(s) not uploaded yet: {', '.join(missing[:5])}", 409
            )
        deployment = hosting.deploy_files(
            site,
            session["files"],
            branch=session["branch"],
            commit=session["commit"],
            message=session["message"],
        )
        self._upload_path(site, upload).unlink(missing_ok=True)
        body = deployment.to_json()
        body["urls"] = self._urls(request, site, deployment.id, deployment.branch)
        return JSONResponse(body, status_code=201)

    async def deployment_log(self, request: Request) -> Response:
        site = self._site(request)
        store = self.hosting().stores[site]
        deploy_id = (
            store.resolve(request.path_params["deploy_id"]) or request.path_params["deploy_id"]
        )
        store.deployment(deploy_id)
        log = builds_dir(self.hosting().state_dir, site) / f"{deploy_id}.log"
        try:
            text = log.read_text(errors="replace")
        except FileNotFoundError:
            raise StoreError(f"deployment {deploy_id[:8]} has no build log", 404) from None
        return PlainTextResponse(text)

    async def build(self, request: Request) -> Response:
        site = self._site(request)
        status = read_build_status(self.hosting().state_dir, site, request.path_params["build_id"])
        return JSONResponse(status)

    async def push_hook(self, request: Request) -> Response:
        """A GitHub-style push event: fetch the ref from `repo_url`, build it in the background."""
        site = self._site(request)
        config = self.hosting().sites[site]
        body = await request.body()
        if not config.webhook_secret:
            return error(401, "webhook-disabled", f"site {site!r} has no webhook_secret")
        expected = (
            "sha256=" + hmac.new(config.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        )
        given = request.headers.get("x-hub-signature-256", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return error(401, "bad-signature", "missing or wrong X-Hub-Signature-256")
        if request.headers.get("x-github-event") == "ping":
            return JSONResponse({"pong": True})
        try:
            event = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"the body is not valid JSON: {exc}") from exc
        ref = event.get("ref") if isinstance(event, dict) else None
        after = event.get("after", "") if isinstance(event, dict) else ""
        if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
            raise StoreError("'ref' must name a branch (refs/heads/...)")
        if not isinstance(after, str) or (after and not SHA1.match(after)):
            raise StoreError("'after' must be a 40-hex commit SHA")
        if after == ZERO_SHA:
            return JSONResponse({"site": site, "ref": ref, "ignored": "branch deleted"})
        if not config.repo_url:
            raise StoreError(f"site {site!r} has no repo_url to fetch from", 409)
        state_dir = self.hosting().state_dir
        build_id = secrets.token_hex(16)  # also the ID the deployment will have
        write_build_status(state_dir, site, build_id, status="queued", ref=ref, commit=after)
        command = [
            sys.executable, "-m", "edgeproxy", "build", "--site", site, "--ref", ref,
            "--commit", after, "--build-id", build_id, "--config", str(self.config_path),
            "--state-dir", str(state_dir),
        ]  # fmt: skip
        env = {
            PUBLIC_SCHEME_ENV: request.url.scheme,
            PUBLIC_PORT_ENV: str(request.url.port or ""),
        }
        task = asyncio.create_task(self._run_build(command, env))
        self._builds.add(task)
        task.add_done_callback(self._builds.discard)
        url = f"/_edge/api/sites/{site}/builds/{build_id}"
        return JSONResponse(
            {
                "site": site,
                "build": build_id,
                "deployment": build_id,
                "status": "queued",
                "ref": ref,
                "url": url,
            },
            status_code=202,
        )

    async def _run_build(self, command: list[str], env: dict[str, str]) -> None:
        process = await asyncio.create_subprocess_exec(
            *command,
            env={**os.environ, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        await process.wait()

    async def rollback(self, request: Request) -> Response:
        return await self._point(request, PRODUCTION)

    async def set_alias(self, request: Request) -> Response:
        return await self._point(request, request.path_params["alias"])

    async def _point(self, request: Request, alias: str) -> Response:
        """Point `alias` at the body's `deploy_id` (full or short ID)."""
        site = self._site(request)
        data = await self._json(request)
        hosting = self.hosting()
        wanted = data.get("deploy_id")
        deploy_id = hosting.stores[site].resolve(wanted) if isinstance(wanted, str) else None
        if deploy_id is None:
            raise StoreError(f"no deployment {wanted!r} of site {site!r}", 404)
        aliases = hosting.set_alias(site, alias, deploy_id)
        return JSONResponse({"site": site, "aliases": aliases})

    async def delete_alias(self, request: Request) -> Response:
        site = self._site(request)
        alias = request.path_params["alias"]
        if alias == PRODUCTION:
            raise StoreError("the production alias cannot be removed; roll back instead", 409)
        aliases = self.hosting().set_alias(site, alias, None)
        return JSONResponse({"site": site, "aliases": aliases})
