"""The Python floor: the cheapest raw-ASGI app uvicorn can serve.

No framework, no routing, no I/O; every request gets the same 1 KiB body, the size of the
file the benchmark origin serves, so `proxy` and `floor` move the same bytes. Whatever
uvicorn + httptools + uvloop achieve on this app is the ceiling any edgeproxy scenario on
one worker can reach.

    uvicorn bench.floor:app --http httptools --loop uvloop --no-access-log
"""

from __future__ import annotations

from typing import Any

BODY = (b"hello, world\n" * 79)[:1024]

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(BODY)).encode()),
    ],
}
_BODY = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    # uvicorn does not mutate the messages it is sent, so the two dicts are shared.
    await send(_START)
    await send(_BODY)
