"""Any other /api/... path: a JSON 404 naming what was asked for."""

from starlette.requests import Request
from starlette.responses import JSONResponse


async def on_request(request: Request, env, ctx) -> JSONResponse:
    return JSONResponse({"error": "no such API", "path": ctx.params["path"]}, status_code=404)
