"""`env`: a handler's variables and bindings, and the `ASSETS` binding to static files."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from urllib.parse import quote, unquote, urlsplit

from starlette.requests import Request

from edgeproxy.edge.downstream import DownstreamResponse, open_response
from edgeproxy.types import ASGIApp, Headers, Message

# Headers of the handler's request that make no sense on a bodyless GET to the assets.
_NOT_FORWARDED = (b"content-length", b"transfer-encoding", b"content-type", b"expect")


class Env(Mapping[str, object]):
    """The second argument of every handler: `env.NAME` or `env["NAME"]`.

    Holds the site's variables for the request's environment (production or preview) and
    the bindings the gateway supplies (`env.ASSETS`, durable-object namespaces). Asking
    for a name that is not there raises AttributeError (KeyError with `[]`) listing the
    names that are. Read-only.
    """

    __slots__ = ("_values",)

    def __init__(
        self,
        variables: Mapping[str, str] | None = None,
        bindings: Mapping[str, object] | None = None,
    ) -> None:
        variables = dict(variables or {})
        bindings = dict(bindings or {})
        clash = sorted(set(variables) & set(bindings))
        if clash:
            raise ValueError(
                f"env names used for both a variable and a binding: {', '.join(clash)}"
            )
        self._values: dict[str, object] = {**variables, **bindings}

    def _unknown(self, name: str) -> str:
        known = ", ".join(sorted(self._values)) or "none"
        return f"env has no {name!r} (known: {known})"

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(self._unknown(name)) from None

    def __getitem__(self, name: str) -> object:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(self._unknown(name)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Env({', '.join(sorted(self._values))})"


class _NoBody:
    """The receive of a synthesized GET: an empty body, then nothing until cancelled."""

    def __init__(self) -> None:
        self._sent = False

    async def __call__(self) -> Message:
        if not self._sent:
            self._sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # The handler's client is not this app's client: no disconnect ever comes.
        never: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        return await never


class Assets:
    """`env.ASSETS`: the deployment's static files, fetched from handler code.

    `await env.ASSETS.fetch("/404.html")` or `await env.ASSETS.fetch(request)` asks the
    static server for that path with a GET (HEAD for a HEAD request) and returns its
    response like `ctx.next()` does: status and headers now, the body streaming or read
    with `await response.read()` / `text()` / `json()`.
    """

    def __init__(self, app: ASGIApp, *, host: str = "localhost") -> None:
        self.app = app
        self.host = host

    async def fetch(
        self, target: str | Request, *, headers: Mapping[str, str] | None = None
    ) -> DownstreamResponse:
        """Fetch a path (`/a/b?x=1`, or a full URL whose path is used) or a Request's URL.

        A Request passes its headers (conditional requests work); `headers` are added.
        """
        method = "GET"
        if isinstance(target, Request):
            raw_path: bytes = target.scope.get("raw_path") or quote(target.url.path).encode()
            query: bytes = target.scope.get("query_string", b"")
            sent: Headers = [(k, v) for k, v in target.scope["headers"] if k not in _NOT_FORWARDED]
            method = "HEAD" if target.method == "HEAD" else "GET"
        else:
            parts = urlsplit(target)
            raw_path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~").encode("ascii")
            query = parts.query.encode("latin-1")
            sent = [(b"host", (parts.netloc or self.host).encode("latin-1"))]
        for name, value in (headers or {}).items():
            sent.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": sent,
            "client": None,
            "server": None,
            "extensions": {},
        }
        return await open_response(self.app, scope, _NoBody())
