"""Cache directives (RFC 9111 §5.2) from `Cache-Control` and targeted fields (RFC 9213).

Parses request and response `Cache-Control` (§5.2) and targeted fields such as
`CDN-Cache-Control` (an RFC 8941 Dictionary) into one `Directives` value, plus the
list and delta-seconds helpers the rest of the cache policy reads headers with. Pure
functions, no I/O.

Where the RFCs leave a choice, the choice is written next to the code as `Choice:`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from edgeproxy.types import Headers

# RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
DELTA_SECONDS_MAX: Final = 2147483648

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


def field_values(headers: Headers, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def split_list(text: str) -> list[str]:
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


def delta_seconds(argument: Argument) -> int | None:
    """RFC 9111 §1.2.2 delta-seconds (1*DIGIT, capped at 2^31), or None if invalid."""
    if not isinstance(argument, str) or not argument.isascii() or not argument.isdigit():
        return None
    return min(int(argument), DELTA_SECONDS_MAX)


def _field_names(argument: Argument) -> frozenset[str]:
    if not isinstance(argument, str):
        return frozenset()
    return frozenset(name.lower() for name in split_list(argument))


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
            value = delta_seconds(argument)
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
        for member in split_list(value.decode("latin-1")):
            pair = _directive(member)
            if pair is not None:
                pairs.append(pair)
    return _build(pairs)


# -- RFC 8941 dictionaries, for targeted fields (RFC 9213 §2.1) -----------------------------


class _SFError(ValueError):
    pass


_SF_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
SF_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
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
        return _Token(self._match(SF_TOKEN))

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
        targeted_values = field_values(resp_headers, cdn_header)
        if targeted_values:
            targeted = parse_targeted(targeted_values)
            if targeted is not None:
                return targeted, True
    return parse_cache_control(field_values(resp_headers, b"cache-control")), False


def request_directives(req_headers: Headers) -> Directives:
    """Request `Cache-Control`; without one, `Pragma: no-cache` means `no-cache`.

    RFC 9111 §5.4 deprecates Pragma; honouring it the RFC 7234 §5.4 way only ever makes
    the cache more conservative.
    """
    values = field_values(req_headers, b"cache-control")
    if values:
        return parse_cache_control(values)
    pragma = ",".join(value.decode("latin-1") for value in field_values(req_headers, b"pragma"))
    if any(member.lower() == "no-cache" for member in split_list(pragma)):
        return Directives(no_cache=True)
    return NO_DIRECTIVES
