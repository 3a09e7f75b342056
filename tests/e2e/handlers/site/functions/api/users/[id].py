"""A [param] route: /api/users/<id>."""

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgeproxy.edge import EdgeContext, Env


async def on_request_get(request: Request, env: Env, ctx: EdgeContext) -> Response:
    return JSONResponse({"id": ctx.params["id"]})
