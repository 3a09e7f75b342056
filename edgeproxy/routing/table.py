"""The compiled route table: the most specific route wins, never the one written first.

Specificity is compared in this order:

1. host: an exact name beats `*.example.com`, which beats a route without hosts;
2. path pattern, segment by segment: a literal beats a `:param`, and a pattern beats any
   shorter pattern it extends (`/api/v1` beats `/api`);
3. methods: a route listing methods beats one that doesn't, and a route listing HEAD beats
   one that takes HEAD only because it lists GET.

Routes that would still be equal for some request are a config error, so the winner never
depends on file order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from edgeproxy.config.models import Route
from edgeproxy.exceptions import BadRequest, ConfigError, ConfigIssue
from edgeproxy.memo import Memo
from edgeproxy.routing.paths import RequestPath, check_prefix_boundary, parse_path
from edgeproxy.routing.rewrite import Template

EXACT, WILDCARD, ANY = 2, 1, 0
_HOST_RANKS = {EXACT: "exact", WILDCARD: "wildcard", ANY: "any"}
_LITERAL, _PARAM = 2, 1
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPLATS = ("*", "<*>")


@dataclass(frozen=True, slots=True)
class PathPattern:
    """A compiled `match.path`: one entry per segment, a literal or None for a `:param`.

    A final `*` / `<*>` is implied (every pattern is a prefix) and so is not recorded.
    """

    text: str
    literals: tuple[str | None, ...]
    params: tuple[tuple[int, str], ...]
    ranks: tuple[int, ...]

    def matches(self, segments: tuple[str, ...]) -> bool:
        if not self.params:
            return segments[: len(self.literals)] == self.literals
        if len(segments) < len(self.literals):
            return False
        for want, got in zip(self.literals, segments, strict=False):
            if want is None:
                if not got:
                    return False
            elif want != got:
                return False
        return True


def compile_pattern(text: str) -> PathPattern:
    """Compile a `match.path`; raises ValueError saying what is wrong with it."""
    try:
        parsed = parse_path(text.encode("ascii"))
    except UnicodeEncodeError:
        raise ValueError(f"{text!r} has non-ASCII characters; percent-encode them") from None
    except BadRequest as exc:
        raise ValueError(exc.detail) from None
    if parsed.has_dots:
        raise ValueError(f"{text!r} has a '.' or '..' segment; write the path it resolves to")
    segments = list(parsed.segments)
    if segments[-1] == "":
        segments.pop()
    if segments and segments[-1] in _SPLATS:
        segments.pop()
    literals: list[str | None] = []
    params: list[tuple[int, str]] = []
    for position, segment in enumerate(segments):
        if not segment:
            raise ValueError(f"{text!r} has an empty segment ('//')")
        if "*" in segment:
            raise ValueError(
                f"{text!r}: '*' and '<*>' may only be the whole last segment, as in '/api/*' "
                "(prefixes match whole segments, so '/api' already matches '/api/x')"
            )
        if not segment.startswith(":"):
            literals.append(segment)
            continue
        name = segment[1:]
        if not _PARAM_NAME.fullmatch(name):
            raise ValueError(f"{text!r}: {segment!r} is not a valid :name ([A-Za-z_][A-Za-z0-9_]*)")
        if name == "splat":
            raise ValueError(f"{text!r}: ':splat' is reserved for the rest of the path; use '*'")
        if any(name == seen for _, seen in params):
            raise ValueError(f"{text!r}: ':{name}' is used twice")
        literals.append(None)
        params.append((position, name))
    ranks = tuple(_PARAM if literal is None else _LITERAL for literal in literals)
    return PathPattern(text, tuple(literals), tuple(params), ranks)


class CompiledRoute:
    """One route of the table: its pattern, hosts and methods ready to compare.

    `exact_hosts` is None for a route without hosts (it takes any host); `wildcard_parents`
    holds `example.com` for `*.example.com`. `payload` is the gateway's: it attaches its
    compiled action there; the table never reads it.
    """

    __slots__ = (
        "_allowed",
        "config",
        "exact_hosts",
        "index",
        "methods",
        "name",
        "order",
        "pattern",
        "payload",
        "wildcard_parents",
    )

    def __init__(self, index: int, config: Route, pattern: PathPattern) -> None:
        self.index = index
        self.name = config.name or f"routes[{index}]"
        self.config = config
        self.payload: object = None
        self.pattern = pattern
        hosts = config.match.host
        self.exact_hosts: frozenset[str] | None = None
        self.wildcard_parents: frozenset[str] = frozenset()
        if hosts is not None:
            self.exact_hosts = frozenset(host for host in hosts if not host.startswith("*."))
            self.wildcard_parents = frozenset(host[2:] for host in hosts if host.startswith("*."))
        methods = config.match.methods
        self.methods = None if methods is None else frozenset[str](methods)
        # HEAD is GET without a body: a GET-only route answers it, as in nginx and Caddy.
        self._allowed = self.methods
        if self.methods is not None and "GET" in self.methods:
            self._allowed = self.methods | {"HEAD"}
        # Sort key within one host rank; see the module docstring.
        self.order = (pattern.ranks, self.methods is not None, "HEAD" in (self.methods or ()))

    def __repr__(self) -> str:
        return f"<CompiledRoute {self.label} path={self.pattern.text}>"

    @property
    def label(self) -> str:
        if self.config.name:
            return f"routes[{self.index}] {self.config.name!r}"
        return self.name

    def allows(self, method: str) -> bool:
        return self._allowed is None or method in self._allowed

    def host_rank(self, host: str, parent: str) -> int | None:
        """How this route matches `host` (EXACT, WILDCARD or ANY), or None if it doesn't."""
        if self.exact_hosts is None:
            return ANY
        if host in self.exact_hosts:
            return EXACT
        if parent in self.wildcard_parents:
            return WILDCARD
        return None


