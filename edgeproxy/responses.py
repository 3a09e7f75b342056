"""Small responses the gateway writes itself: errors, redirects, fixed bodies."""

from __future__ import annotations

import html
import json
import time
from email.utils import formatdate

from edgeproxy.exceptions import RequestError
from edgeproxy.types import Headers, Message, Scope, Send

_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The `Date` header value, formatted at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]


def wants_json(scope: Scope) -> bool:
    """JSON unless the client prefers HTML (browsers send text/html first)."""
    for name, value in scope["headers"]:
        if name == b"accept":
            return b"text/html" not in value
    return True


async def send_response(send: Send, status: int, headers: Headers, body: bytes) -> None:
    """A whole response whose headers are final."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_bytes(send: Send, status: int, headers: Headers, body: bytes) -> None:
    headers = [*headers, (b"date", http_date()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(scope: Scope, send: Send, error: RequestError, request_id: str) -> None:
    """The error page for `error`: its status, `X-Edge-Error`, and a short JSON or HTML body."""
    reason = _REASONS.get(error.status, "Error")
    if wants_json(scope):
        body = json.dumps(
            {
                "error": error.code,
                "status": error.status,
                "detail": error.detail,
                "request_id": request_id,
            }
        ).encode()
        content_type = b"application/json"
    else:
        body = (
            f"<!doctype html><title>{error.status} {reason}</title>"
            f"<h1>{error.status} {reason}</h1><p>{html.escape(error.detail)}</p>"
            f"<p><small>edgeproxy · {error.code} · request {request_id}</small></p>\n"
        ).encode()
        content_type = b"text/html; charset=utf-8"
    headers: Headers = [
        (b"content-type", content_type),
        (b"x-edge-error", error.code.encode()),
        (b"x-request-id", request_id.encode()),
        (b"cache-control", b"no-store"),
    ]
    await send_bytes(send, error.status, headers, body)


async def deny_websocket(scope: Scope, send: Send, error: RequestError, request_id: str) -> None:
    """Refuse a WebSocket handshake with the HTTP error, where the server supports it."""
    if "websocket.http.response" in scope.get("extensions", {}):

        async def as_denial(message: Message) -> None:
            await send({**message, "type": message["type"].replace("http.", "websocket.http.", 1)})

        await send_error(scope, as_denial, error, request_id)
    else:
        await send({"type": "websocket.close", "code": 1008})
