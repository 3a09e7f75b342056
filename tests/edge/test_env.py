from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from edgeproxy.edge.context import EdgeContext
from edgeproxy.edge.env import Assets, Env
from edgeproxy.types import Receive, Scope, Send
from tests.edge.conftest import client
from tests.edge.harness import Harness, chain


def test_attribute_and_item_access() -> None:
    env = Env({"API_KEY": "k"}, {"ASSETS": "binding"})
    assert env.API_KEY == "k"
    assert env["ASSETS"] == "binding"
    assert set(env) == {"API_KEY", "ASSETS"}
    assert "API_KEY" in env
    assert env.get("NOPE") is None


def test_unknown_name_lists_the_known_ones() -> None:
    env = Env({"B": "2", "A": "1"})
    with pytest.raises(AttributeError, match=r"env has no 'C' \(known: A, B\)"):
        _ = env.C
    with pytest.raises(KeyError, match=r"known: A, B"):
        _ = env["C"]


def test_a_name_cannot_be_both_variable_and_binding() -> None:
    with pytest.raises(ValueError, match="ASSETS"):
        Env({"ASSETS": "x"}, {"ASSETS": object()})


class Static:
    """A fake static server recording its scopes."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        assert (await receive())["body"] == b""
        if scope["path"] == "/missing":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"not found"})
            return
        headers = [(b"content-type", b"text/html; charset=latin-1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"<p>", "more_body": True})
        await send({"type": "http.response.body", "body": scope["path"].encode()})


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        pytest.param("/index.html", "/index.html", b"", id="path"),
        pytest.param("/a%20b.html?v=2", "/a b.html", b"v=2", id="escaped-with-query"),
        pytest.param("https://example.com/x.css", "/x.css", b"", id="absolute-url"),
    ],
)
def test_assets_fetch_path(target: str, path: str, query: bytes) -> None:
    static = Static()

    async def scenario() -> Any:
        response = await Assets(static).fetch(target)
        return response.status_code, await response.text()

    assert asyncio.run(scenario()) == (200, f"<p>{path}")
    assert (static.scopes[0]["method"], static.scopes[0]["path"]) == ("GET", path)
    assert static.scopes[0]["query_string"] == query


def test_assets_fetch_from_a_handler_with_its_request() -> None:
    static = Static()

    async def spa(request: Request, env: Env, ctx: EdgeContext) -> Response:
        assets = env.ASSETS
        assert isinstance(assets, Assets)
        response = await assets.fetch(request)
        if response.status_code == 404:
            return await assets.fetch("/index.html")
        return response

    async def scenario() -> list[tuple[int, str]]:
        app = Harness().app(chain(handler=spa), env=Env({}, {"ASSETS": Assets(static)}))
        async with client(app) as http:
            found = await http.post("/page", headers={"if-none-match": '"x"'}, content=b"body")
            fallback = await http.get("/missing")
        return [(found.status_code, found.text), (fallback.status_code, fallback.text)]

    assert asyncio.run(scenario()) == [(200, "<p>/page"), (200, "<p>/index.html")]
    first = static.scopes[0]
    assert first["method"] == "GET"
    assert (b"if-none-match", b'"x"') in first["headers"]
    assert not [name for name, _ in first["headers"] if name == b"content-length"]
