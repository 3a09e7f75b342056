"""The request side of a handler chain: a replayable body, and rewritten requests.

A handler may read the request body and still forward the request with `ctx.next()`: the
body is recorded as handler code reads it, and every later reader (the next middleware, the
downstream app) gets the recorded part replayed before the rest streams from the client.
What no handler read is never buffered: it streams straight to the downstream app.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote

from starlette.requests import Request, empty_receive

from edgeproxy.types import Message, Receive, Scope

# Extensions that let an app hand the server a file to send itself; a handler wants bytes.
_FILE_EXTENSIONS = ("http.response.pathsend", "http.response.zerocopysend")


class RequestBody:
    """The client's body for one invocation: recorded while handlers read it."""

    __slots__ = ("_receive", "_streamer", "chunks", "client_gone", "complete")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.chunks: list[bytes] = []
        self.complete = False  # the recording holds the whole body
        self.client_gone = False  # a reader saw the client's http.disconnect
        self._streamer: object = None

    async def _next(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.client_gone = True
        return message

    def reader(self, *, record: bool = True) -> BodyReader:
        """A receive callable that replays the recording, then reads on from the client.

        With `record=False` (the downstream app), what it reads past the recording is not
        kept: large uploads stream through, and no later reader can have them.
        """
        return BodyReader(self, record=record)

    @property
    def streamed(self) -> bool:
        """Part of the body went downstream unrecorded: no other reader can have it."""
        return self._streamer is not None

    async def pull(self, reader: object = None, *, record: bool) -> Message:
        """The client's next message, recorded (or passed by `reader` unrecorded)."""
        if self._streamer is not None and self._streamer is not reader:
            raise RuntimeError(
                "the request body was already streamed to the downstream app; to forward it "
                "more than once, read it first with `await request.body()`"
            )
        message = await self._next()
        if message["type"] == "http.request":
            if record:
                self.chunks.append(message.get("body", b""))
                self.complete = not message.get("more_body", False)
            else:
                self._streamer = reader
        return message

    async def disconnect_only(self) -> Message:
        """Wait for the client to disconnect, dropping any body (the response is under way:
        nobody needs the request body any more)."""
        while True:
            message = await self._next()
            if message["type"] == "http.disconnect":
                return message

    async def until_disconnect(self) -> Message:
        """Wait for the client to disconnect, keeping any body that arrives meanwhile."""
        while True:
            if self.complete or self.streamed:
                message = await self._next()
            else:
                message = await self.pull(record=True)
            if message["type"] == "http.disconnect":
                return message


class BodyReader:
    """One reader's view of a `RequestBody` (one per Request handed to a step)."""

    __slots__ = ("_body", "_done", "_index", "_record")

    def __init__(self, body: RequestBody, *, record: bool) -> None:
        self._body = body
        self._record = record
        self._index = 0
        self._done = False

    @property
    def source(self) -> RequestBody:
        return self._body

    async def __call__(self) -> Message:
        body = self._body
        if self._done:
            return await body.until_disconnect()
        if self._index < len(body.chunks) or body.complete:
            data = b"".join(body.chunks[self._index :])
            self._index = len(body.chunks)
            self._done = body.complete
            return {"type": "http.request", "body": data, "more_body": not body.complete}
        message = await body.pull(self, record=self._record)
        if message["type"] == "http.request":
            self._index = len(body.chunks)
            self._done = not message.get("more_body", False)
        return message


class ReplacementBody:
    """The receive of a request whose body a handler replaced (see `rewrite_request`)."""

    def __init__(self, data: bytes, body: RequestBody | None) -> None:
        self.data = data
        self._body = body
        self._sent = False

    @property
    def source(self) -> RequestBody | None:
        return self._body

    def fresh(self) -> ReplacementBody:
        return ReplacementBody(self.data, self._body)

    async def __call__(self) -> Message:
        if not self._sent:
            self._sent = True
            return {"type": "http.request", "body": self.data, "more_body": False}
        if self._body is None:
            return {"type": "http.disconnect"}
        return await self._body.until_disconnect()


def receive_for(request: Request, body: RequestBody, *, record: bool) -> Receive:
    """The receive callable to hand the next step (or the downstream app) with `request`.

    Requests built on our readers, or with no receive at all, get a fresh replaying reader;
    a replaced body is replayed from its start; a receive the handler wrote is kept.
    """
    receive = request.receive
    if isinstance(receive, ReplacementBody):
        return receive.fresh()
    if isinstance(receive, BodyReader) or receive is empty_receive:
        return body.reader(record=record)
    return receive


def downstream_scope(scope: Scope, original: Scope) -> Scope:
    """A copy of `scope` for the downstream app: `raw_path` made to follow a changed `path`
    (a handler that built `Request({**scope, "path": p})` means `p`), no file-send extensions.
    """
    scope = dict(scope)
    if scope.get("path") != original.get("path") and scope.get("raw_path") == original.get(
        "raw_path"
    ):
        scope["raw_path"] = quote(scope["path"]).encode("ascii")
    extensions = scope.get("extensions")
    if extensions and any(name in extensions for name in _FILE_EXTENSIONS):
        scope["extensions"] = {k: v for k, v in extensions.items() if k not in _FILE_EXTENSIONS}
    return scope


def rewrite_request(
    request: Request,
    *,
    path: str | None = None,
    query: str | None = None,
    method: str | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    body: bytes | str | None = None,
) -> Request:
    """A copy of `request` with some parts replaced, to pass to `await ctx.next(request)`.

    - `path`: the new URL path, percent-encoded as in a URL (`/api/v2/items?x=1` also sets
      the query string unless `query` is given).
    - `query`: the new query string, without `?`.
    - `method`: the new method, e.g. `"POST"`.
    - `headers`: the complete new header list (start from `request.headers.items()`).
    - `body`: the new body (a str is UTF-8 encoded); `content-length` follows it.

    Without `body`, the original body is forwarded, including any part already read.
    """
    scope = dict(request.scope)
    if path is not None:
        path, sep, path_query = path.partition("?")
        raw = quote(path, safe="/%:@!$&'()*+,;=-._~")
        scope["raw_path"] = raw.encode("ascii")
        scope["path"] = unquote(raw)
        if sep and query is None:
            query = path_query
    if query is not None:
        scope["query_string"] = query.encode("latin-1")
    if method is not None:
        scope["method"] = method.upper()
    if headers is not None:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        scope["headers"] = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in pairs
        ]
    receive = request.receive
    if body is not None:
        data = body.encode() if isinstance(body, str) else bytes(body)
        scope["headers"] = [
            *(
                (name, value)
                for name, value in scope["headers"]
                if name not in (b"content-length", b"transfer-encoding")
            ),
            (b"content-length", str(len(data)).encode("ascii")),
        ]
        source = receive.source if isinstance(receive, BodyReader | ReplacementBody) else None
        receive = ReplacementBody(data, source)
    return Request(scope, receive)
