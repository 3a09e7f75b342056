"""`_redirects` files as Netlify and Cloudflare Pages read them, compiled once per deployment.

A line is `source destination [status]`; Netlify also takes `key=value` query conditions
between the two and a `!` after the status. The first rule in file order that matches wins.
Sources are URL patterns (`edgeproxy.sites.patterns`), as in `_headers`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus

from edgeproxy.sites.patterns import (
    ABSOLUTE_URL,
    PLACEHOLDER,
    PORT,
    Dialect,
    PatternError,
    PlaceholderTemplate,
    UrlPattern,
    claim,
    compile_pattern,
)

# Cloudflare Pages' limits (its `_redirects` parser); applied to both dialects so a site's
# per-request matching work stays bounded.
MAX_LINE_LENGTH = 2000
MAX_STATIC_RULES = 2000
MAX_DYNAMIC_RULES = 100

_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_STATUS_CODES: dict[Dialect, frozenset[int]] = {
    "cloudflare": _REDIRECT_CODES | {200},
    "netlify": _REDIRECT_CODES | {200, 404, 410, 451},
}
_DEFAULT_STATUS: dict[Dialect, int] = {"cloudflare": 302, "netlify": 301}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A location also goes out as a header or a request target, where a space would end it.
_UNSAFE_LOCATION = re.compile(r"[\x00-\x20\x7f]")
_STATUS = re.compile(r"(\d{3})(!?)")
_PRINTABLE_ASCII = "".join(chr(code) for code in range(0x21, 0x7F))


@dataclass(frozen=True, slots=True)
class RedirectRule:
    """One accepted line of `_redirects`, as written (`force` is always True on Cloudflare)."""

    line: int
    source: str
    destination: str
    status: int
    force: bool
    query: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RedirectMatch:
    """What a request matched: where to send it and how.

    `location` has placeholders filled and the query string settled. A rewrite serves
    `location` (a path on this site) with `status`; a proxy (Netlify only) fetches it from
    another host; anything else is a redirect with `location` as its `Location`.
    """

    rule: RedirectRule
    location: str
    status: int
    is_rewrite: bool
    is_proxy: bool
    force: bool


@dataclass(frozen=True, slots=True)
class _Condition:
    key: str
    literal: str
    capture: str | None


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    rule: RedirectRule
    pattern: UrlPattern
    conditions: tuple[_Condition, ...]
    template: PlaceholderTemplate
    is_rewrite: bool
    is_proxy: bool

    @property
    def static(self) -> bool:
        return self.pattern.static and not self.conditions


class _LineError(ValueError):
    """A `_redirects` line that is skipped; the message says why."""


class RedirectRules:
    """The rules of one `_redirects` file, compiled; `match` does no parsing."""

    __slots__ = ("_dialect", "_dynamic", "_entries", "_static")

    def __init__(self, entries: list[_Entry], dialect: Dialect) -> None:
        self._dialect = dialect
        self._entries = entries
        # Static rules are one dict lookup; a dynamic rule earlier in the file still wins.
        self._static: dict[tuple[str, str], _Entry] = {}
        for entry in entries:
            if entry.static:
                self._static.setdefault((entry.pattern.host, entry.pattern.key), entry)
        self._dynamic = [entry for entry in entries if not entry.static]

    @classmethod
    def parse(cls, text: str, dialect: Dialect) -> tuple[RedirectRules, list[str]]:
        """Compile a `_redirects` file; lines that can't be used are skipped with a warning.

        Warnings read `_redirects:7: skipped: <why>`.
        """
        warnings: list[str] = []
        entries: list[_Entry] = []
        seen: dict[tuple[object, ...], int] = {}
        over_limit: dict[bool, list[int]] = {True: [], False: []}
        counts = {True: 0, False: 0}
        for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if len(line) > MAX_LINE_LENGTH:
                warnings.append(
                    f"_redirects:{number}: skipped: line is {len(line):,} characters long "
                    f"(limit {MAX_LINE_LENGTH:,})"
                )
                continue
            try:
                entry, identity = _compile_line(len(entries), number, line, dialect)
            except (_LineError, PatternError) as exc:
                warnings.append(f"_redirects:{number}: skipped: {exc}")
                continue
            if identity in seen:
                warnings.append(
                    f"_redirects:{number}: skipped: never matches, line {seen[identity]} has "
                    "the same source (the first match wins)"
                )
                continue
            static = entry.static
            if counts[static] == (MAX_STATIC_RULES if static else MAX_DYNAMIC_RULES):
                over_limit[static].append(number)
                continue
            counts[static] += 1
            seen[identity] = number
            entries.append(entry)
        for static, lines in over_limit.items():
            if lines:
                kind, limit = (
                    ("static", MAX_STATIC_RULES) if static else ("dynamic", MAX_DYNAMIC_RULES)
                )
                warnings.append(
                    f"_redirects:{lines[0]}: skipped: more than {limit:,} {kind} rules "
                    f"(the Cloudflare Pages limit); this and {len(lines) - 1} later {kind} "
                    "rules are ignored"
                )
        return cls(entries, dialect), warnings

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, host: str, path: str, query_string: bytes) -> RedirectMatch | None:
        """The first rule matching this request, or None.

        `path` is the gateway-normalised request path (percent-encoded, starting with `/`);
        `host` has no effect unless a rule names one (Netlify domain-level redirects).
        """
        host = PORT.sub("", host.lower())
        key = _slashless(path) if self._dialect == "netlify" else path
        hits = [self._static.get(("", key)), self._static.get((host, key)) if host else None]
        static_hits = sorted((hit for hit in hits if hit is not None), key=lambda e: e.index)
        query = query_string.decode("latin-1")
        params: dict[str, str] | None = None
        for entry in self._candidates(static_hits):
            captures = {} if entry.static else entry.pattern.match(host, path)
            if captures is None:
                continue
            if entry.conditions:
                if params is None:
                    params = _query_params(query)
                if not _meets(entry.conditions, params, captures):
                    continue
                # Netlify: a rule that matches query parameters passes none of them on by
                # itself; the destination says which it wants.
                location = entry.template.render(captures)
            else:
                location = _with_query(entry.template.render(captures), query)
            # What the request supplied (a capture, its query) would break the header or the
            # request line; that disqualifies this rule, not the request.
            if _UNSAFE_LOCATION.search(location) is not None:
                continue
            rule = entry.rule
            return RedirectMatch(
                rule, location, rule.status, entry.is_rewrite, entry.is_proxy, rule.force
            )
        return None

    def _candidates(self, static_hits: list[_Entry]) -> Iterator[_Entry]:
        # The dynamic rules and this path's static rules, merged back into file order.
        hits = iter(static_hits)
        pending = next(hits, None)
        for entry in self._dynamic:
            while pending is not None and pending.index < entry.index:
                yield pending
                pending = next(hits, None)
            yield entry
        if pending is not None:
            yield pending
            yield from hits


def _compile_line(
    index: int, number: int, line: str, dialect: Dialect
) -> tuple[_Entry, tuple[object, ...]]:
    written, query_tokens, destination, tail = _fields(line, dialect)
    source = written
    if (
        dialect == "cloudflare"
        and not source.startswith("/")
        and not ABSOLUTE_URL.fullmatch(source)
    ):
        # Cloudflare Pages reads `home /` as `/home /`.
        source = "/" + source
    status, force = _status(tail, dialect)
    pattern = compile_pattern(source, dialect, allow_host=dialect == "netlify")
    conditions = _conditions(query_tokens, pattern.names)
    absolute = _check_destination(destination)
    is_redirect = status in _REDIRECT_CODES
    if dialect == "cloudflare" and not is_redirect and absolute:
        raise _LineError(
            f"a {status} rule must point to a path on this site; Cloudflare Pages cannot "
            f"proxy to {destination!r}"
        )
    rule = RedirectRule(
        line=number,
        source=written,
        destination=destination,
        status=status,
        force=force or dialect == "cloudflare",
        query=tuple((key, value) for key, _, value in (t.partition("=") for t in query_tokens)),
    )
    names = pattern.names | {c.capture for c in conditions if c.capture is not None}
    template = PlaceholderTemplate.build(quote(destination, safe=_PRINTABLE_ASCII), names)
    entry = _Entry(
        index=index,
        rule=rule,
        pattern=pattern,
        conditions=conditions,
        template=template,
        is_rewrite=not is_redirect and not absolute,
        is_proxy=not is_redirect and absolute,
    )
    # `http://` and `https://` lines for one host are the usual Netlify pair, not duplicates.
    scheme = source.partition(":")[0].lower() if pattern.host else ""
    return entry, (scheme, pattern.host, pattern.key, rule.query)


def _fields(line: str, dialect: Dialect) -> tuple[str, list[str], str, list[str]]:
    # (source, Netlify query conditions, destination, status and anything after it)
    tokens = line.split()
    # Both platforms read a `#` token after the source as the start of a comment; a `#`
    # inside a token is a fragment (`/page#top`).
    for position, token in enumerate(tokens[1:], start=1):
        if token.startswith("#"):
            tokens = tokens[:position]
            break
    source, rest = tokens[0], tokens[1:]
    if dialect == "netlify":
        at = next((i for i, token in enumerate(rest) if _is_destination(token)), None)
        if at is None:
            raise _LineError(_missing_destination(rest))
        return source, rest[:at], rest[at], rest[at + 1 :]
    if not rest:
        raise _LineError(_missing_destination(rest))
    if not _is_destination(rest[0]):
        if "=" in rest[0]:
            raise _LineError(
                f"query-parameter conditions ({rest[0]}) are Netlify syntax, not supported "
                "by Cloudflare Pages"
            )
        raise _LineError(
            f"destination {rest[0]!r} must be a path starting with '/' or an http(s):// URL"
        )
    return source, [], rest[0], rest[1:]


def _check_destination(destination: str) -> bool:
    """Whether `destination` is an absolute URL (else a path); raises for unusable ones."""
    if _CONTROL.search(destination) is not None:
        raise _LineError(f"destination {destination!r} contains a control character")
    absolute = ABSOLUTE_URL.fullmatch(destination)
    if absolute is None:
        return False
    if not absolute[2]:
        raise _LineError(f"destination {destination!r} has an empty host")
    if not absolute[2].isascii():
        raise _LineError(f"destination host {absolute[2]!r} must be ASCII (use its punycode form)")
    return True


def _is_destination(token: str) -> bool:
    return token.startswith("/") or ABSOLUTE_URL.fullmatch(token) is not None


def _missing_destination(rest: list[str]) -> str:
    found = f" (found {' '.join(rest)!r})" if rest else ""
    return f"missing destination: a path starting with '/' or an http(s):// URL{found}"


def _status(tail: list[str], dialect: Dialect) -> tuple[int, bool]:
    if tail and "=" in tail[0]:
        raise _LineError(f"conditions ({' '.join(tail)}) are not supported")
    if len(tail) > 1:
        extra = " ".join(tail[1:])
        if "=" in extra:
            raise _LineError(f"conditions ({extra}) are not supported")
        raise _LineError(f"unexpected text after the status code: {extra!r}")
    if not tail:
        return _DEFAULT_STATUS[dialect], False
    accepted = _STATUS_CODES[dialect]
    found = _STATUS.fullmatch(tail[0])
    if found is None or int(found[1]) not in accepted or (found[2] and dialect != "netlify"):
        codes = ", ".join(str(code) for code in sorted(accepted))
        if dialect == "netlify":
            codes += ", optionally followed by '!'"
        hint = ""
        if dialect == "cloudflare" and tail[0].endswith("!"):
            hint = "; the '!' suffix is Netlify syntax, Cloudflare Pages rules always apply"
        raise _LineError(f"invalid status code {tail[0]!r} (accepted: {codes}){hint}")
    return int(found[1]), found[2] == "!"


def _conditions(tokens: list[str], pattern_names: frozenset[str]) -> tuple[_Condition, ...]:
    conditions: list[_Condition] = []
    names = set(pattern_names)
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise _LineError(f"query condition {token!r} must be key=value or key=:name")
        placeholder = PLACEHOLDER.fullmatch(value)
        if placeholder is None:
            conditions.append(_Condition(unquote_plus(key), unquote_plus(value), None))
            continue
        try:
            name = claim(placeholder[1], names)
        except PatternError as exc:
            raise _LineError(str(exc)) from exc
        conditions.append(_Condition(unquote_plus(key), "", name))
    return tuple(conditions)


def _meets(
    conditions: tuple[_Condition, ...], params: Mapping[str, str], captures: dict[str, str]
) -> bool:
    for condition in conditions:
        value = params.get(condition.key)
        if value is None:
            return False
        if condition.capture is None:
            if unquote_plus(value) != condition.literal:
                return False
        elif not value:
            # As in the path, a placeholder needs a value.
            return False
        else:
            captures[condition.capture] = value
    return True


def _query_params(query: str) -> dict[str, str]:
    # Keys compare decoded; values stay percent-encoded, as they may land in a path. The
    # first occurrence of a repeated key is the one that counts.
    params: dict[str, str] = {}
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            params.setdefault(unquote_plus(key), value)
    return params


def _with_query(location: str, query: str) -> str:
    # Both platforms pass the request's query string on unless the destination has its own,
    # which then wins; a `#fragment` stays last.
    if not query:
        return location
    target, mark, fragment = location.partition("#")
    if "?" in target:
        return location
    return f"{target}?{query}{mark}{fragment}"


def _slashless(path: str) -> str:
    return path[:-1] if len(path) > 1 and path.endswith("/") else path
