"""RFC 9110 conditional and range request parsing for the static server.

Each function reads one request header (Accept-Encoding, If-None-Match, If-Modified-Since,
If-Range, Range) and answers the question `edgeproxy.sites.static` asks of it.
"""

from __future__ import annotations

from datetime import UTC
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Literal

_CODING_ALIASES = {"x-gzip": "gzip"}


@lru_cache(maxsize=256)
def accepted_codings(accept_encoding: bytes) -> tuple[str, ...]:
    """`br` and `gzip`, best first (br on a tie), leaving out what the client refuses."""
    weights: dict[str, float] = {}
    for item in accept_encoding.decode("latin-1").lower().split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[_CODING_ALIASES.get(coding, coding)] = weight
    wildcard = weights.get("*", 0.0)
    ranked = sorted(("br", "gzip"), key=lambda coding: -weights.get(coding, wildcard))
    return tuple(coding for coding in ranked if weights.get(coding, wildcard) > 0)


def etag_matches(if_none_match: bytes, etag: str) -> bool:
    """Whether If-None-Match names `etag` (or is `*`), so a 304 may be sent."""
    # Weak comparison (RFC 9110 §13.1.2): a W/ prefix does not stop a GET from matching.
    value = if_none_match.decode("latin-1").strip()
    if value == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in value.split(","))


def _http_seconds(value: bytes) -> int | None:
    try:
        moment = parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def unmodified_since(if_modified_since: bytes, mtime: int) -> bool:
    """Whether a file last modified at `mtime` is unchanged since the If-Modified-Since date."""
    since = _http_seconds(if_modified_since)
    return since is not None and mtime <= since


def if_range_holds(if_range: bytes | None, etag: str, mtime: int) -> bool:
    """Whether a Range request may be answered with a 206 given its If-Range header."""
    # RFC 9110 §13.1.5: an entity tag must match strongly, a date exactly.
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith((b'"', b"W/")):
        return value.decode("latin-1") == etag
    return _http_seconds(value) == mtime


def parse_range(header: bytes, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """The inclusive byte range asked for; None to ignore the header and send everything.

    Several ranges are answered with the whole representation, which RFC 9110 §14.2 allows
    and which spares us multipart/byteranges.
    """
    unit, _, spec = header.decode("latin-1").partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = (part.strip() for part in spec.partition("-"))
    if not dash:
        return None
    if not first:
        if not _is_digits(last):
            return None
        # RFC 9110 §14.1.1: a suffix is satisfiable even against an empty file, which leaves
        # nothing to put in a 206; the (empty) 200 says the same.
        if size == 0:
            return None
        if int(last) == 0:
            return "unsatisfiable"
        return max(0, size - int(last)), size - 1
    if not _is_digits(first) or (last and not _is_digits(last)):
        return None
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


def _is_digits(text: str) -> bool:
    # str.isdigit() alone accepts "²" and other digits int() refuses.
    return text.isascii() and text.isdigit()
