"""Header handling at the proxy boundary: hop-by-hop removal, X-Forwarded-*, Via, header rules."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from edgeproxy.config.models import HeaderOps
from edgeproxy.types import Headers

# RFC 9110 §7.6.1 connection-specific fields, plus the framing the proxy redoes itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# `Expect: 100-continue` is answered by our own server; the origin gets the whole body.
_REQUEST_DROP = HOP_BY_HOP | {b"content-length", b"host", b"expect"}
_FORWARDED = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
        b"forwarded",
    }
)
VIA = b"1.1 edgeproxy"
VIA_FIELD = b"via: " + VIA + b"\r\n"


class Networks:
    """A set of IP networks, asked per request whether an address is in it (cached)."""

    def __init__(self, networks: Sequence[IPv4Network | IPv6Network]) -> None:
        self._networks = tuple(networks)
        self.contains = functools.lru_cache(maxsize=4096)(self._contains)

    def _contains(self, host: str) -> bool:
        if not self._networks:
            return False
        try:
            address = ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


class TrustedProxies(Networks):
    """Which peers may tell us who the client is."""

    def __init__(self, networks: Sequence[IPv4Network | IPv6Network]) -> None:
        super().__init__(networks)
        self.trusts = self.contains

    def client_ip(self, peer: str, forwarded_for: Iterable[bytes]) -> str:
        """The client's address: the peer, or from a trusted peer the rightmost untrusted hop."""
        if not self.trusts(peer):
            return peer
        hops = [
            hop.strip() for value in forwarded_for for hop in value.decode("latin-1").split(",")
        ]
        for hop in reversed(hops):
            if hop and not self.trusts(hop):
                return hop
        return hops[0] if hops and hops[0] else peer


class HeaderRules:
    """A compiled `headers.request` or `headers.response` block."""

    __slots__ = ("_add", "_drop", "_set", "empty")

    def __init__(self, ops: HeaderOps) -> None:
        self._set = [(name.lower().encode(), value.encode()) for name, value in ops.set.items()]
        self._add = [
            (name.lower().encode(), value.encode())
            for name, values in ops.add.items()
            for value in ([values] if isinstance(values, str) else values)
        ]
        self._drop = frozenset(name.lower().encode() for name in ops.remove) | {
            n for n, _ in self._set
        }
        self.empty = not (self._set or self._add or self._drop)

    def apply(self, headers: Headers) -> Headers:
        if self.empty:
            return headers
        kept = [(name, value) for name, value in headers if name not in self._drop]
        return kept + self._set + self._add


def upstream_request_headers(
    headers: Headers,
    *,
    peer_trusted: bool,
    peer: str,
    scheme: str,
    host: bytes,
    prefix: str | None,
    upstream_host: bytes,
) -> Headers:
    """Headers for the origin: client framing and hop-by-hop dropped, X-Forwarded-* set."""
    out: Headers = [(b"host", upstream_host)]
    forwarded_for: list[bytes] = []
    proto = scheme.encode()
    forwarded_host = host
    via: list[bytes] = []
    connection: list[bytes] = []
    # One pass; ordinary headers cost one dict lookup each.
    for name, value in headers:
        kind = _REQUEST_SPECIAL.get(name)
        if kind is None:
            out.append((name, value))
        elif kind is _FORWARDED_KIND:
            if peer_trusted:
                if name == b"x-forwarded-for":
                    forwarded_for.append(value)
                elif name == b"x-forwarded-proto":
                    proto = value
                elif name == b"x-forwarded-host":
                    forwarded_host = value
                else:
                    out.append((name, value))
        elif kind is _VIA_KIND:
            via.append(value)
        elif name == b"connection":
            connection.append(value)
    if connection:
        out = _without_connection_tokens(out, connection, keep=b"host")
    forwarded_for.append(peer.encode())
    out.append((b"x-forwarded-for", b", ".join(forwarded_for)))
    out.append((b"x-forwarded-proto", proto))
    out.append((b"x-forwarded-host", forwarded_host))
    if prefix:
        out.append((b"x-forwarded-prefix", prefix.encode()))
    via.append(VIA)
    out.append((b"via", b", ".join(via)))
    return out


