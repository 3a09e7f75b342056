"""Route handlers: ctx.wait_until() work that finishes only once the test releases it.

`on_request` (`?key=K`) answers at once; its work waits until `release` is called with the
same key, then writes `<MARKER_DIR>/K.done`.
"""

import asyncio
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from edgeproxy.edge import EdgeContext, Env

_RELEASES: dict[str, asyncio.Event] = {}


async def _finish(done: Path, released: asyncio.Event) -> None:
    await released.wait()
    await asyncio.to_thread(done.write_text, "written after the response")
    print(f"wait_until work wrote {done.name}")


async def on_request(request: Request, env: Env, ctx: EdgeContext) -> Response:
    key = request.query_params["key"]
    released = _RELEASES.setdefault(key, asyncio.Event())
    ctx.wait_until(_finish(Path(str(env.MARKER_DIR)) / f"{key}.done", released))
    return PlainTextResponse("answered", headers={"X-Handler-Request-Id": ctx.request_id})


async def release(request: Request, env: Env, ctx: EdgeContext) -> Response:
    _RELEASES.setdefault(request.query_params["key"], asyncio.Event()).set()
    return PlainTextResponse("released")
