"""Route handler that prints and logs: its output is captured per request."""

import logging

from starlette.requests import Request
from starlette.responses import Response

from edgeproxy.edge import EdgeContext, Env

logger = logging.getLogger(__name__)


async def on_request(request: Request, env: Env, ctx: EdgeContext) -> Response:
    key = request.query_params.get("key", "-")
    print(f"printed {key}")
    logger.info("logged %s", key)
    logger.warning("warned %s", key)
    response = await ctx.next()
    response.headers["X-Handler-Request-Id"] = ctx.request_id
    return response
