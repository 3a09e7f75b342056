"""Route handlers that fail in each way the runner must contain."""

import asyncio
import time

from starlette.requests import Request
from starlette.responses import Response

from edgeproxy.edge import EdgeContext, Env


async def boom(request: Request, env: Env, ctx: EdgeContext) -> Response:
    raise RuntimeError("kaboom from the handler")


async def not_a_response(request: Request, env: Env, ctx: EdgeContext) -> Response:
    return "a string is not a response"  # type: ignore[return-value]


async def too_slow(request: Request, env: Env, ctx: EdgeContext) -> Response:
    await asyncio.sleep(60)
    return await ctx.next()


async def blocks_the_loop(request: Request, env: Env, ctx: EdgeContext) -> Response:
    # The mistake the watchdog is there to name: a blocking call on the event loop.
    time.sleep(0.3)  # noqa: ASYNC251
    return await ctx.next()
