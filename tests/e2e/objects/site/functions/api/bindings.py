"""/api/bindings: the names in this site's functions' env."""

from starlette.requests import Request
from starlette.responses import JSONResponse


async def on_request_get(request: Request, env, ctx) -> JSONResponse:
    return JSONResponse(sorted(env))
