"""A scriptable origin for end-to-end tests, run under uvicorn on a loopback port.

Endpoints (any path prefix works, the last segment picks the behaviour):
  /echo...            JSON: method, raw path, query, headers, body size and sha256, origin name
  /download?size=N    N bytes of b"x", streamed in 64 KiB chunks
  /upload             reads the body in a streaming loop and answers its size and sha256
  /sse?n=N&key=K      N server-sent events; each after the first waits for /release?key=K
  /forever            an endless event stream; /_count says how many are still open
  /redirect?to=URL    302 to URL
  /slow?delay=S       answers after S seconds (counted in /_count while waiting)
  /status/NNN         answers status NNN
  /hop                answers with hop-by-hop headers the proxy must drop
  /ws                 WebSocket echo; "close:CODE" closes with CODE
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any
from urllib.parse import parse_qs

NAME = os.environ.get("ORIGIN_NAME", "origin")
RELEASES: dict[str, asyncio.Queue[None]] = {}
OPEN_STREAMS = [0]
HITS: dict[str, int] = {}


async def send_json(
    send: Any, status: int, payload: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"x-origin", NAME.encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        digest.update(chunk)
        if not message.get("more_body"):
            break
    return size, digest.hexdigest()


async def watch_disconnect(receive: Any, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def websocket(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    protocols = scope.get("subprotocols") or []
    await send({"type": "websocket.accept", "subprotocol": protocols[0] if protocols else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None and text.startswith("close:"):
            await send({"type": "websocket.close", "code": int(text[6:]), "reason": "asked to"})
            return
        if text is not None:
            await send({"type": "websocket.send", "text": f"{NAME}:{text}"})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
        return
    raw_path = scope["raw_path"].decode()
    query = parse_qs(scope["query_string"].decode())
    last = raw_path.rstrip("/").rsplit("/", 1)[-1]

    if last == "download":
        size = int(query["size"][0])
        chunk = b"x" * 65536
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(size).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        remaining = size
        while remaining > 0:
            part = chunk[: min(remaining, len(chunk))]
            remaining -= len(part)
            await send({"type": "http.response.body", "body": part, "more_body": remaining > 0})
        return
    if last == "sse":
        # Each event after the first is written only once the test releases it, so a test can
        # prove event N reached the client before event N+1 existed.
        count = int(query.get("n", ["3"])[0])
        key = query.get("key", ["default"])[0]
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index in range(count):
            if index:
                await RELEASES.setdefault(key, asyncio.Queue()).get()
            event = f"id: {index}\ndata: event {index}\n\n".encode()
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if last == "release":
        RELEASES.setdefault(query["key"][0], asyncio.Queue()).put_nowait(None)
        await send_json(send, 200, {"released": True})
        return
    if last == "forever":
        # Streams until the client goes away; /_count tells whether the proxy let go.
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        gone = asyncio.Event()
        watcher = asyncio.create_task(watch_disconnect(receive, gone))
        OPEN_STREAMS[0] += 1
        try:
            while not gone.is_set():
                await send(
                    {"type": "http.response.body", "body": b"data: tick\n\n", "more_body": True}
                )
                await asyncio.sleep(0.05)
        finally:
            OPEN_STREAMS[0] -= 1
            watcher.cancel()
        return
    if raw_path.startswith("/script/"):
        # Response headers come from the query (`h=Name: value`, repeatable); the body counts
        # how often the origin was asked, so a test sees whether the cache answered.
        HITS[raw_path] = HITS.get(raw_path, 0) + 1
        headers = []
        for item in query.get("h", []):
            name, _, value = item.partition(":")
            headers.append((name.strip().lower().encode(), value.strip().encode()))
        etag = dict(headers).get(b"etag")
        if query.get("delay"):
            await asyncio.sleep(float(query["delay"][0]))
        status = int(query.get("status", ["200"])[0])
        for name, value in scope["headers"]:
            if name == b"if-none-match" and etag is not None and value == etag:
                await send({"type": "http.response.start", "status": 304, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
        body = f"{raw_path} #{HITS[raw_path]}".encode()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if last == "_hits":
        await send_json(send, 200, {"hits": HITS.get(query["path"][0], 0)})
        return
    if last == "_count":
        await send_json(send, 200, {"open_streams": OPEN_STREAMS[0]})
        return
    if last == "redirect":
        target = query["to"][0].encode()
        await send(
            {
                "type": "http.response.start",
                "status": 302,
                "headers": [(b"location", target), (b"content-location", target)],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return
    if last == "slow":
        # Counted in /_count while waiting; a proxy that gives up on us must close the
        # connection, which ends the wait early.
        gone = asyncio.Event()
        watcher = asyncio.create_task(watch_disconnect(receive, gone))
        OPEN_STREAMS[0] += 1
        try:
            await asyncio.wait_for(gone.wait(), float(query.get("delay", ["5"])[0]))
        except TimeoutError:
            await send_json(send, 200, {"slow": True})
        finally:
            OPEN_STREAMS[0] -= 1
            watcher.cancel()
        return
    if raw_path.startswith("/status/"):
        await send_json(send, int(last), {"status": int(last)})
        return
    if last == "hop":
        extra = [
            (b"connection", b"x-secret-hop"),
            (b"x-secret-hop", b"1"),
            (b"keep-alive", b"timeout=5"),
            (b"x-kept", b"yes"),
        ]
        await send_json(send, 200, {"hop": True}, extra)
        return

    size, digest = await read_body(receive)
    headers: dict[str, list[str]] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode(), []).append(value.decode("latin-1"))
    await send_json(
        send,
        200,
        {
            "origin": NAME,
            "method": scope["method"],
            "raw_path": raw_path,
            "query": scope["query_string"].decode(),
            "headers": headers,
            "body_size": size,
            "body_sha256": digest,
        },
    )
