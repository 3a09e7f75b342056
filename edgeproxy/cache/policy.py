"""Shared-cache policy per RFC 9111: pure functions over ASGI header lists, no I/O.

Everything here answers one question about a request or a stored response: may it be
stored (§3), how long is it fresh (§4.2), may it be served now (§4), how to validate it
(§4.3), what a 304 changes (§3.2), what an unsafe method invalidates (§4.4), and what
`Cache-Status` (RFC 9211) says about it. `CDN-Cache-Control` (RFC 9213) replaces
`Cache-Control` and `Expires` for response policy when it is present and valid.

Where the RFCs leave a choice, the choice is written next to the code as `Choice:`.
"""

from __future__ import annotations

import calendar
import datetime
import enum
import functools
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote_plus

from edgeproxy.types import Headers

# RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
DELTA_SECONDS_MAX: Final = 2147483648

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

_TCHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_DELTA_DIRECTIVES: Final = frozenset(
    {"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error", "max-stale", "min-fresh"}
)


@dataclass(frozen=True, slots=True)
class Directives:
    """Parsed cache directives (RFC 9111 §5.2), request or response side."""

    max_age: int | None = None
    s_maxage: int | None = None
    no_cache: bool = False
    no_cache_fields: frozenset[str] = frozenset()
    no_store: bool = False
    private: bool = False
    private_fields: frozenset[str] = frozenset()
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    must_understand: bool = False
    no_transform: bool = False
    immutable: bool = False
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None
    max_stale: int | None = None
    max_stale_any: bool = False
    min_fresh: int | None = None
    only_if_cached: bool = False


NO_DIRECTIVES: Final = Directives()


class _Invalid:
    """An argument that is neither a token nor a quoted-string."""


_INVALID: Final = _Invalid()
Argument = str | None | _Invalid


# -- field parsing ------------------------------------------------------------------------


