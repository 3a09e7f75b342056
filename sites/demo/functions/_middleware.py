"""Runs for every path of the demo site, functions and static files alike."""

from starlette.requests import Request
from starlette.responses import Response


async def on_request(request: Request, env, ctx) -> Response:
    ctx.data["started_by"] = "demo middleware"
    response = await ctx.next()
    response.headers["X-Edge-Middleware"] = "demo"
    return response
