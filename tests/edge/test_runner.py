from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from edgeproxy.edge.context import EdgeContext
from edgeproxy.edge.env import Env
from edgeproxy.edge.handlers import HandlerModule
from edgeproxy.edge.runner import HandlerLimits
from edgeproxy.exceptions import ResponseAborted, UpstreamConnectError
from edgeproxy.types import Message, Receive, Scope, Send
from tests.edge.conftest import client
from tests.edge.harness import REQUEST_ID, Harness, Origin, chain, fetch, step


def test_handler_answers_with_env_params_and_context() -> None:
    async def hello(request: Request, env: Env, ctx: EdgeContext) -> Response:
        return JSONResponse(
            {
                "greeting": env.GREETING,
                "item": env["GREETING"],
                "id": ctx.params["id"],
                "environment": ctx.environment,
                "request_id": ctx.request_id,
                "same_env": ctx.env is env,
                "name": request.query_params["name"],
            }
        )

    harness = Harness()
    origin = Origin()
    response = fetch(harness.app(chain(handler=hello, id="7"), origin), url="/x?name=ada")
    assert response.status_code == 200
    assert response.json() == {
        "greeting": "hi",
        "item": "hi",
        "id": "7",
        "environment": "preview",
        "request_id": REQUEST_ID,
        "same_env": True,
        "name": "ada",
    }
    assert origin.seen == []
    assert harness.statuses == [200]


def test_method_variants() -> None:
    async def any_method(request: Request, env: Env, ctx: EdgeContext) -> Response:
        return PlainTextResponse("any")

    async def get(request: Request, env: Env, ctx: EdgeContext) -> Response:
        return PlainTextResponse("get")

    module = HandlerModule("m.py", {"GET": step(get)}, step(any_method))
    harness = Harness()
    answers = {}
    for method in ("GET", "POST"):
        the_chain = module.chain(method)
        assert the_chain is not None
        answers[method] = fetch(harness.app(the_chain), method).text
    assert answers == {"GET": "get", "POST": "any"}


def test_middleware_that_answers_is_the_reported_handler() -> None:
    async def deny(request: Request, env: Env, ctx: EdgeContext) -> Response:
        return PlainTextResponse("no", status_code=401)

    async def never(request: Request, env: Env, ctx: EdgeContext) -> Response:
        raise AssertionError("not reached")

    harness = Harness()
    assert fetch(harness.app(chain(deny, handler=never))).status_code == 401
    assert "handler=test.py:deny status=401" in harness.reports()[0]


def test_exception_is_a_500_with_request_id(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: Request, env: Env, ctx: EdgeContext) -> Response:
        raise KeyError("missing")

    harness = Harness()
    with caplog.at_level(logging.ERROR, "edgeproxy.edge"):
        response = fetch(harness.app(chain(handler=broken)))
    assert response.status_code == 500
    assert response.headers["x-edge-error"] == "handler-exception"
    assert response.json()["request_id"] == REQUEST_ID
    assert "missing" not in response.text  # the message may hold secrets
    record = next(r for r in caplog.records if r.name == "edgeproxy.edge")
    assert "test.py:broken" in record.getMessage()
    assert REQUEST_ID in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError
    assert "outcome=exception" in harness.reports()[0]
    errors = [e for e in harness.logs.entries("demo") if e.level == "ERROR"]
    assert errors[0].handler == "test.py:broken"
    assert "KeyError" in errors[0].message
    assert harness.stats.invocations == {("test.py:broken", "exception"): 1}


def test_exception_in_inner_step_names_it() -> None:
    async def outer(request: Request, env: Env, ctx: EdgeContext) -> Response:
        return await ctx.next()

    async def inner(request: Request, env: Env, ctx: EdgeContext) -> Response:
        raise RuntimeError("boom")

    response = fetch(Harness().app(chain(outer, handler=inner)))
    assert response.status_code == 500
    assert "test.py:inner" in response.json()["detail"]