def client_response_headers(headers: Headers, relocate: RelocateFn | None) -> Headers:
    """The origin's headers (lowercase names) for the client: hop-by-hop out, Location mapped."""
    # Most fields pass as they are; comprehensions sort them out without a Python-level
    # branch per field, and only the few special ones are looked at one by one.
    out = [header for header in headers if header[0] not in _RESPONSE_SPECIAL]
    via: list[bytes] = []
    if len(out) != len(headers):
        connection: list[bytes] = []
        for name, value in [header for header in headers if header[0] in _RESPONSE_SPECIAL]:
            kind = _RESPONSE_SPECIAL[name]
            if kind is _LOCATION_KIND:
                out.append((name, relocate(value) if relocate is not None else value))
            elif kind is _VIA_KIND:
                via.append(value)
            elif name == b"connection":
                connection.append(value)
        if connection:
            out = _without_connection_tokens(out, connection)
    if list(map(_name, out)).count(b"content-length") > 1:
        # Our client framed the body by the first; relaying several (or differing) values
        # would let the client frame it differently (RFC 9112 §6.3). Re-frame instead.
        out = [(name, value) for name, value in out if name != b"content-length"]
    via.append(VIA)
    out.append((b"via", b", ".join(via)))
    return out


def relayed_block(headers: Headers, fields: bytes) -> bytes | None:
    """The origin's header block (`fields`, the raw lines of `headers`) to pass on as it is,
    when only our Via is to be added; None when its fields need rewriting one by one.

    It passes with one Content-Length framing the body and nothing hop-by-hop, no Via to
    merge, no location to map back: except `Connection: keep-alive` (or `close`) and
    `Keep-Alive`, which name no other header and nearly every origin sends (nginx always
    does). Their lines are cut out.
    """
    names = list(map(_name, headers))
    if names.count(b"content-length") != 1:
        return None
    special = _RESPONSE_SPECIAL_NAMES.intersection(names)
    if not special:
        return fields
    if not special <= _NAMELESS_HOP_BY_HOP:
        return None
    if b"connection" in special:
        if names.count(b"connection") != 1:
            return None
        value = headers[names.index(b"connection")][1].lower()
        if value not in _NAMELESS_CONNECTION and not _NAMELESS_CONNECTION.issuperset(
            token.strip() for token in value.split(b",")
        ):
            return None
    for name in special:
        fields = _without_lines(fields, _LINE_START[name])
    return fields


def _without_lines(fields: bytes, line_start: bytes) -> bytes:
    """`fields` without the lines beginning with `line_start` (CRLF and a lowercase name
    with its colon)."""
    # Each line follows a CRLF here, at the offset where it starts in `fields`.
    lowered = b"\r\n" + fields.lower()
    start = lowered.find(line_start)
    if start < 0:
        return fields
    kept, at = [], 0
    while start >= 0:
        kept.append(fields[at:start])
        at = lowered.find(b"\r\n", start + 2)
        start = lowered.find(line_start, at)
    kept.append(fields[at:])
    return b"".join(kept)


def _without_connection_tokens(headers: Headers, values: list[bytes], keep: bytes = b"") -> Headers:
    if all(value.lower() in _NAMELESS_CONNECTION for value in values):
        return headers
    tokens = {token.strip().lower() for value in values for token in value.split(b",")}
    # `Connection: keep-alive` / `close` name no header; most messages carry only those.
    tokens -= {b"keep-alive", b"close", keep}
    if not tokens:
        return headers
    return [(name, value) for name, value in headers if name not in tokens]


RelocateFn = Callable[[bytes], bytes]

_DROP_KIND, _FORWARDED_KIND, _VIA_KIND, _LOCATION_KIND = "drop", "forwarded", "via", "location"
_name = operator.itemgetter(0)
_NAMELESS_CONNECTION = frozenset({b"keep-alive", b"close"})
_NAMELESS_HOP_BY_HOP = frozenset({b"connection", b"keep-alive"})
_LINE_START = {name: b"\r\n" + name + b":" for name in _NAMELESS_HOP_BY_HOP}
# Origins that map headers CGI-style read `X_Forwarded_For` as X-Forwarded-For; such
# lookalikes are dropped outright (nginx drops every underscored header by default).
_LOOKALIKES = {name.replace(b"-", b"_") for name in _FORWARDED | {b"x-real-ip"}}
_REQUEST_SPECIAL = {
    **dict.fromkeys(_REQUEST_DROP, _DROP_KIND),
    **dict.fromkeys(_LOOKALIKES, _DROP_KIND),
    **dict.fromkeys(_FORWARDED, _FORWARDED_KIND),
    b"via": _VIA_KIND,
}
_RESPONSE_SPECIAL = {
    **dict.fromkeys(HOP_BY_HOP, _DROP_KIND),
    b"via": _VIA_KIND,
    b"location": _LOCATION_KIND,
    b"content-location": _LOCATION_KIND,
}
_RESPONSE_SPECIAL_NAMES = frozenset(_RESPONSE_SPECIAL)
