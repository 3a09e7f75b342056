"""End to end: WebSocket upgrades proxied both ways."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.conftest import Edge, Origin, free_port

pytestmark = pytest.mark.e2e


def ws_rules(target: str) -> str:
    return f"""
origins:
  app: {{targets: ["{target}"]}}
routes:
  - match: {{path: /live}}
    proxy: app
    rewrite: {{strip_prefix: true}}
  - match: {{path: /static}}
    respond: {{body: "not a socket"}}
"""


def test_echo_and_close_code(origin: Origin, edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory(ws_rules(origin.url))

    async def session() -> tuple[list[str | bytes], int, str]:
        async with connect(f"ws://127.0.0.1:{edge.port}/live/ws", subprotocols=["chat"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "chat"
            await ws.send("hello")
            first = await ws.recv()
            await ws.send(b"\x00\x01")
            second = await ws.recv()
            await ws.send("close:4001")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code is not None
            return [first, second], ws.close_code, ws.close_reason or ""

    messages, code, reason = asyncio.run(session())
    assert messages == ["a:hello", b"\x00\x01"]
    assert code == 4001
    assert reason == "asked to"


def test_client_close_code_reaches_origin_and_proxy_keeps_serving(
    origin: Origin, edge_factory: Callable[..., Edge]
) -> None:
    edge = edge_factory(ws_rules(origin.url))

    async def session() -> None:
        async with connect(f"ws://127.0.0.1:{edge.port}/live/ws") as ws:
            await ws.send("ping")
            assert await ws.recv() == "a:ping"
            await ws.close(code=4002, reason="bye")

    asyncio.run(session())
    assert edge.client().get("/static").text == "not a socket"


@pytest.mark.parametrize(
    ("path", "target", "status"),
    [
        pytest.param("/static", None, 400, id="route-without-websocket"),
        pytest.param("/live/ws", "dead", 502, id="origin-down"),
    ],
)
def test_refused_upgrades_get_an_http_error(
    origin: Origin, edge_factory: Callable[..., Edge], path: str, target: str | None, status: int
) -> None:
    url = f"http://127.0.0.1:{free_port()}" if target == "dead" else origin.url
    edge = edge_factory(ws_rules(url))

    async def session() -> int:
        try:
            async with connect(f"ws://127.0.0.1:{edge.port}{path}"):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(session()) == status


def test_reload_keeps_an_open_websocket(origin: Origin, edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory(ws_rules(origin.url))

    async def session() -> list[str | bytes]:
        async with connect(f"ws://127.0.0.1:{edge.port}/live/ws") as ws:
            await ws.send("before")
            replies = [await ws.recv()]
            edge.config.write_text(ws_rules(origin.url).replace("not a socket", "reloaded"))
            for _ in range(100):
                if edge.client().get("/static").text == "reloaded":
                    break
                await asyncio.sleep(0.1)
            await ws.send("after")
            replies.append(await ws.recv())
            return replies

    assert asyncio.run(session()) == ["a:before", "a:after"]
    assert edge.client().get("/static").text == "reloaded"


def test_websocket_passes_through_a_cached_route(
    origin: Origin, edge_factory: Callable[..., Edge]
) -> None:
    edge = edge_factory(
        ws_rules(origin.url).replace(
            "rewrite: {strip_prefix: true}", "rewrite: {strip_prefix: true}\n    cache: {}"
        )
    )

    async def session() -> str | bytes:
        async with connect(f"ws://127.0.0.1:{edge.port}/live/ws") as ws:
            await ws.send("cached?")
            return await ws.recv()

    assert asyncio.run(session()) == "a:cached?"
