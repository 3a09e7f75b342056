"""Request paths: validation, normalisation, and keeping the raw and normalised forms aligned.

Routing matches the normalised path while the origin receives the raw one, so anything that
could make an origin read the raw path differently from how it was routed is refused (400):
encoded `/` and `\\`, control bytes, and dot-segments that leave the root or cross a route's
prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import product

from edgeproxy.exceptions import BadRequest
from edgeproxy.memo import Memo

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _escape_table() -> dict[str, str]:
    # Every spelling of every two-digit escape mapped to its normal form, so normalising a
    # segment is one dict lookup per escape rather than a regex callback.
    table = {}
    for byte in range(256):
        canonical = f"{byte:02X}"
        normal = chr(byte) if byte in _UNRESERVED else f"%{canonical}"
        for spelling in product(*({digit, digit.lower()} for digit in canonical)):
            table["".join(spelling)] = normal
    return table


_ESCAPES = _escape_table()
# Space and DEL are here too: either would end or corrupt the request line sent upstream.
_BAD_BYTE = re.compile(rb"[\x00-\x20\x7f-\xff\\]")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})|%(?:2[Ff]|5[Cc]|00)")
_REFUSED_ESCAPES = {
    b"%2F": ("encoded slash (%2F)", "; origins disagree on whether it separates segments"),
    b"%5C": ("encoded backslash (%5C)", "; some origins read it as a path separator"),
    b"%00": ("encoded NUL (%00)", ""),
}
_DOTS = (".", "..")
_PARSED: Memo[bytes, RequestPath] = Memo()


@dataclass(frozen=True, slots=True)
class RequestPath:
    """A validated request path in both its raw and its normalised form.

    `segments` is what routing compares; `raw` and `raw_segments` are what the origin gets.
    Both split after the leading `/`, so `/a/b/` gives `(b"a", b"b", b"")` and `/` gives
    `(b"",)`; empty segments in the middle (`/a//b`) are kept.
    """

    raw: bytes
    raw_segments: tuple[bytes, ...]
    segments: tuple[str, ...]
    has_dots: bool

    @property
    def normalized(self) -> str:
        return "/" + "/".join(self.segments)


def parse_path(raw_path: bytes) -> RequestPath:
    """Validate `raw_path` (ASGI `scope["raw_path"]`, no query) and normalise it.

    Normalising decodes escapes of unreserved characters (`%41` -> `A`), upper-cases the hex
    of every other escape (`%3f` -> `%3F`) and resolves `.` and `..`. Raises `BadRequest`
    for anything an origin could read differently.
    """
    # The answer depends on the bytes alone and is immutable: popular paths are parsed once.
    parsed = _PARSED.get(raw_path)
    if parsed is None:
        parsed = _PARSED.remember(raw_path, _parse(raw_path))
    return parsed


def _parse(raw_path: bytes) -> RequestPath:
    if not raw_path.startswith(b"/"):
        raise BadRequest(
            f"request target {_show(raw_path)} is not a path starting with '/' "
            "(absolute-form and '*' targets are not routed)"
        )
    bad = _BAD_BYTE.search(raw_path)
    if bad is not None:
        raise _bad_byte(raw_path, bad.start())
    text = raw_path.decode("ascii")
    raw_segments = tuple(raw_path[1:].split(b"/"))
    if "%" not in text and "/." not in text:
        return RequestPath(raw_path, raw_segments, tuple(text[1:].split("/")), has_dots=False)

    escape = _BAD_ESCAPE.search(raw_path)
    if escape is not None:
        found = raw_path[escape.start() : escape.start() + 3]
        what, why = _REFUSED_ESCAPES.get(
            found.upper(), (f"malformed percent-escape {_show(found)}", "")
        )
        raise BadRequest(f"{what} at offset {escape.start()} in path {_show(raw_path)}{why}")
    decoded = [_normalize(segment) for segment in text[1:].split("/")]
    if not any(segment in _DOTS for segment in decoded):
        return RequestPath(raw_path, raw_segments, tuple(decoded), has_dots=False)
    return RequestPath(raw_path, raw_segments, _remove_dots(decoded, raw_path), has_dots=True)


def check_prefix_boundary(path: RequestPath, prefix_length: int) -> None:
    """Refuse a path whose dot-segments cross its first `prefix_length` segments.

    A route chose that prefix on the normalised path; an origin reading the raw path agrees
    only if the raw prefix holds the same segments and nothing after it climbs back out.
    `/admin/x` reached as `/api/../admin/x`, or `/api/x` as `/api/../api/x`, would let a
    request routed as one prefix be read by the origin (or a stripped rewrite) as another.
    Paths without dot-segments always agree, so callers skip this when `has_dots` is false.
    """
    raw = path.raw_segments
    prefix = tuple(_normalize(segment.decode("ascii")) for segment in raw[:prefix_length])
    if prefix != path.segments[:prefix_length]:
        target = _join(path.segments[:prefix_length])
        raise BadRequest(
            f"path {_show(path.raw)} reaches the route prefix {target!r} only through "
            "dot-segments; request the normalized path instead"
        )
    depth = 0
    for segment in raw[prefix_length:]:
        name = _normalize(segment.decode("ascii"))
        if name == "..":
            depth -= 1
            if depth < 0:
                raise BadRequest(
                    f"path {_show(path.raw)} climbs out of the route prefix "
                    f"{_join(prefix)!r} with '..'"
                )
        elif name != ".":
            depth += 1


def _normalize(segment: str) -> str:
    if "%" not in segment:
        return segment
    head, *escapes = segment.split("%")
    return head + "".join(_ESCAPES[escape[:2]] + escape[2:] for escape in escapes)


def _remove_dots(segments: list[str], raw_path: bytes) -> tuple[str, ...]:
    # RFC 3986 remove_dot_segments on whole segments, except that climbing above the root is
    # refused rather than clamped: a client sending that is probing, not browsing.
    resolved: list[str] = []
    last = len(segments) - 1
    for position, segment in enumerate(segments):
        if segment not in _DOTS:
            resolved.append(segment)
            continue
        if segment == "..":
            if not resolved:
                raise BadRequest(f"path {_show(raw_path)} climbs above the root with '..'")
            resolved.pop()
        if position == last:
            resolved.append("")
    return tuple(resolved)


def _bad_byte(raw_path: bytes, offset: int) -> BadRequest:
    byte = raw_path[offset]
    if byte == 0:
        what = "NUL byte"
    elif byte == 0x5C:
        what = "backslash"
    elif byte >= 0x80:
        what = f"raw non-ASCII byte 0x{byte:02x} (percent-encode it)"
    else:
        what = f"control or space byte 0x{byte:02x}"
    return BadRequest(f"{what} at offset {offset} in path {_show(raw_path)}")


def _join(segments: tuple[str, ...]) -> str:
    return "/" + "/".join(segments)


def _show(raw: bytes) -> str:
    return repr(raw.decode("ascii", "backslashreplace"))
