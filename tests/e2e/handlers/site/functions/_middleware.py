"""Marks every response the functions are involved in (what _routes.json lets through)."""

from starlette.requests import Request
from starlette.responses import Response

from edgeproxy.edge import EdgeContext, Env


async def on_request(request: Request, env: Env, ctx: EdgeContext) -> Response:
    response = await ctx.next()
    response.headers["X-Site-Middleware"] = "yes"
    return response