class RouteMatch(NamedTuple):
    """A route chosen for a request, with its captures as raw (percent-encoded) text.

    `params` holds every `:name` and always `splat`: the raw rest of the path after the
    `prefix_length` segments the pattern consumed, without a leading `/`. Read-only: one
    match serves every request with the same host, path and method. (A named tuple:
    one is made per request, and a frozen dataclass costs three times as much to build.)
    """

    route: CompiledRoute
    params: dict[str, str]
    prefix_length: int


class RouteTable:
    """All routes of a config, indexed by host and ordered by specificity.

    Raises ConfigError listing every invalid pattern or template and every pair of routes
    that tie.
    """

    __slots__ = ("_any", "_exact", "_found", "_matches", "_wildcard", "routes")

    def __init__(self, routes: Sequence[Route]) -> None:
        issues: list[ConfigIssue] = []
        compiled: list[CompiledRoute] = []
        for index, route in enumerate(routes):
            try:
                pattern = compile_pattern(route.match.path)
            except ValueError as exc:
                issues.append(ConfigIssue(f"routes[{index}].match.path", str(exc)))
                continue
            issues.extend(_route_issues(index, route, pattern))
            compiled.append(CompiledRoute(index, route, pattern))

        exact: dict[str, list[CompiledRoute]] = {}
        wildcard: dict[str, list[CompiledRoute]] = {}
        any_host: list[CompiledRoute] = []
        for entry in compiled:
            if entry.exact_hosts is None:
                any_host.append(entry)
                continue
            # dict.fromkeys drops a host listed twice, which would make a route tie itself.
            for host in dict.fromkeys(entry.config.match.host or ()):
                if host.startswith("*."):
                    wildcard.setdefault(host[2:], []).append(entry)
                else:
                    exact.setdefault(host, []).append(entry)
        issues.extend(
            _ties(
                [
                    *((f"same host {host!r}", bucket) for host, bucket in exact.items()),
                    *((f"same host '*.{host}'", bucket) for host, bucket in wildcard.items()),
                    ("both for any host", any_host),
                ]
            )
        )
        if issues:
            raise ConfigError(sorted(issues, key=_route_index))

        self.routes = tuple(compiled)
        # Winners by (Host as sent, path segments, method).
        self._found: Memo[tuple[str, tuple[str, ...], str], CompiledRoute | None] = Memo()
        self._matches: Memo[tuple[str, bytes, str], RouteMatch | None] = Memo()
        self._exact = {host: _Candidates(bucket) for host, bucket in exact.items()}
        self._wildcard = {host: _Candidates(bucket) for host, bucket in wildcard.items()}
        self._any = _Candidates(any_host)

    def match(self, host: str, path: RequestPath, method: str) -> RouteMatch | None:
        """The most specific route for a request, or None.

        `host` is the Host header as sent (any case, maybe with a port). Raises BadRequest
        if the path reaches the winner's prefix through dot-segments.
        """
        if path.has_dots:
            # Checked against the winner's prefix every time: the check may refuse it.
            return self._bound(host, path, method)
        # The table never changes (a reload builds a new one), so neither does the match of
        # a given request line: made once, shared by the requests that repeat it.
        key = (host, path.raw, method)
        try:
            return self._matches[key]
        except KeyError:
            return self._matches.remember(key, self._bound(host, path, method))

    def _bound(self, host: str, path: RequestPath, method: str) -> RouteMatch | None:
        key = (host, path.segments, method)
        try:
            found = self._found[key]
        except KeyError:
            found = self._found.remember(key, self._find(_host_name(host), path, method))
        return None if found is None else _bind(found, path)

    def explain(self, host: str, path: RequestPath, method: str) -> list[str]:
        """Human-readable lines: the request, the winner, and why each other route lost."""
        name = _host_name(host)
        shown = path.normalized
        if path.raw != shown.encode("ascii"):
            shown += f" (raw {path.raw.decode('ascii')})"
        lines = [f"request: host={name or '(none)'} path={shown} method={method}"]
        winner = self._find(name, path, method)
        if winner is None:
            lines.append("no route matches")
        else:
            rank = winner.host_rank(name, _parent(name))
            lines.append(f"winner: {winner.label} {_describe(winner, rank, name)}")
            try:
                _bind(winner, path)
            except BadRequest as exc:
                lines.append(f"refused with 400: {exc.detail}")
        lines.extend(
            f"{route.label}: {_why_lost(route, winner, name, path, method)}"
            for route in self.routes
            if route is not winner
        )
        return lines

    def _find(self, host: str, path: RequestPath, method: str) -> CompiledRoute | None:
        segments = path.segments
        candidates = self._exact.get(host)
        if candidates is not None:
            route = candidates.first(segments, method)
            if route is not None:
                return route
        if self._wildcard:
            candidates = self._wildcard.get(_parent(host))
            if candidates is not None:
                route = candidates.first(segments, method)
                if route is not None:
                    return route
        return self._any.first(segments, method)