def test_wall_time_exceeded_is_a_504(caplog: pytest.LogCaptureFixture) -> None:
    async def slow(request: Request, env: Env, ctx: EdgeContext) -> Response:
        await asyncio.sleep(30)
        return PlainTextResponse("late")

    harness = Harness()
    limits = HandlerLimits(wall_time=0.05)
    with caplog.at_level(logging.ERROR, "edgeproxy.edge"):
        response = fetch(harness.app(chain(handler=slow), limits=limits))
    assert response.status_code == 504
    assert response.headers["x-edge-error"] == "handler-timeout"
    assert "test.py:slow exceeded its wall-time limit of 0.05 s" in caplog.text
    assert "status=504" in harness.reports()[0]
    assert "outcome=timeout" in harness.reports()[0]


def test_a_handler_that_waits_runs_on_in_its_task_as_awaited() -> None:
    """The runner takes a chain's first step by hand and awaits the rest: whatever the
    handler waits for, the values, exceptions and cancellations it is sent, and the task it
    sees are those of a plain `await`."""

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise KeyError("from a task")

    async def waits(request: Request, env: Env, ctx: EdgeContext) -> Response:
        task = asyncio.current_task()
        seen = []
        async with asyncio.timeout(5):
            await asyncio.sleep(0)  # a bare yield
            seen.append(await asyncio.get_running_loop().run_in_executor(None, lambda: 6 * 7))
        try:
            await asyncio.create_task(fails_later())
        except KeyError as exc:
            seen.append(str(exc))
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        except TimeoutError:
            seen.append("timed out")  # our own cancellation, thrown in and taken back
        seen.append(asyncio.current_task() is task is not None)
        return JSONResponse(seen)

    async def answers(request: Request, env: Env, ctx: EdgeContext) -> Response:
        return JSONResponse([asyncio.current_task() is not None])

    harness = Harness()
    response = fetch(harness.app(chain(handler=waits)))
    assert response.json() == [42, "'from a task'", "timed out", True]
    assert fetch(harness.app(chain(handler=answers))).json() == [True]
    assert harness.statuses == [200, 200]
    assert all("outcome=ok" in line for line in harness.reports())


def test_wall_time_counts_from_the_start_when_a_handler_waits_late() -> None:
    async def busy_then_waits(request: Request, env: Env, ctx: EdgeContext) -> Response:
        deadline = asyncio.get_running_loop().time() + 0.2
        while asyncio.get_running_loop().time() < deadline:
            pass  # no await yet: the limit is armed at the first wait, with what is left
        # 0.4 s in all: past the 0.25 s limit, though the wait alone is not (the sweep
        # checks every 50 ms: the limit fires between 0.25 and 0.3 s).
        await asyncio.sleep(0.2)
        return PlainTextResponse("late")

    harness = Harness()
    response = fetch(harness.app(chain(handler=busy_then_waits), limits=HandlerLimits(0.25)))
    assert response.status_code == 504
    assert "outcome=timeout" in harness.reports()[0]


def test_non_response_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    async def wrong(request: Request, env: Env, ctx: EdgeContext) -> Any:
        return {"not": "a response"}

    with caplog.at_level(logging.ERROR, "edgeproxy.edge"):
        response = fetch(Harness().app(chain(handler=wrong)))
    assert response.status_code == 500
    assert response.headers["x-edge-error"] == "handler-exception"
    assert "test.py:wrong returned dict, not a starlette.responses.Response" in caplog.text


def test_downstream_error_keeps_its_own_page() -> None:
    async def refused(scope: Scope, receive: Receive, send: Send) -> None:
        raise UpstreamConnectError("connection refused by origin")

    async def passthrough(request: Request, env: Env, ctx: EdgeContext) -> Response:
        return await ctx.next()

    response = fetch(Harness().app(chain(passthrough), refused))
    assert response.status_code == 502
    assert response.headers["x-edge-error"] == "upstream-connect"


def test_failure_after_start_aborts_without_second_start() -> None:
    async def stream(request: Request, env: Env, ctx: EdgeContext) -> Response:
        async def chunks() -> Any:
            yield b"first"
            raise RuntimeError("generator broke")

        return StreamingResponse(chunks())

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        await asyncio.sleep(10)
        return {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "asgi": {"spec_version": "2.4"},
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [],
    }
    harness = Harness()
    with pytest.raises(ResponseAborted):
        asyncio.run(harness.app(chain(handler=stream))(scope, receive, send))
    assert [m["type"] for m in sent].count("http.response.start") == 1
    assert "outcome=exception" in harness.reports()[0]


