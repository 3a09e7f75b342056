"""A plain aiohttp-client reverse proxy as a raw ASGI app: the reference for `proxy`.

It does what the simplest correct proxy does and nothing more: one shared
`aiohttp.ClientSession`, hop-by-hop headers dropped both ways, request and response
bodies buffered whole. No routing, no timeouts beyond aiohttp's, no error mapping.

    NAIVE_PROXY_UPSTREAM=http://127.0.0.1:8081 uvicorn bench.naive_proxy:app --no-access-log
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

# Hop-by-hop headers, plus the two the client recomputes for its own request.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class NaiveProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The default connector caps the pool at 100 connections; the benchmark
                # never opens more than that, so the cap never queues a request.
                self.session = aiohttp.ClientSession(auto_decompress=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.session is None:
            raise RuntimeError("lifespan startup did not run; start uvicorn with --lifespan on")
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)

        url = self.upstream + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        async with self.session.request(
            scope["method"], url, headers=headers, data=body or None, allow_redirects=False
        ) as response:
            content = await response.read()
            out = [
                (name, value)
                for name, value in response.raw_headers
                if name.decode("latin-1").lower() not in HOP_BY_HOP
            ]
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": content})


app = NaiveProxy(os.environ.get("NAIVE_PROXY_UPSTREAM", "http://127.0.0.1:8081"))
