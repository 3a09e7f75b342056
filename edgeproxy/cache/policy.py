"""Shared-cache policy per RFC 9111: pure functions over ASGI header lists, no I/O.

Everything here answers one question about a request or a stored response: may it be
stored (§3), how long is it fresh (§4.2), may it be served now (§4), how to validate it
(§4.3), what a 304 changes (§3.2), what an unsafe method invalidates (§4.4), and what
`Cache-Status` (RFC 9211) says about it. `CDN-Cache-Control` (RFC 9213) replaces
`Cache-Control` and `Expires` for response policy when it is present and valid.

Where the RFCs leave a choice, the choice is written next to the code as `Choice:`.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote_plus

from edgeproxy.cache.dates import parse_http_date
from edgeproxy.cache.directives import (
    SF_TOKEN,
    delta_seconds,
    field_values,
    request_directives,
    response_directives,
    split_list,
)
from edgeproxy.types import Headers

# RFC 9110 §15.1: statuses that are cacheable by default (heuristically cacheable).
HEURISTIC_STATUSES: Final = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})

# §5.2.2.3 must-understand: the final statuses whose semantics this cache implements.
# Choice: 206 (no range combining) and 304 (never stored itself) are not understood.
UNDERSTOOD_STATUSES: Final = frozenset(
    {200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 307, 308}
    | set(range(400, 418))
    | {421, 422, 426}
    | set(range(500, 506))
)

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# §3.1 / §3.2: fields never stored nor taken from a 304 (hop-by-hop per RFC 9110 §7.6.1,
# proxy-specific, framing of this message only).
_NOT_UPDATED: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authentication-info",
        b"proxy-authorization",
        b"content-length",
        b"content-range",
    }
)

# §4.1: fields whose values are case-insensitive, so a Vary match may lowercase them.
_CASELESS_VALUES: Final = frozenset({"accept-encoding", "accept-charset", "accept-language"})


def _date(headers: Headers, name: bytes) -> float | None:
    values = field_values(headers, name)
    # Choice (§4.2.1, duplicate Date/Expires lines): the first line is used.
    return parse_http_date(values[0]) if values else None


# -- storability (§3) ---------------------------------------------------------------------


def request_is_storable_method(method: str) -> bool:
    """Only GET responses are stored (§3: the method must be understood and cacheable).

    HEAD is answered from a stored GET (RFC 9110 §9.3.2) but its own responses are not
    stored; POST is cacheable only with Content-Location semantics this cache doesn't use.
    """
    return method.upper() == "GET"


def response_storable(
    method: str,
    status: int,
    req_headers: Headers,
    resp_headers: Headers,
    *,
    shared: bool = True,
    cdn_header: bytes | None = b"cdn-cache-control",
) -> bool:
    """May a shared cache store this response (RFC 9111 §3, §3.5)?

    A response with `Vary: *` is storable, but `evaluate` never serves it (§4.1), so a
    caller may as well not store it. 206 and 304 are never stored (no range combining).
    Choice (§5.2.2.7): a qualified `private="f"` is treated as unqualified by a shared
    cache (not stored), which the RFC notes is common and is the conservative reading.
    """
    if not request_is_storable_method(method) or not 200 <= status <= 599:
        return False
    if status in (206, 304):
        return False
    if request_directives(req_headers).no_store:
        return False
    directives, targeted = response_directives(resp_headers, cdn_header=cdn_header)
    if directives.must_understand:
        # §5.2.2.3: store only if the status is understood; then no-store may be ignored.
        if status not in UNDERSTOOD_STATUSES:
            return False
    elif directives.no_store:
        return False
    if shared and (directives.private or directives.private_fields):
        return False
    if shared and field_values(req_headers, b"authorization"):
        allowed = directives.public or directives.must_revalidate
        if not (allowed or directives.s_maxage is not None):
            return False
    return (
        directives.public
        or directives.max_age is not None
        or (shared and directives.s_maxage is not None)
        or (not targeted and bool(field_values(resp_headers, b"expires")))
        or status in HEURISTIC_STATUSES
    )


# -- freshness and age (§4.2) -------------------------------------------------------------


def freshness_lifetime(
    resp_headers: Headers,
    response_time: float,
    *,
    shared: bool = True,
    cdn_header: bytes | None = b"cdn-cache-control",
    default_ttl: float | None = None,
    max_ttl: float | None = None,
    status: int | None = None,
) -> float:
    """Seconds the response is fresh for, from its generation (§4.2.1), clamped to max_ttl.

    s-maxage (shared) > max-age > Expires - Date > 10% of Date - Last-Modified > default_ttl.
    A missing or invalid Date is taken as `response_time` (RFC 9110 §6.6.1); an invalid
    Expires means already expired (§5.3). Heuristics and `default_ttl` apply only to
    heuristically cacheable statuses or `public` responses (§4.2.2); pass `status`, or
    leave it None when `response_storable` already vouched for the response.
    """
    directives, targeted = response_directives(resp_headers, cdn_header=cdn_header)
    lifetime: float
    if shared and directives.s_maxage is not None:
        lifetime = directives.s_maxage
    elif directives.max_age is not None:
        lifetime = directives.max_age
    elif not targeted and field_values(resp_headers, b"expires"):
        expires = _date(resp_headers, b"expires")
        date = _date(resp_headers, b"date")
        date = response_time if date is None else date
        lifetime = 0.0 if expires is None else max(0.0, expires - date)
    elif status is not None and status not in HEURISTIC_STATUSES and not directives.public:
        lifetime = 0.0
    else:
        last_modified = _date(resp_headers, b"last-modified")
        date = _date(resp_headers, b"date")
        date = response_time if date is None else date
        if last_modified is not None and last_modified < date:
            lifetime = 0.1 * (date - last_modified)
        else:
            lifetime = default_ttl or 0.0
    if max_ttl is not None:
        lifetime = min(lifetime, max_ttl)
    return lifetime


def _age_value(resp_headers: Headers) -> int:
    """RFC 9111 §5.1: first member of the first Age line; invalid means ignored (0)."""
    values = field_values(resp_headers, b"age")
    if not values:
        return 0
    members = split_list(values[0].decode("latin-1"))
    age = delta_seconds(members[0]) if members else None
    return 0 if age is None else age


def current_age(
    resp_headers: Headers, request_time: float, response_time: float, now: float
) -> float:
    """RFC 9111 §4.2.3 current_age, times in POSIX seconds."""
    date = _date(resp_headers, b"date")
    date_value = response_time if date is None else date
    apparent_age = max(0.0, response_time - date_value)
    response_delay = response_time - request_time
    corrected_age_value = _age_value(resp_headers) + response_delay
    corrected_initial_age = max(apparent_age, corrected_age_value)
    resident_time = now - response_time
    return corrected_initial_age + resident_time


# -- keys (§2, §4.1) ----------------------------------------------------------------------

_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS: Final = {"http": ":80", "https": ":443"}


def _normalise_percent(raw: bytes) -> bytes:
    """RFC 3986 §6.2.2: decode percent-encoded unreserved bytes, uppercase the rest."""

    def replace(found: re.Match[bytes]) -> bytes:
        byte = int(found.group(1), 16)
        return bytes([byte]) if byte in _UNRESERVED else b"%" + found.group(1).upper()

    return _PERCENT.sub(replace, raw)


def cache_key(
    method: str,
    scheme: str,
    host: str,
    path_qs: bytes,
    *,
    query: Literal["keep", "sort", "ignore"] = "keep",
    allow: frozenset[str] = frozenset(),
) -> str:
    """The primary cache key: method, scheme, host and target (RFC 9111 §2).

    HEAD shares GET's key, since HEAD is answered from a stored GET. The host is
    lowercased without its default port, percent-encoding is normalised, an empty query is
    no query. `query`: keep it as sent, sort parameters by name (stable, so repeated names
    keep their order), or ignore it; a non-empty `allow` keeps only the parameters named
    there (names compared percent-decoded) before sorting.
    """
    method = method.upper()
    if method == "HEAD":
        method = "GET"
    scheme = scheme.lower()
    host = host.lower()
    default_port = _DEFAULT_PORTS.get(scheme)
    if default_port and host.endswith(default_port):
        host = host[: -len(default_port)]
    path, _, qs = path_qs.partition(b"#")[0].partition(b"?")
    path = _normalise_percent(path) or b"/"
    params = [param for param in _normalise_percent(qs).split(b"&") if param]
    if query == "ignore":
        params = []
    if allow:
        params = [p for p in params if unquote_plus(p.split(b"=", 1)[0].decode("latin-1")) in allow]
    if query == "sort":
        params.sort(key=lambda param: param.split(b"=", 1)[0])
    target = path + (b"?" + b"&".join(params) if params else b"")
    return f"{method} {scheme}://{host}{target.decode('latin-1')}"


def vary_names(resp_headers: Headers) -> tuple[str, ...] | None:
    """Lowercased, de-duplicated `Vary` field names in order; None for `Vary: *` (§4.1)."""
    names: list[str] = []
    for value in field_values(resp_headers, b"vary"):
        for member in split_list(value.decode("latin-1")):
            name = member.lower()
            if name == "*":
                return None
            if name not in names:
                names.append(name)
    return tuple(names)


def vary_key(names: Sequence[str], req_headers: Headers) -> tuple[tuple[str, str], ...]:
    """The secondary key: each nominated request field, normalised per §4.1.

    Field lines are combined, whitespace around list commas and at the ends is dropped,
    and values of fields known to be case-insensitive are lowercased. A field absent from
    the request has no entry, so it only matches a request where it is also absent.
    Choice (§4.1): members are not reordered, since order can carry preference.
    """
    key: list[tuple[str, str]] = []
    for name in names:
        lowered = name.lower()
        values = field_values(req_headers, lowered.encode("latin-1"))
        if not values:
            continue
        combined = ", ".join(split_list(",".join(v.decode("latin-1") for v in values)))
        key.append((lowered, combined.lower() if lowered in _CASELESS_VALUES else combined))
    return tuple(key)


# -- reuse (§4) ---------------------------------------------------------------------------


class Decision(enum.Enum):
    """What to do with a stored response for the presented request."""

    FRESH = "fresh"  # serve it
    STALE_OK = "stale-ok"  # serve it stale: the request's max-stale allows (§5.2.1.2)
    STALE_OK_WHILE_REVALIDATE = "stale-while-revalidate"  # serve, refresh in background
    STALE_REVALIDATE = "stale-revalidate"  # stale: validate before serving (§4.3)
    MUST_VALIDATE = "must-validate"  # fresh, but directives demand validation
    MISS = "miss"  # never served: Vary: * (§4.1); forward unconditionally
    GATEWAY_TIMEOUT = "gateway-timeout"  # only-if-cached and unusable: answer 504 (§5.2.1.7)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """`evaluate`'s answer.

    `ttl` is the remaining freshness (negative when stale); `fwd` is the RFC 9211 `fwd`
    reason when the request must go to the origin; `serve_on_error` says whether the stored
    response may be served if the origin then fails (RFC 5861 §4, RFC 9111 §4.2.4).
    """

    decision: Decision
    age: float
    ttl: float
    fwd: str | None = None
    serve_on_error: bool = False


def evaluate(
    stored_headers: Headers,
    stored_request_time: float,
    stored_response_time: float,
    req_headers: Headers,
    now: float,
    *,
    shared: bool = True,
    cdn_header: bytes | None = b"cdn-cache-control",
    status: int | None = None,
    default_ttl: float | None = None,
    max_ttl: float | None = None,
    stale_while_revalidate: float | None = None,
    stale_if_error: float | None = None,
) -> Evaluation:
    """May the stored response answer this request now (§4, §4.2.4, §5.2.1)?

    The caller has already matched the key and the Vary secondary key. The keyword
    settings are the route's: `stale_while_revalidate`/`stale_if_error` are the windows
    used when the response names none (an out-of-band contract, §4.2.4); None means no
    stale serving beyond what the origin and client allow.

    Choices: a qualified `no-cache="f"` is handled as unqualified (§5.2.2.4 notes this is
    common); `must-revalidate`, and for a shared cache `proxy-revalidate` and `s-maxage`,
    forbid serving stale in any way, including on error (§4.2.4, §5.2.2.2); request
    `max-age` bounds the age even when `max-stale` is present (§5.2.1.1).
    """
    lifetime = freshness_lifetime(
        stored_headers,
        stored_response_time,
        shared=shared,
        cdn_header=cdn_header,
        default_ttl=default_ttl,
        max_ttl=max_ttl,
        status=status,
    )
    age = current_age(stored_headers, stored_request_time, stored_response_time, now)
    ttl = lifetime - age
    if vary_names(stored_headers) is None:
        return Evaluation(Decision.MISS, age, ttl, fwd="vary-miss")
    response, _ = response_directives(stored_headers, cdn_header=cdn_header)
    request = request_directives(req_headers)
    staleness = max(0.0, -ttl)
    always_validate = response.no_cache or bool(response.no_cache_fields)
    no_stale = response.must_revalidate or (
        shared and (response.proxy_revalidate or response.s_maxage is not None)
    )

    error_window = response.stale_if_error
    window = float(stale_if_error or 0) if error_window is None else float(error_window)
    window = max(window, float(request.stale_if_error or 0))
    serve_on_error = not always_validate and (ttl > 0 or (not no_stale and staleness <= window))

    decision: Decision
    fwd: str | None = None
    too_old = request.max_age is not None and age > request.max_age
    too_close = request.min_fresh is not None and ttl < request.min_fresh
    if request.no_cache or too_old or too_close:
        decision, fwd = Decision.MUST_VALIDATE, "request"
    elif always_validate:
        decision, fwd = Decision.MUST_VALIDATE, "stale"
    elif ttl > 0:
        decision = Decision.FRESH
    elif no_stale:
        decision, fwd = Decision.STALE_REVALIDATE, "stale"
    elif request.max_stale_any or (
        request.max_stale is not None and staleness <= request.max_stale
    ):
        decision = Decision.STALE_OK
    elif staleness <= _window(response.stale_while_revalidate, stale_while_revalidate):
        decision, fwd = Decision.STALE_OK_WHILE_REVALIDATE, "stale"
    else:
        decision, fwd = Decision.STALE_REVALIDATE, "stale"

    validating = decision in (Decision.MUST_VALIDATE, Decision.STALE_REVALIDATE)
    if validating and request.only_if_cached:
        decision, fwd = Decision.GATEWAY_TIMEOUT, None
    return Evaluation(decision, age, ttl, fwd, serve_on_error)


def _window(from_response: int | None, default: float | None) -> float:
    if from_response is not None:
        return float(from_response)
    return -1.0 if default is None else default


# -- validation and updates (§4.3, §3.2) --------------------------------------------------


def conditional_headers(stored_headers: Headers) -> Headers:
    """Validators for revalidating a stored response (§4.3.1).

    If-None-Match carries the stored ETag (weak ones too, compared weakly by the origin);
    If-Modified-Since carries Last-Modified when it is a valid date (RFC 9110 §13.1.3
    makes recipients ignore an invalid one anyway).
    """
    headers: Headers = []
    etags = field_values(stored_headers, b"etag")
    if etags:
        headers.append((b"if-none-match", b", ".join(etags)))
    last_modified = field_values(stored_headers, b"last-modified")
    if last_modified and parse_http_date(last_modified[0]) is not None:
        headers.append((b"if-modified-since", last_modified[0]))
    return headers


def updated_headers(stored_headers: Headers, not_modified_headers: Headers) -> Headers:
    """The stored header list freshened with a 304's fields (§3.2, §4.3.4).

    Each field in the 304 replaces all stored lines of that name, in place; fields of the
    304 that the stored one lacked are appended. Excepted: Content-Length and the other
    framing, hop-by-hop, Connection-nominated and proxy fields. `Date` and `Age` are
    replaced too, so the caller must also reset the entry's request and response times to
    those of the validation exchange.
    """
    nominated = {
        member.lower().encode("latin-1")
        for value in field_values(not_modified_headers, b"connection")
        for member in split_list(value.decode("latin-1"))
    }
    excluded = _NOT_UPDATED | nominated
    fresh: dict[bytes, list[bytes]] = {}
    for name, value in not_modified_headers:
        if name not in excluded:
            fresh.setdefault(name, []).append(value)
    merged: Headers = []
    placed: set[bytes] = set()
    for name, value in stored_headers:
        if name not in fresh:
            merged.append((name, value))
        elif name not in placed:
            placed.add(name)
            merged.extend((name, new) for new in fresh[name])
    for name, values in fresh.items():
        if name not in placed:
            merged.extend((name, new) for new in values)
    return merged


def _entity_tags(text: str) -> list[str]:
    return split_list(text)


def _weak_match(left: str, right: str) -> bool:
    """RFC 9110 §8.8.3.2 weak comparison: opaque tags equal, weakness ignored."""
    return left.removeprefix("W/") == right.removeprefix("W/")


def client_not_modified(req_headers: Headers, stored_headers: Headers) -> bool:
    """Should a (GET/HEAD) request be answered 304 from the stored response?

    RFC 9110 §13.1.2: If-None-Match is true when no stored ETag matches weakly (`*` matches
    any). §13.1.3: If-Modified-Since, only without If-None-Match, is false when the stored
    Last-Modified is no later than the given date; invalid dates leave it ignored.
    """
    if_none_match = field_values(req_headers, b"if-none-match")
    if if_none_match:
        wanted = _entity_tags(",".join(v.decode("latin-1") for v in if_none_match))
        stored = field_values(stored_headers, b"etag")
        if "*" in wanted:
            return True
        if not stored:
            return False
        etag = stored[0].decode("latin-1").strip()
        return any(_weak_match(tag, etag) for tag in wanted)
    if_modified_since = field_values(req_headers, b"if-modified-since")
    if not if_modified_since:
        return False
    since = parse_http_date(if_modified_since[0])
    last_modified = _date(stored_headers, b"last-modified")
    if since is None or last_modified is None:
        return False
    return last_modified <= since


# -- invalidation (§4.4) ------------------------------------------------------------------


def invalidates(method: str, status: int) -> bool:
    """A non-error (2xx/3xx) response to an unsafe or unknown method invalidates (§4.4).

    The caller invalidates the target URI, and `Location`/`Content-Location` only when
    they share its origin.
    """
    return method.upper() not in SAFE_METHODS and 200 <= status < 400


# -- Cache-Status (RFC 9211) --------------------------------------------------------------

_FWD_REASONS: Final = frozenset(
    {"bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale", "partial"}
)


@functools.lru_cache(maxsize=256)
def _sf_token_or_string(text: str) -> str:
    if SF_TOKEN.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def hit_status(ttl: float) -> bytes:
    """`cache_status(True, ttl=ttl)`, the member of every fresh hit, without the general
    case's checks and joins."""
    return b"edgeproxy; hit; ttl=%d" % math.floor(ttl)


