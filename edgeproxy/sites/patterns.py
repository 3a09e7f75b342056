"""URL patterns shared by `_redirects` sources and `_headers` blocks, compiled once.

A pattern is a path (`/blog/:slug`, `/static/*`), optionally behind an `http(s)://` host that
may hold placeholders (`https://:project.pages.dev/*`). `PlaceholderTemplate` fills a pattern's
captures into a destination or header value.

Sources are restricted to at most one capture (placeholder or splat) per path segment and one
splat in all: that keeps every match a single regex pass with no backtracking blow-up, whatever
path a client sends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

Dialect = Literal["cloudflare", "netlify"]

_CAPTURE = re.compile(r"\*|:[A-Za-z][A-Za-z0-9_]*")
PLACEHOLDER = re.compile(r":([A-Za-z][A-Za-z0-9_]*)")
ABSOLUTE_URL = re.compile(r"(?i)(https?)://([^/?#]*)(.*)", re.DOTALL)
_HOST = re.compile(r"[a-z0-9.\-]+")
PORT = re.compile(r":\d+\Z")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Everything RFC 3986 allows raw in a path (plus `%`, validated separately); `quote` escapes
# the rest, so a rule written with `é` or `"` compares equal to what browsers send.
_PATH_SAFE = "!$&'()*+,;=:@/%"


class PatternError(ValueError):
    """A URL pattern this matcher does not accept; the message says why."""


@dataclass(frozen=True, slots=True)
class UrlPattern:
    """A `_redirects` source or `_headers` URL pattern, compiled.

    `key` is the canonical path text: for a pattern without captures it is the exact path it
    matches (Netlify: without a trailing slash), so callers can look static patterns up in a
    dict instead of running `match`.
    """

    host: str
    key: str
    names: frozenset[str]
    static: bool
    _host: re.Pattern[str] | None
    _path: re.Pattern[str]

    def match(self, host: str, path: str) -> dict[str, str] | None:
        """The captures (`splat` and placeholder names) if `host` and `path` match, else None.

        `host` is ignored unless the pattern names one; `path` is the gateway-normalised,
        percent-encoded request path.
        """
        captures: dict[str, str] = {}
        if self._host is not None:
            found_host = self._host.fullmatch(PORT.sub("", host.lower()))
            if found_host is None:
                return None
            captures.update(found_host.groupdict())
        found = self._path.fullmatch(path)
        if found is None:
            return None
        # A Netlify `/*` splat is optional (`/app` matches `/app/*`), so its group may be unset.
        captures.update((name, value or "") for name, value in found.groupdict().items())
        return captures


def compile_pattern(text: str, dialect: Dialect, *, allow_host: bool) -> UrlPattern:
    """Compile a URL pattern (`/blog/:slug`, `/static/*`, `https://:project.pages.dev/*`).

    Raises `PatternError` for what the platforms don't accept, and for two captures in one
    path segment, which is refused to keep matching linear in the path's length.
    """
    host = ""
    path = text
    absolute = ABSOLUTE_URL.fullmatch(text)
    if absolute is not None:
        if not allow_host:
            raise PatternError(f"{text!r} has a host; only a path is accepted here")
        host, path = absolute[2].lower(), absolute[3] or "/"
        if PORT.search(host):
            raise PatternError(f"{text!r} names a port; patterns match any port")
        if not host:
            raise PatternError(f"{text!r} has an empty host")
    # Fragments never reach the server, so they can't take part in matching.
    path = path.partition("#")[0]
    if "?" in path:
        raise PatternError(f"{text!r} has a query string; patterns match the path only")
    if not path.startswith("/"):
        raise PatternError(f"{text!r} must start with '/' or be an http(s):// URL")
    names: set[str] = set()
    host_regex = _compile_host(host, names) if host else None
    path_regex, key = _compile_path(path, dialect, names)
    static = not names
    return UrlPattern(host, key, frozenset(names), static, host_regex, path_regex)


def _compile_host(host: str, names: set[str]) -> re.Pattern[str]:
    parts: list[str] = []
    for label in host.split("."):
        captures = list(_CAPTURE.finditer(label))
        if len(captures) > 1:
            raise PatternError(f"host label {label!r} has more than one placeholder")
        if not captures:
            _check_host_literal(label)
            parts.append(re.escape(label))
            continue
        capture = captures[0]
        if capture[0] == "*":
            raise PatternError(f"host {host!r} has a splat; a splat is only allowed in the path")
        before, after = label[: capture.start()], label[capture.end() :]
        _check_host_literal(before + after)
        name = claim(capture[0][1:], names)
        # Host placeholders stop at a dot, as on Cloudflare Pages.
        parts.append(f"{re.escape(before)}(?P<{name}>[^.]+){re.escape(after)}")
    return re.compile(r"\.".join(parts))


def _check_host_literal(text: str) -> None:
    if text and _HOST.fullmatch(text) is None:
        raise PatternError(f"host part {text!r} is not a valid host name")


def _compile_path(path: str, dialect: Dialect, names: set[str]) -> tuple[re.Pattern[str], str]:
    netlify = dialect == "netlify"
    # Netlify matches `/a` and `/a/` alike (its CDN normalises before rules run), and a
    # trailing `/*` also covers the bare directory, with an empty splat.
    optional_splat = netlify and path.endswith("/*")
    loose_slash = netlify and path != "/" and not path.endswith("*")
    if loose_slash and path.endswith("/"):
        path = path[:-1]
    captures = list(_CAPTURE.finditer(path))
    if sum(capture[0] == "*" for capture in captures) > 1:
        raise PatternError(f"{path!r} has more than one splat (only one is allowed)")
    regex: list[str] = []
    key: list[str] = []
    start = 0
    last_segment = -1
    for capture in captures:
        segment = path.count("/", 0, capture.start())
        if segment == last_segment:
            raise PatternError(f"{path!r} has two captures in one path segment")
        last_segment = segment
        token = capture[0]
        if netlify and token == "*" and capture.end() != len(path):
            raise PatternError(f"{path!r}: a Netlify splat must end the path")
        if netlify and token != "*" and not _fills_segment(path, capture):
            raise PatternError(f"{path!r}: a Netlify placeholder must fill a whole path segment")
        literal = _canonical(path[start : capture.start()])
        if optional_splat and token == "*":
            literal = literal[:-1]
        regex.append(re.escape(literal))
        key.append(literal)
        if token == "*":
            names.add("splat")
            regex.append("(?:/(?P<splat>.*))?" if optional_splat else "(?P<splat>.*)")
            key.append("/*" if optional_splat else "*")
        else:
            regex.append(f"(?P<{claim(token[1:], names)}>[^/]+)")
            key.append(token)
        start = capture.end()
    tail = _canonical(path[start:])
    regex.append(re.escape(tail))
    key.append(tail)
    if loose_slash:
        regex.append("/?")
    return re.compile("".join(regex), re.DOTALL), "".join(key)


def _fills_segment(path: str, capture: re.Match[str]) -> bool:
    return path[capture.start() - 1] == "/" and path[capture.end() : capture.end() + 1] in ("", "/")


def claim(name: str, names: set[str]) -> str:
    """Add placeholder `name` to the pattern's `names` and return it; raise if already there."""
    # Cloudflare Pages: "every named placeholder can only be referenced once".
    if name in names:
        raise PatternError(f"placeholder :{name} is used more than once")
    names.add(name)
    return name


