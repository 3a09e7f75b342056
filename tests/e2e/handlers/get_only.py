"""Route handler for GET only: other methods reach the route's action untouched."""

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from edgeproxy.edge import EdgeContext, Env


async def on_request_get(request: Request, env: Env, ctx: EdgeContext) -> Response:
    return PlainTextResponse("on_request_get")