def cache_status(
    hit: bool,
    *,
    fwd: str | None = None,
    stored: bool | None = None,
    ttl: float | None = None,
    detail: str | None = None,
    name: str = "edgeproxy",
    fwd_status: int | None = None,
    collapsed: bool = False,
) -> bytes:
    """One RFC 9211 Cache-Status member, e.g. `edgeproxy; hit; ttl=42`.

    `ttl` is floored to whole seconds, so a just-stale response shows a negative ttl.
    Raises ValueError for an `fwd` that RFC 9211 §2.2 does not define.
    """
    if fwd is not None and fwd not in _FWD_REASONS:
        raise ValueError(f"fwd={fwd!r} is not an RFC 9211 reason (known: {sorted(_FWD_REASONS)})")
    parts = [_sf_token_or_string(name)]
    if hit:
        parts.append("hit")
    if fwd is not None:
        parts.append(f"fwd={fwd}")
    if fwd_status is not None:
        parts.append(f"fwd-status={fwd_status}")
    if stored:
        parts.append("stored")
    if collapsed:
        parts.append("collapsed")
    if ttl is not None:
        parts.append(f"ttl={math.floor(ttl)}")
    if detail is not None:
        parts.append(f"detail={_sf_token_or_string(detail)}")
    return "; ".join(parts).encode("latin-1")
