"""A small harness around EdgeRunner: chains of test functions, a fake origin, a client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from edgeproxy.edge.env import Env
from edgeproxy.edge.handlers import Chain, HandlerCallable, HandlerFunction
from edgeproxy.edge.logs import LogHub
from edgeproxy.edge.metrics import HandlerStats
from edgeproxy.edge.reports import InvocationReports
from edgeproxy.edge.runner import EdgeRunner, HandlerLimits
from edgeproxy.types import ASGIApp, Receive, Scope, Send

SITE = "demo"
REQUEST_ID = "req-0001"


def step(func: HandlerCallable, label: str | None = None) -> HandlerFunction:
    return HandlerFunction(label or f"test.py:{func.__name__}", func)


def chain(*funcs: HandlerCallable, handler: HandlerCallable | None = None, **params: Any) -> Chain:
    return Chain(tuple(step(f) for f in funcs), step(handler) if handler else None, dict(params))


def fetch(app: Any, method: str = "GET", url: str = "/", **kwargs: Any) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as http:
            return await http.request(method, url, **kwargs)

    return asyncio.run(go())


def _request_id(scope: Scope) -> str:
    """REQUEST_ID, or the `x-test-id` header when a test runs requests side by side."""
    for name, value in scope.get("headers", ()):
        if name == b"x-test-id":
            return str(value.decode())
    return REQUEST_ID


@dataclass
class Origin:
    """A fake downstream app recording what it was sent."""

    body: bytes = b"origin body"
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(
        default_factory=lambda: [(b"content-type", b"text/plain; charset=utf-8")]
    )
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = b""
        while True:
            message = await receive()
            received += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append(
            {
                "path": scope["path"],
                "raw_path": scope.get("raw_path"),
                "query": scope["query_string"],
                "method": scope["method"],
                "body": received,
                "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
            }
        )
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


@dataclass
class Harness:
    logs: LogHub = field(default_factory=LogHub)
    stats: HandlerStats = field(default_factory=HandlerStats)
    runner: EdgeRunner = field(init=False)
    statuses: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runner = EdgeRunner(InvocationReports(self.logs, self.stats), self.logs)

    def app(
        self,
        the_chain: Chain,
        downstream: ASGIApp | None = None,
        *,
        env: Env | None = None,
        limits: HandlerLimits | None = None,
        site: str | None = SITE,
    ) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            status = await self.runner.run(
                scope,
                receive,
                send,
                the_chain,
                env=env or Env({"GREETING": "hi"}),
                environment="preview",
                request_id=_request_id(scope),
                site=site,
                downstream=downstream or Origin(),
                limits=limits,
            )
            self.statuses.append(status)

        return app

    def reports(self) -> list[str]:
        return [e.message for e in self.logs.entries(SITE) if e.level == "REPORT"]