def _canonical(literal: str) -> str:
    # The form the gateway compares requests in: unreserved escapes decoded, other escapes in
    # upper case, and characters a path can't hold raw escaped as UTF-8.
    if _BAD_ESCAPE.search(literal):
        raise PatternError(f"{literal!r} has a malformed percent-escape")
    encoded = quote(literal, safe=_PATH_SAFE)
    return _ESCAPE.sub(_normal_escape, encoded)


def _normal_escape(escape: re.Match[str]) -> str:
    char = chr(int(escape[1], 16))
    return char if char in _UNRESERVED else escape[0].upper()


@dataclass(frozen=True, slots=True)
class PlaceholderTemplate:
    """Text with `:name` placeholders filled from captures (a destination, a header value).

    Placeholders with no capture of that name stay as written, as on both platforms; that is
    settled when the template is built, so rendering is a join.
    """

    head: str
    tail: tuple[tuple[str, str], ...]

    @classmethod
    def build(cls, text: str, names: frozenset[str]) -> PlaceholderTemplate:
        texts: list[str] = []
        filled: list[str] = []
        start = 0
        for found in PLACEHOLDER.finditer(text):
            if found[1] in names:
                texts.append(text[start : found.start()])
                filled.append(found[1])
                start = found.end()
        texts.append(text[start:])
        return cls(texts[0], tuple(zip(filled, texts[1:], strict=True)))

    def render(self, captures: Mapping[str, str]) -> str:
        if not self.tail:
            return self.head
        out = [self.head]
        for name, text in self.tail:
            out.append(captures[name])
            out.append(text)
        return "".join(out)
