"""A route handler: a bearer token in front of whatever the route proxies to."""

import hmac

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response


async def require_token(request: Request, env, ctx) -> Response:
    expected = f"Bearer {env.TOKEN}"
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return PlainTextResponse(
            "a bearer token is required\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="edgeproxy demo"'},
        )
    return await ctx.next()