class _Candidates:
    """The routes of one host key, most specific first, indexed by first path segment.

    Only routes whose pattern starts with that literal, or with no literal at all, can
    match a path, so a request scans those instead of every route of the host.
    """

    __slots__ = ("_by_first", "_unindexed")

    def __init__(self, routes: list[CompiledRoute]) -> None:
        ordered = sorted(routes, key=lambda route: route.order, reverse=True)
        firsts = {first for route in ordered if (first := _first_literal(route)) is not None}
        self._unindexed = tuple(route for route in ordered if _first_literal(route) is None)
        self._by_first = {
            first: tuple(route for route in ordered if _first_literal(route) in (first, None))
            for first in firsts
        }

    def first(self, segments: tuple[str, ...], method: str) -> CompiledRoute | None:
        """The most specific route matching, or None."""
        for route in self._by_first.get(segments[0], self._unindexed):
            if route.pattern.matches(segments) and route.allows(method):
                return route
        return None


def _first_literal(route: CompiledRoute) -> str | None:
    literals = route.pattern.literals
    return literals[0] if literals else None


def _why_lost(
    route: CompiledRoute, winner: CompiledRoute | None, host: str, path: RequestPath, method: str
) -> str:
    parent = _parent(host)
    rank = route.host_rank(host, parent)
    if rank is None:
        return f"host mismatch (wants {', '.join(route.config.match.host or ())})"
    if not route.pattern.matches(path.segments):
        return f"path mismatch (pattern {route.pattern.text})"
    if not route.allows(method):
        return f"method {method} not allowed (allows {', '.join(sorted(route.methods or ()))})"
    # _find applies the same checks, so a route passing all of them means it found a winner.
    assert winner is not None
    winner_rank = winner.host_rank(host, parent)
    if rank != winner_rank:
        return (
            f"less specific than winner (host {_HOST_RANKS[rank]} < "
            f"{_HOST_RANKS[winner_rank or ANY]})"
        )
    if route.pattern.ranks != winner.pattern.ranks:
        return f"less specific than winner (path {route.pattern.text} < {winner.pattern.text})"
    if route.methods is None:
        return (
            "less specific than winner "
            f"(no methods list < {', '.join(sorted(winner.methods or ()))})"
        )
    return "less specific than winner (takes HEAD only via GET < lists HEAD)"


