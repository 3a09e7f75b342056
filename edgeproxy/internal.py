"""The gateway's own endpoints under `/_edge/`: health, readiness, status, metrics, git."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from edgeproxy.metrics import Metrics
from edgeproxy.responses import send_bytes
from edgeproxy.types import ASGIApp, Receive, Scope, Send

_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
# These reveal the config and the upstreams; health and readiness are for everyone.
_PRIVATE = frozenset({"/_edge/status", "/_edge/metrics"})


class InternalApp:
    def __init__(
        self,
        status: Callable[[], Mapping[str, Any]],
        ready: Callable[[], bool],
        metrics: Metrics,
        private_allowed: Callable[[str], bool],
        admin: ASGIApp,
        git: ASGIApp,
    ) -> None:
        self.admin = admin
        self.git = git
        self.status = status
        self.private_allowed = private_allowed
        self.ready = ready
        self.metrics = metrics
        self.endpoints: Mapping[str, Callable[[], Awaitable[tuple[int, bytes, bytes]]]] = {
            "/_edge/health": self._health,
            "/_edge/ready": self._ready,
            "/_edge/status": self._status,
            "/_edge/metrics": self._metrics,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["path"].startswith("/_edge/api/"):
            await self.admin(scope, receive, send)
            return
        if scope["path"].startswith("/_edge/git/"):
            await self.git(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        endpoint = self.endpoints.get(path)
        if endpoint is None:
            detail = f"no internal endpoint {scope['path']}"
            missing = json.dumps({"error": "not-found", "detail": detail}).encode()
            await send_bytes(send, 404, [_JSON, _NO_STORE], missing)
            return
        if path in _PRIVATE:
            client = scope.get("client")
            if not self.private_allowed(client[0] if client else ""):
                detail = f"{path} is only served to server.internal_networks"
                denied = json.dumps({"error": "forbidden", "detail": detail}).encode()
                await send_bytes(send, 403, [_JSON, _NO_STORE], denied)
                return
        if scope["method"] not in ("GET", "HEAD"):
            refused = b'{"error": "method-not-allowed", "detail": "use GET"}'
            await send_bytes(send, 405, [_JSON, _NO_STORE, (b"allow", b"GET, HEAD")], refused)
            return
        status, content_type, body = await endpoint()
        await send_bytes(send, status, [(b"content-type", content_type), _NO_STORE], body)

    async def _health(self) -> tuple[int, bytes, bytes]:
        return 200, _JSON[1], b'{"status":"ok"}'

    async def _ready(self) -> tuple[int, bytes, bytes]:
        if self.ready():
            return 200, _JSON[1], b'{"ready":true}'
        return 503, _JSON[1], b'{"ready":false}'

    async def _status(self) -> tuple[int, bytes, bytes]:
        return 200, _JSON[1], json.dumps(self.status(), indent=2).encode()

    async def _metrics(self) -> tuple[int, bytes, bytes]:
        return 200, b"text/plain; version=0.0.4; charset=utf-8", self.metrics.render()