def _values(headers: Headers, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def _split_list(text: str) -> list[str]:
    """RFC 9110 §5.6.1 list members, commas inside quoted-strings kept; empty ones dropped."""
    members: list[str] = []
    start = 0
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == ",":
            members.append(text[start:index])
            start = index + 1
    members.append(text[start:])
    return [member for member in (m.strip(" \t") for m in members) if member]


def _unquote(text: str) -> str | None:
    """The content of a whole quoted-string (RFC 9110 §5.6.4), or None if it is not one."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return None
    out: list[str] = []
    escaped = False
    for char in text[1:-1]:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return None
        else:
            out.append(char)
    return None if escaped else "".join(out)


def _directive(member: str) -> tuple[str, Argument] | None:
    """`token [ "=" ( token / quoted-string ) ]`; no whitespace is allowed around `=`."""
    end = 0
    while end < len(member) and member[end] in _TCHARS:
        end += 1
    if end == 0:
        return None
    name, rest = member[:end].lower(), member[end:]
    if not rest:
        return name, None
    if rest[0] != "=":
        # `max-age =5`: the name is there but its argument is malformed.
        return name, _INVALID
    raw = rest[1:]
    if raw and all(char in _TCHARS for char in raw):
        return name, raw
    unquoted = _unquote(raw)
    return name, _INVALID if unquoted is None else unquoted


def _delta_seconds(argument: Argument) -> int | None:
    """RFC 9111 §1.2.2 delta-seconds (1*DIGIT, capped at 2^31), or None if invalid."""
    if not isinstance(argument, str) or not argument.isascii() or not argument.isdigit():
        return None
    return min(int(argument), DELTA_SECONDS_MAX)


def _field_names(argument: Argument) -> frozenset[str]:
    if not isinstance(argument, str):
        return frozenset()
    return frozenset(name.lower() for name in _split_list(argument))


def _build(pairs: Iterable[tuple[str, Argument]]) -> Directives:
    """Directives from (name, argument) pairs, applying the duplicate and invalid rules.

    Choice (§4.2.1, duplicates): the first occurrence of a delta-seconds directive wins;
    later ones are ignored, whatever their value.
    Choice (§4.2.1, invalid values): an invalid `max-age`/`s-maxage` makes the response
    stale (0, the most restrictive reading); an invalid `max-stale`, `min-fresh`,
    `stale-while-revalidate` or `stale-if-error` is ignored (no stale serving is granted,
    and no unsatisfiable freshness demand is invented).
    Choice (§5.2.2.4, §5.2.2.7): a field-name argument that is not a valid list leaves
    `no-cache`/`private` unqualified, which is the restrictive reading.
    """
    deltas: dict[str, int | None] = {}
    flags: set[str] = set()
    no_cache = private = False
    no_cache_fields: set[str] = set()
    private_fields: set[str] = set()
    max_stale_any = False
    for name, argument in pairs:
        if name in _DELTA_DIRECTIVES:
            if name in deltas:
                continue
            value = _delta_seconds(argument)
            if name == "max-stale" and argument is None:
                max_stale_any = True
            elif value is None and name in {"max-age", "s-maxage"}:
                value = 0
            deltas[name] = value
        elif name in {"no-cache", "private"}:
            fields = _field_names(argument)
            if name == "no-cache":
                no_cache = no_cache or not fields
                no_cache_fields |= fields
            else:
                private = private or not fields
                private_fields |= fields
        else:
            flags.add(name)
    return Directives(
        max_age=deltas.get("max-age"),
        s_maxage=deltas.get("s-maxage"),
        no_cache=no_cache,
        no_cache_fields=frozenset(no_cache_fields),
        no_store="no-store" in flags,
        private=private,
        private_fields=frozenset(private_fields),
        public="public" in flags,
        must_revalidate="must-revalidate" in flags,
        proxy_revalidate="proxy-revalidate" in flags,
        must_understand="must-understand" in flags,
        no_transform="no-transform" in flags,
        immutable="immutable" in flags,
        stale_while_revalidate=deltas.get("stale-while-revalidate"),
        stale_if_error=deltas.get("stale-if-error"),
        max_stale=deltas.get("max-stale"),
        max_stale_any=max_stale_any,
        min_fresh=deltas.get("min-fresh"),
        only_if_cached="only-if-cached" in flags,
    )


def parse_cache_control(values: Sequence[bytes]) -> Directives:
    """Parse every `Cache-Control` field line of one message as a single list (§5.2).

    Directive names are case-insensitive; arguments may be tokens or quoted-strings
    (`max-age="5"` is 5, `max-age='5'` is invalid). Members that do not start with a
    token are skipped, so `ext="max-age=1"` never yields a max-age.
    """
    return _parse_cached(tuple(values))


@functools.lru_cache(maxsize=4096)
def _parse_cached(values: tuple[bytes, ...]) -> Directives:
    pairs: list[tuple[str, Argument]] = []
    for value in values:
        for member in _split_list(value.decode("latin-1")):
            pair = _directive(member)
            if pair is not None:
                pairs.append(pair)
    return _build(pairs)


# -- RFC 8941 dictionaries, for targeted fields (RFC 9213 §2.1) -----------------------------


class _SFError(ValueError):
    pass


_SF_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_SF_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_SF_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_SF_BYTES = re.compile(r":[A-Za-z0-9+/=]*:")

SFItem = bool | int | float | str | bytes | list[object]


class _SFParser:
    """Just enough of RFC 8941 §4.2 to accept or reject a Dictionary and read its values."""

    def __init__(self, text: str) -> None:
        self.text = text.strip(" ")
        self.pos = 0

    def dictionary(self) -> dict[str, SFItem]:
        members: dict[str, SFItem] = {}
        while self.pos < len(self.text):
            key = self._match(_SF_KEY)
            value: SFItem = True
            if self._peek() == "=":
                self.pos += 1
                value = self._inner_list() if self._peek() == "(" else self._bare_item()
            self._parameters()
            members[key] = value
            self._skip(" \t")
            if self.pos >= len(self.text):
                break
            if self._peek() != ",":
                raise _SFError(self.text)
            self.pos += 1
            self._skip(" \t")
            if self.pos >= len(self.text):
                raise _SFError(self.text)
        return members

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _skip(self, chars: str) -> None:
        while self._peek() and self._peek() in chars:
            self.pos += 1

    def _match(self, pattern: re.Pattern[str]) -> str:
        found = pattern.match(self.text, self.pos)
        if found is None:
            raise _SFError(self.text)
        self.pos = found.end()
        return found.group()

    def _parameters(self) -> None:
        while self._peek() == ";":
            self.pos += 1
            self._skip(" ")
            self._match(_SF_KEY)
            if self._peek() == "=":
                self.pos += 1
                self._bare_item()

    def _inner_list(self) -> list[object]:
        self.pos += 1
        items: list[object] = []
        while True:
            self._skip(" ")
            if self._peek() == ")":
                self.pos += 1
                return items
            items.append(self._bare_item())
            self._parameters()
            if self._peek() not in (" ", ")"):
                raise _SFError(self.text)

    def _bare_item(self) -> SFItem:
        char = self._peek()
        if char == "-" or char.isdigit():
            number = self._match(_SF_NUMBER)
            whole, _, fraction = number.lstrip("-").partition(".")
            if len(whole) > (12 if fraction else 15) or len(fraction) > 3:
                raise _SFError(number)
            return float(number) if fraction else int(number)
        if char == '"':
            return self._string()
        if char == "?":
            flag = self.text[self.pos : self.pos + 2]
            if flag not in ("?0", "?1"):
                raise _SFError(flag)
            self.pos += 2
            return flag == "?1"
        if char == ":":
            return self._match(_SF_BYTES).encode()
        return _Token(self._match(_SF_TOKEN))

    def _string(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\":
                escaped = self._peek()
                if escaped not in ('"', "\\"):
                    raise _SFError(self.text)
                out.append(escaped)
                self.pos += 1
            elif char == '"':
                return "".join(out)
            elif not " " <= char <= "~":
                raise _SFError(self.text)
            else:
                out.append(char)
        raise _SFError(self.text)


class _Token(str):
    """An sf-token, told apart from an sf-string."""


def parse_targeted(values: Sequence[bytes]) -> Directives | None:
    """A targeted field (RFC 9213 §2.2) as Directives; None if empty or not a valid Dictionary.

    Choice (RFC 9213 §2.2, "SHOULD NOT consume values that violate these inferred
    constraints"): a delta-seconds directive whose value is not a non-negative Integer
    (`max-age="60"`, `max-age=1.5`) is dropped, not coerced; a non-String argument to
    `no-cache`/`private` leaves them unqualified; `?0` flags are absent.
    """
    text = ",".join(value.decode("latin-1") for value in values).strip(" \t,")
    if not text:
        return None
    try:
        members = _SFParser(text).dictionary()
    except _SFError:
        return None
    if not members:
        return None
    pairs: list[tuple[str, Argument]] = []
    for name, value in members.items():
        if name in _DELTA_DIRECTIVES:
            if type(value) is int and value >= 0:
                pairs.append((name, str(value)))
            elif name == "max-stale" and value is True:
                pairs.append((name, None))
        elif name in {"no-cache", "private"}:
            if value is True:
                pairs.append((name, None))
            elif isinstance(value, str) and not isinstance(value, _Token):
                pairs.append((name, value))
            elif value is not False:
                pairs.append((name, _INVALID))
        elif value is True:
            pairs.append((name, None))
    return _build(pairs)


def response_directives(
    resp_headers: Headers, *, cdn_header: bytes | None = b"cdn-cache-control"
) -> tuple[Directives, bool]:
    """The directives that govern a response, and whether they came from the targeted field.

    RFC 9213 §2.1: a valid, non-empty targeted field replaces `Cache-Control` and
    `Expires`; otherwise `Cache-Control` applies.
    """
    if cdn_header is not None:
        targeted_values = _values(resp_headers, cdn_header)
        if targeted_values:
            targeted = parse_targeted(targeted_values)
            if targeted is not None:
                return targeted, True
    return parse_cache_control(_values(resp_headers, b"cache-control")), False


def request_directives(req_headers: Headers) -> Directives:
    """Request `Cache-Control`; without one, `Pragma: no-cache` means `no-cache`.

    RFC 9111 §5.4 deprecates Pragma; honouring it the RFC 7234 §5.4 way only ever makes
    the cache more conservative.
    """
    values = _values(req_headers, b"cache-control")
    if values:
        return parse_cache_control(values)
    pragma = ",".join(value.decode("latin-1") for value in _values(req_headers, b"pragma"))
    if any(member.lower() == "no-cache" for member in _split_list(pragma)):
        return Directives(no_cache=True)
    return NO_DIRECTIVES


# -- dates (RFC 9110 §5.6.7) ----------------------------------------------------------------

_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DAYS: Final = "(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAYS: Final = "(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_TIME: Final = r"(\d\d):(\d\d):(\d\d)"
_IMF_FIXDATE = re.compile(rf"{_DAYS}, (\d\d) ([a-z]{{3}}) (\d{{4}}) {_TIME} gmt", re.IGNORECASE)
_RFC850 = re.compile(rf"{_LONG_DAYS}, (\d\d)-([a-z]{{3}})-(\d\d) {_TIME} gmt", re.IGNORECASE)
_ASCTIME = re.compile(rf"{_DAYS} ([a-z]{{3}}) (\d\d?) {_TIME} (\d{{4}})", re.IGNORECASE)
_WHITESPACE = re.compile(r"[ \t]+")


def parse_http_date(value: bytes, *, now: float | None = None) -> float | None:
    """An HTTP-date (IMF-fixdate, RFC 850 or asctime) as a POSIX timestamp; None if invalid.

    Choice (RFC 9110 §5.6.7 "be robust"): day and month names and `GMT` are matched
    case-insensitively and runs of whitespace count as one space; the weekday is not
    checked against the date. `UTC`, numeric zones, missing commas and two-digit years
    outside RFC 850 are invalid. `now` only resolves RFC 850 two-digit years.
    """
    text = _WHITESPACE.sub(" ", value.decode("latin-1")).strip()
    if found := _IMF_FIXDATE.fullmatch(text):
        day, month, year, hour, minute, second = found.groups()
    elif found := _RFC850.fullmatch(text):
        day, month, short_year, hour, minute, second = found.groups()
        # RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in the past century.
        this_year = time.gmtime(time.time() if now is None else now).tm_year
        candidate = this_year - this_year % 100 + int(short_year)
        year = str(candidate - 100 if candidate > this_year + 50 else candidate)
    elif found := _ASCTIME.fullmatch(text):
        month, day, hour, minute, second, year = found.groups()
    else:
        return None
    month_number = _MONTHS.get(month.lower())
    if month_number is None:
        return None
    # second 60 is a leap second in the grammar; datetime rejects it, so count it forward.
    leap = int(second) == 60
    try:
        moment = datetime.datetime(
            int(year), month_number, int(day), int(hour), int(minute), 59 if leap else int(second)
        )
    except ValueError:
        return None
    return float(calendar.timegm(moment.timetuple()) + leap)


def format_http_date(timestamp: float) -> bytes:
    """IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(math.floor(timestamp))).encode()


def _date(headers: Headers, name: bytes) -> float | None:
    values = _values(headers, name)
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
    if shared and _values(req_headers, b"authorization"):
        allowed = directives.public or directives.must_revalidate
        if not (allowed or directives.s_maxage is not None):
            return False
    return (
        directives.public
        or directives.max_age is not None
        or (shared and directives.s_maxage is not None)
        or (not targeted and bool(_values(resp_headers, b"expires")))
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
    elif not targeted and _values(resp_headers, b"expires"):
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
    values = _values(resp_headers, b"age")
    if not values:
        return 0
    members = _split_list(values[0].decode("latin-1"))
    age = _delta_seconds(members[0]) if members else None
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
    for value in _values(resp_headers, b"vary"):
        for member in _split_list(value.decode("latin-1")):
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
        values = _values(req_headers, lowered.encode("latin-1"))
        if not values:
            continue
        combined = ", ".join(_split_list(",".join(v.decode("latin-1") for v in values)))
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
    etags = _values(stored_headers, b"etag")
    if etags:
        headers.append((b"if-none-match", b", ".join(etags)))
    last_modified = _values(stored_headers, b"last-modified")
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
        for value in _values(not_modified_headers, b"connection")
        for member in _split_list(value.decode("latin-1"))
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
    return _split_list(text)


def _weak_match(left: str, right: str) -> bool:
    """RFC 9110 §8.8.3.2 weak comparison: opaque tags equal, weakness ignored."""
    return left.removeprefix("W/") == right.removeprefix("W/")


def client_not_modified(req_headers: Headers, stored_headers: Headers) -> bool:
    """Should a (GET/HEAD) request be answered 304 from the stored response?

    RFC 9110 §13.1.2: If-None-Match is true when no stored ETag matches weakly (`*` matches
    any). §13.1.3: If-Modified-Since, only without If-None-Match, is false when the stored
    Last-Modified is no later than the given date; invalid dates leave it ignored.
    """
    if_none_match = _values(req_headers, b"if-none-match")
    if if_none_match:
        wanted = _entity_tags(",".join(v.decode("latin-1") for v in if_none_match))
        stored = _values(stored_headers, b"etag")
        if "*" in wanted:
            return True
        if not stored:
            return False
        etag = stored[0].decode("latin-1").strip()
        return any(_weak_match(tag, etag) for tag in wanted)
    if_modified_since = _values(req_headers, b"if-modified-since")
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


def _sf_token_or_string(text: str) -> str:
    if _SF_TOKEN.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


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
