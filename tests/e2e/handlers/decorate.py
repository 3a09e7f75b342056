"""Route handler: passes the request on, then changes the headers of the origin's answer."""

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from edgeproxy.edge import EdgeContext, Env


async def on_request(request: Request, env: Env, ctx: EdgeContext) -> Response:
    response = await ctx.next()
    response.headers["X-Decorated"] = "by-handler"
    response.headers["X-Handler-Request-Id"] = ctx.request_id
    del response.headers["X-Remove-Me"]
    return response


async def shout(request: Request, env: Env, ctx: EdgeContext) -> Response:
    """Reads the origin's body and answers a new one made from it."""
    response = await ctx.next()
    text = await response.text()
    return PlainTextResponse(text.upper(), status_code=response.status_code)
