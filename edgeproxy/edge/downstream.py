"""Calling an ASGI app from handler code and getting its answer as a Response object.

`ctx.next()` and `env.ASSETS.fetch()` run the app in a task of its own and return as soon
as its response has started: status and headers are there to inspect and change, while the
body is still streaming. Returned unchanged, the response streams through to the client
chunk by chunk (at most a few chunks are ever held); `await response.read()` buffers it.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

from starlette.responses import Response

from edgeproxy.edge.capture import outside_invocation
from edgeproxy.types import ASGIApp, Headers, Message, Receive, Scope, Send

# Chunks the app may run ahead of the reader before its `send` waits.
_BACKLOG = 4


class BodyStream:
    """A bounded channel of body chunks from the app's task to the reader."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._error: BaseException | None = None
        self.ended = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    async def put(self, chunk: bytes) -> None:
        while len(self._chunks) >= _BACKLOG and not self.ended:
            self._writable.clear()
            await self._writable.wait()
        if not self.ended:
            self._chunks.append(chunk)
            self._readable.set()

    def end(self, error: BaseException | None = None) -> None:
        """No more chunks; a reader past the last one gets `error` if given (idempotent)."""
        if not self.ended:
            self.ended = True
            self._error = error
            self._readable.set()
            self._writable.set()

    async def get(self) -> bytes:
        """The next chunk, or b"" at the end; raises the app's error if it failed midway."""
        while not self._chunks:
            if self.ended:
                if self._error is not None:
                    raise self._error
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        self._writable.set()
        return chunk


class DownstreamResponse(Response):
    """The response of the app after a handler (`await ctx.next()`, `env.ASSETS.fetch()`).

    `status_code` and `headers` (mutable) are there as soon as the app started answering.
    Return it unchanged (or with changed status/headers) and its body streams through.
    `await read()`, `text()` or `json()` buffer the body for inspection; the response can
    still be returned afterwards, and then sends the buffered body.
    """

    def __init__(
        self,
        status_code: int,
        raw_headers: Headers,
        stream: BodyStream,
        task: asyncio.Task[None] | None = None,
    ) -> None:
        # Not Response.__init__: that would add a content-length for an empty body.
        self.status_code = status_code
        self.raw_headers = raw_headers
        self.background = None
        self.body = b""
        self._stream: BodyStream | None = stream
        self._task = task
        self._sent = False

    @property
    def buffered(self) -> bool:
        """Whether the body has been read into `body`."""
        return self._stream is None

    async def read(self) -> bytes:
        """The whole body (read once from the app, then kept)."""
        if self._stream is not None:
            if self._sent:
                raise RuntimeError("the response body was already sent")
            chunks = []
            while chunk := await self._stream.get():
                chunks.append(chunk)
            self.body = b"".join(chunks)
            self._stream = None
        return bytes(self.body)

    async def text(self) -> str:
        """The body decoded with the charset of its content-type (default UTF-8)."""
        charset = "utf-8"
        for part in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip('"')
        return (await self.read()).decode(charset, errors="replace")

    async def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(await self.read())

    def close(self) -> None:
        """Stop the app if it is still producing a body nobody will read."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._stream is not None:
            self._stream.end(RuntimeError("the response was closed"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        if self._stream is None:
            await send({"type": "http.response.body", "body": bytes(self.body)})
            return
        if self._sent:
            raise RuntimeError("the response body was already sent")
        self._sent = True
        # Each chunk goes out as it comes: a stream (server-sent events) must not wait for
        # the chunk after it.
        while chunk := await self._stream.get():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def open_response(app: ASGIApp, scope: Scope, receive: Receive) -> DownstreamResponse:
    """Run `app` for `scope` until its response starts; its body follows as it is read.

    An exception the app raises before starting its response is raised here; one raised
    later is raised to whoever reads the body.
    """
    loop = asyncio.get_running_loop()
    started: asyncio.Future[tuple[int, Headers]] = loop.create_future()
    stream = BodyStream()

    async def send(message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if started.done():
                raise RuntimeError("the app started its response twice")
            started.set_result((message["status"], list(message.get("headers", []))))
        elif kind == "http.response.body":
            if not started.done():
                raise RuntimeError("the app sent a body before starting its response")
            if stream.ended:
                return
            chunk = message.get("body", b"")
            if chunk:
                await stream.put(bytes(chunk))
            if not message.get("more_body", False):
                stream.end()

    async def run() -> None:
        try:
            await app(scope, receive, send)
        except Exception as exc:
            if not started.done():
                started.set_exception(exc)
            stream.end(exc)
            return
        if not started.done():
            started.set_exception(RuntimeError("the app returned without sending a response"))
        stream.end()

    def finished(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            if not started.done():
                started.set_exception(RuntimeError("the app was cancelled"))
            stream.end(RuntimeError("the app was cancelled before its response ended"))

    task = loop.create_task(run(), context=outside_invocation())
    task.add_done_callback(finished)
    try:
        status, headers = await started
    except BaseException:
        task.cancel()
        raise
    return DownstreamResponse(status, headers, stream, task)
