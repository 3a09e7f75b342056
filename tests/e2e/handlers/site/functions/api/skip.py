"""Excluded by _routes.json: the static api/skip.html answers instead."""

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from edgeproxy.edge import EdgeContext, Env


async def on_request(request: Request, env: Env, ctx: EdgeContext) -> Response:
    return PlainTextResponse("function skip")
