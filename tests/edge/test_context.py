from __future__ import annotations

import asyncio
import json
import logging

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from edgeproxy.edge import rewrite_request
from edgeproxy.edge.context import EdgeContext
from edgeproxy.edge.env import Env
from edgeproxy.edge.handlers import Chain
from edgeproxy.edge.runner import HandlerLimits
from edgeproxy.types import Message, Receive, Scope, Send
from tests.edge.conftest import client
from tests.edge.harness import Harness, Origin, chain, fetch, step


def test_next_passes_downstream_response_through_with_changed_headers() -> None:
    async def middleware(request: Request, env: Env, ctx: EdgeContext) -> Response:
        response = await ctx.next()
        response.headers["x-edge"] = "seen"
        response.status_code = 203
        return response

    origin = Origin(body=b"x" * 100_000)
    response = fetch(Harness().app(chain(middleware), origin), "POST", "/a?b=1", content=b"up")
    assert response.status_code == 203
    assert response.headers["x-edge"] == "seen"
    assert response.content == b"x" * 100_000
    assert origin.seen[0]["body"] == b"up"
    assert origin.seen[0]["query"] == b"b=1"


def test_next_streams_without_buffering() -> None:
    """The origin only sends its second chunk once the client got the first."""
    first_delivered = asyncio.Event

    async def scenario() -> list[Message]:
        delivered = first_delivered()

        async def origin(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"one", "more_body": True})
            await delivered.wait()
            await send({"type": "http.response.body", "body": b"two", "more_body": False})

        async def passthrough(request: Request, env: Env, ctx: EdgeContext) -> Response:
            return await ctx.next()

        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)
            if message.get("body") == b"one":
                delivered.set()

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "headers": [],
        }
        app = Harness().app(chain(passthrough), origin)
        await asyncio.wait_for(app(scope, receive, send), 5)
        return sent

    sent = asyncio.run(scenario())
    assert [m.get("body") for m in sent[1:]] == [b"one", b"two", b""]


def test_next_read_then_return_or_replace() -> None:
    async def upper(request: Request, env: Env, ctx: EdgeContext) -> Response:
        response = await ctx.next()
        text = await response.text()
        if request.url.path == "/same":
            assert await response.read() == text.encode()
            return response
        return PlainTextResponse(
            text.upper(), headers={"x-origin-status": str(response.status_code)}
        )

    harness = Harness()
    origin = Origin(body=b"hello")
    assert fetch(harness.app(chain(upper), origin), url="/same").text == "hello"
    replaced = fetch(harness.app(chain(upper), origin), url="/new")
    assert replaced.text == "HELLO"
    assert replaced.headers["x-origin-status"] == "200"


def test_next_with_rewritten_request() -> None:
    async def rewrite(request: Request, env: Env, ctx: EdgeContext) -> Response:
        original = await request.json()
        headers = [*request.headers.items(), ("x-added", "1")]
        changed = rewrite_request(
            request, path="/v2/items?page=2", method="PUT", headers=headers, body=b"new body"
        )
        response = await ctx.next(changed)
        response.headers["x-original"] = json.dumps(original)
        return response

    origin = Origin()
    response = fetch(Harness().app(chain(rewrite), origin), "POST", "/items", json={"a": 1})
    assert response.headers["x-original"] == '{"a": 1}'
    seen = origin.seen[0]
    assert (seen["path"], seen["raw_path"], seen["query"], seen["method"]) == (
        "/v2/items",
        b"/v2/items",
        b"page=2",
        "PUT",
    )
    assert seen["body"] == b"new body"
    assert seen["headers"]["content-length"] == "8"
    assert seen["headers"]["x-added"] == "1"


def test_next_with_own_scope_replays_the_body_already_read() -> None:
    async def read_then_forward(request: Request, env: Env, ctx: EdgeContext) -> Response:
        assert await request.body() == b"payload"
        moved = Request({**request.scope, "path": "/moved"}, request.receive)
        return await ctx.next(moved)

    async def inner(request: Request, env: Env, ctx: EdgeContext) -> Response:
        assert request.url.path == "/moved"
        assert await request.body() == b"payload"  # the next step reads it again
        return await ctx.next()

    origin = Origin()
    fetch(
        Harness().app(chain(read_then_forward, handler=inner), origin),
        "POST",
        "/",
        content=b"payload",
    )
    assert origin.seen[0]["path"] == "/moved"
    assert origin.seen[0]["raw_path"] == b"/moved"
    assert origin.seen[0]["body"] == b"payload"


