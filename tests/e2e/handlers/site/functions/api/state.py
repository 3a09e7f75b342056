"""Module-level state and the code's version: tells deployments apart."""

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgeproxy.edge import EdgeContext, Env

from .._lib import CALLS

VERSION = "v1"


async def on_request_get(request: Request, env: Env, ctx: EdgeContext) -> Response:
    CALLS.append(ctx.request_id)
    print(f"state {VERSION} call {len(CALLS)} key={request.query_params.get('key', '-')}")
    return JSONResponse(
        {"version": VERSION, "calls": len(CALLS), "environment": ctx.environment},
        headers={"X-Handler-Request-Id": ctx.request_id},
    )