def test_websocket_goes_straight_downstream() -> None:
    seen: list[str] = []

    async def downstream(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def never(request: Request, env: Env, ctx: EdgeContext) -> Response:
        raise AssertionError("not reached")

    async def no_receive() -> Message:
        return {"type": "websocket.connect"}

    async def no_send(message: Message) -> None:
        pass

    app = Harness().app(chain(handler=never), downstream)
    asyncio.run(app({"type": "websocket", "path": "/"}, no_receive, no_send))
    assert seen == ["websocket"]


def test_origin_failing_mid_body_aborts_and_is_not_the_handlers_fault() -> None:
    async def origin(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ResponseAborted("origin reset")

    async def passthrough(request: Request, env: Env, ctx: EdgeContext) -> Response:
        return await ctx.next()

    async def no_body() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []}
    harness = Harness()
    with pytest.raises(ResponseAborted):
        asyncio.run(harness.app(chain(passthrough), origin)(scope, no_body, send))
    assert "outcome=ok" in harness.reports()[0]


SITE_TREE = {
    "functions/_middleware.py": """
        async def on_request(request, env, ctx):
            ctx.data["seen_by"] = "middleware"
            response = await ctx.next()
            response.headers["x-middleware"] = ctx.data["seen_by"]
            return response
    """,
    "functions/api/users/[id].py": """
        from starlette.responses import JSONResponse

        async def on_request_get(request, env, ctx):
            return JSONResponse({"id": ctx.params["id"], "key": env.API_KEY})
    """,
    "functions/[[page]].py": """
        async def on_request_get(request, env, ctx):
            response = await env.ASSETS.fetch(request)
            if response.status_code == 404:
                response = await env.ASSETS.fetch("/index.html")
            return response
    """,
}


def test_site_functions_through_the_runner(load_site: Any) -> None:
    from edgeproxy.edge.env import Assets

    site = load_site(
        {**SITE_TREE, "_routes.json": '{"version": 1, "include": ["/*"], "exclude": ["/assets/*"]}'}
    )
    static = Origin(body=b"<html>app</html>")

    async def gateway(scope: Scope, receive: Receive, send: Send) -> None:
        the_chain = site.match(scope["path"], scope["method"])
        if the_chain is None:
            await static(scope, receive, send)
            return
        env = Env({"API_KEY": "k1"}, {"ASSETS": Assets(static)})
        await harness.runner.run(
            scope,
            receive,
            send,
            the_chain,
            env=env,
            environment="production",
            request_id="r",
            site="demo",
            downstream=static,
        )

    harness = Harness()

    async def scenario() -> list[Any]:
        async with client(gateway) as http:
            return [
                await http.get("/api/users/42"),
                await http.get("/docs/page"),
                await http.post("/docs/page"),
                await http.get("/assets/app.js"),
            ]

    user, page, post, asset = asyncio.run(scenario())
    assert user.json() == {"id": "42", "key": "k1"}
    assert user.headers["x-middleware"] == "middleware"
    assert (page.text, page.headers["x-middleware"]) == ("<html>app</html>", "middleware")
    assert post.headers["x-middleware"] == "middleware"  # no POST handler: statics
    assert "x-middleware" not in asset.headers  # excluded by _routes.json
    assert [seen["path"] for seen in static.seen] == ["/docs/page", "/docs/page", "/assets/app.js"]


def test_a_handler_changing_its_params_leaves_the_next_requests_alone() -> None:
    async def greedy(request: Request, env: Env, ctx: EdgeContext) -> Response:
        seen = {"id": ctx.params["id"], "path": list(ctx.params["path"])}
        ctx.params["id"] = "changed"
        ctx.params["path"].append("extra")  # type: ignore[union-attr]
        return JSONResponse(seen)

    harness = Harness()
    shared = chain(handler=greedy, id="7", path=["a", "b"])  # one chain, as matches share
    app = harness.app(shared, Origin())
    answers = [fetch(app).json() for _ in range(2)]
    assert answers == [{"id": "7", "path": ["a", "b"]}] * 2
