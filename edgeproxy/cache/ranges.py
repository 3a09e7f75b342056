"""Range requests answered from a stored complete response (RFC 9110 §14, RFC 9111 §3.4).

A stored 200 holds every byte of its representation, so a `Range: bytes=…` request it may
answer gets a 206 with just those bytes (or a 416 when none of them exist) instead of going
to the origin. `If-Range` is honoured as RFC 9110 §13.1.5 says: a strong entity tag match
or an exact Last-Modified date, else the whole 200.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeproxy.cache.dates import parse_http_date
from edgeproxy.sites.conditional import if_range_holds, parse_range
from edgeproxy.types import Headers

# Fields that describe the whole body and don't belong on a part of it.
_WHOLE_BODY = frozenset({b"content-length", b"content-range"})


@dataclass(frozen=True, slots=True)
class Partial:
    status: int  # 206 or 416
    headers: Headers
    body: bytes


def partial_response(
    request_headers: Headers, stored_headers: Headers, body: bytes
) -> Partial | None:
    """The 206/416 for a Range request served from a stored 200, or None to send the 200."""
    range_header = if_range = None
    for name, value in request_headers:
        if name == b"range":
            range_header = value
        elif name == b"if-range":
            if_range = value
    if range_header is None:
        return None
    etag, modified = "", -1
    for name, value in stored_headers:
        if name == b"etag" and not value.startswith(b"W/"):
            etag = value.decode("latin-1")
        elif name == b"last-modified":
            modified = _seconds(value)
    if not if_range_holds(if_range, etag, modified):
        return None
    size = len(body)
    wanted = parse_range(range_header, size)
    if wanted is None:
        return None
    kept = [(n, v) for n, v in stored_headers if n not in _WHOLE_BODY]
    if wanted == "unsatisfiable":
        kept.append((b"content-range", f"bytes */{size}".encode()))
        kept.append((b"content-length", b"0"))
        return Partial(416, kept, b"")
    start, end = wanted
    kept.append((b"content-range", f"bytes {start}-{end}/{size}".encode()))
    kept.append((b"content-length", str(end + 1 - start).encode()))
    return Partial(206, kept, body[start : end + 1])


def _seconds(value: bytes) -> int:
    parsed = parse_http_date(value)
    return -1 if parsed is None else int(parsed)