def _bind(route: CompiledRoute, path: RequestPath) -> RouteMatch:
    consumed = len(route.pattern.literals)
    if path.has_dots:
        check_prefix_boundary(path, consumed)
    raw = path.raw_segments
    params = {name: raw[position].decode("ascii") for position, name in route.pattern.params}
    params["splat"] = b"/".join(raw[consumed:]).decode("ascii")
    return RouteMatch(route, params, consumed)


def _host_name(host: str) -> str:
    # The port follows the last ':', unless that ':' is inside an IPv6 literal ("[::1]").
    name, colon, port = host.rpartition(":")
    if not colon or "]" in port:
        name = host
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


def _parent(host: str) -> str:
    # `*.example.com` takes exactly one more label, so only the parent of the first label
    # is looked up; an empty first label matches no wildcard.
    label, _, parent = host.partition(".")
    return parent if label else ""


def _describe(route: CompiledRoute, rank: int | None, host: str) -> str:
    if rank == EXACT:
        where = f"host={host} (exact)"
    elif rank == WILDCARD:
        where = f"host=*.{_parent(host)} (wildcard)"
    else:
        where = "host=* (any)"
    methods = f" methods={','.join(sorted(route.methods))}" if route.methods is not None else ""
    return f"{where} path={route.pattern.text}{methods}"


def _route_issues(index: int, route: Route, pattern: PathPattern) -> list[ConfigIssue]:
    issues = []
    where = f"routes[{index}]"
    if route.match.host == []:
        issues.append(ConfigIssue(f"{where}.match.host", "empty list; omit host to match any host"))
    if route.match.methods == []:
        issues.append(
            ConfigIssue(f"{where}.match.methods", "empty list; omit methods to allow any method")
        )
    captured = {name for _, name in pattern.params} | {"splat"}
    templates = {f"{where}.rewrite.to": route.rewrite.to}
    if route.redirect is not None:
        templates[f"{where}.redirect.to"] = route.redirect.to
    for path, text in templates.items():
        if text is None:
            continue
        unknown = Template(text).names - captured
        if unknown:
            issues.append(
                ConfigIssue(
                    path,
                    f"{', '.join(':' + name for name in sorted(unknown))} not captured by "
                    f"match.path {route.match.path!r} "
                    f"(available: {', '.join(':' + name for name in sorted(captured))})",
                )
            )
        if any(char in text for char in "\r\n\0"):
            issues.append(ConfigIssue(path, f"contains a line break or NUL: {text!r}"))
    replace = route.rewrite.replace
    if replace is not None:
        try:
            # Substituting into "" parses the replacement without needing a match.
            re.compile(replace.pattern).sub(replace.with_, "")
        except (re.error, IndexError) as exc:
            issues.append(
                ConfigIssue(
                    f"{where}.rewrite.replace.with",
                    f"{replace.with_!r} is not a valid replacement for {replace.pattern!r}: {exc}",
                )
            )
    return issues


def _ties(buckets: Iterable[tuple[str, list[CompiledRoute]]]) -> list[ConfigIssue]:
    issues = []
    reported: set[tuple[int, int]] = set()
    for host, bucket in buckets:
        for position, later in enumerate(bucket):
            for earlier in bucket[:position]:
                methods = _shared_methods(earlier.methods, later.methods)
                pair = (earlier.index, later.index)
                if (
                    methods is None
                    or earlier.pattern.literals != later.pattern.literals
                    or pair in reported
                ):
                    continue
                reported.add(pair)
                if earlier.pattern.text == later.pattern.text:
                    paths = f"path {later.pattern.text!r}"
                else:
                    paths = f"paths {later.pattern.text!r} and {earlier.pattern.text!r} alike"
                issues.append(
                    ConfigIssue(
                        f"routes[{later.index}].match",
                        f"routes[{later.index}] ties with routes[{earlier.index}] "
                        f"({host}, {paths}, methods {methods}); "
                        "make one more specific or remove it",
                    )
                )
    return issues


def _shared_methods(first: frozenset[str] | None, second: frozenset[str] | None) -> str | None:
    # A methods list outranks no list (see the module docstring), so only two lists that
    # share a method, or two routes without lists, can tie.
    if first is None and second is None:
        return "any"
    if first is None or second is None:
        return None
    return ", ".join(sorted(first & second)) or None


def _route_index(issue: ConfigIssue) -> int:
    return int(issue.path[len("routes[") : issue.path.index("]")])
