"""Route handler: forwards a rewritten request (path, query, a header, and the body)."""

from starlette.requests import Request
from starlette.responses import Response

from edgeproxy.edge import EdgeContext, Env, rewrite_request


async def on_request(request: Request, env: Env, ctx: EdgeContext) -> Response:
    original = await request.body()
    headers = [*request.headers.items(), ("X-Rewritten", "yes")]
    rewritten = rewrite_request(
        request,
        path="/rewritten/echo?via=handler",
        headers=headers,
        body=original.upper() if original else None,
    )
    return await ctx.next(rewritten)