def test_middlewares_share_data_and_run_outermost_first() -> None:
    async def outer(request: Request, env: Env, ctx: EdgeContext) -> Response:
        ctx.data["trail"] = ["outer"]
        response = await ctx.next()
        response.headers["x-trail"] = ",".join(ctx.data["trail"])
        return response

    async def inner(request: Request, env: Env, ctx: EdgeContext) -> Response:
        ctx.data["trail"].append("inner")
        return await ctx.next()

    async def handler(request: Request, env: Env, ctx: EdgeContext) -> Response:
        ctx.data["trail"].append("handler")
        return PlainTextResponse("made by handler")

    harness = Harness()
    response = fetch(harness.app(chain(outer, inner, handler=handler)))
    assert response.headers["x-trail"] == "outer,inner,handler"
    assert response.text == "made by handler"
    assert "handler=test.py:handler status=200" in harness.reports()[0]


def test_wait_until_is_awaited_and_reported() -> None:
    async def scenario() -> tuple[list[str], list[str], int, list[str]]:
        release = asyncio.Event()
        done: list[str] = []

        async def later() -> None:
            await release.wait()
            done.append("later")

        async def handler(request: Request, env: Env, ctx: EdgeContext) -> Response:
            ctx.wait_until(later())
            return PlainTextResponse("now")

        harness = Harness()
        async with client(harness.app(chain(handler=handler))) as http:
            assert (await http.get("/")).text == "now"
        before = harness.reports()
        assert harness.runner.waits.pending == 2
        release.set()
        cancelled = await harness.runner.waits.drain(5)
        return before, harness.reports(), cancelled, done

    before, after, cancelled, done = asyncio.run(scenario())
    assert before == []
    assert len(after) == 1
    assert "wait_until_ms=" in after[0]
    assert "status=200" in after[0]
    assert cancelled == 0
    assert done == ["later"]


def test_drain_cancels_work_past_its_timeout() -> None:
    async def scenario() -> tuple[int, list[str]]:
        async def forever() -> None:
            await asyncio.sleep(3600)

        async def handler(request: Request, env: Env, ctx: EdgeContext) -> Response:
            ctx.wait_until(forever())
            return PlainTextResponse("now")

        harness = Harness()
        async with client(harness.app(chain(handler=handler))) as http:
            await http.get("/")
        cancelled = await harness.runner.waits.drain(0.01)
        return cancelled, harness.reports()

    cancelled, reports = asyncio.run(scenario())
    assert cancelled == 1
    assert len(reports) == 1


def test_wait_until_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def failing() -> None:
        raise ValueError("later failure")

    async def handler(request: Request, env: Env, ctx: EdgeContext) -> Response:
        ctx.wait_until(failing())
        return PlainTextResponse("ok")

    async def scenario() -> int:
        harness = Harness()
        async with client(harness.app(chain(handler=handler))) as http:
            status = (await http.get("/")).status_code
        await harness.runner.waits.drain(5)
        return status

    with caplog.at_level(logging.ERROR, "edgeproxy.edge"):
        assert asyncio.run(scenario()) == 200
    assert "wait_until work of test.py:handler failed" in caplog.text


def test_middleware_only_chain_reaches_downstream() -> None:
    async def tag(request: Request, env: Env, ctx: EdgeContext) -> Response:
        response = await ctx.next()
        response.headers["x-tag"] = "1"
        return response

    origin = Origin(body=b"static file")
    response = fetch(Harness().app(Chain((step(tag),), None, {}), origin), url="/index.html")
    assert response.text == "static file"
    assert response.headers["x-tag"] == "1"
    assert origin.seen[0]["path"] == "/index.html"


def test_next_offers_read_on_a_handler_made_response() -> None:
    async def outer(request: Request, env: Env, ctx: EdgeContext) -> Response:
        response = await ctx.next()
        data = await response.json()
        return JSONResponse({**data, "wrapped": True})

    async def inner(request: Request, env: Env, ctx: EdgeContext) -> Response:
        return JSONResponse({"inner": True})

    response = fetch(Harness().app(chain(outer, handler=inner)))
    assert response.json() == {"inner": True, "wrapped": True}


def test_wait_until_past_the_wall_time_is_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: Request, env: Env, ctx: EdgeContext) -> Response:
        ctx.wait_until(asyncio.sleep(30))
        return PlainTextResponse("now")

    async def scenario() -> tuple[int, int]:
        harness = Harness()
        app = harness.app(chain(handler=handler), limits=HandlerLimits(wall_time=0.05))
        async with client(app) as http:
            status = (await http.get("/")).status_code
        assert await harness.runner.waits.drain(5) == 0  # the limit stopped it, not the drain
        return status, len(harness.reports())

    with caplog.at_level(logging.ERROR, "edgeproxy.edge"):
        assert asyncio.run(asyncio.wait_for(scenario(), 5)) == (200, 1)
    assert (
        "wait_until work of test.py:handler ran past the wall-time limit of 0.05 s" in caplog.text
    )
