"""GET /api/hello: JSON that differs between production and previews."""

from starlette.requests import Request
from starlette.responses import JSONResponse


async def on_request_get(request: Request, env, ctx) -> JSONResponse:
    return JSONResponse(
        {
            "greeting": env.GREETING,
            "environment": ctx.environment,
            "name": request.query_params.get("name", "world"),
            "middleware": ctx.data.get("started_by"),
        }
    )
