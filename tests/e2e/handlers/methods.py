"""Route handler with method variants: they win over on_request for their method."""

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from edgeproxy.edge import EdgeContext, Env


def _answer(name: str, ctx: EdgeContext) -> Response:
    return PlainTextResponse(name, headers={"X-Handler-Request-Id": ctx.request_id})


async def on_request_get(request: Request, env: Env, ctx: EdgeContext) -> Response:
    return _answer("on_request_get", ctx)


async def on_request_post(request: Request, env: Env, ctx: EdgeContext) -> Response:
    return _answer("on_request_post", ctx)


async def on_request(request: Request, env: Env, ctx: EdgeContext) -> Response:
    return _answer(f"on_request {request.method}", ctx)
