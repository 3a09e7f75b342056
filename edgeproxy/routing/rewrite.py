"""Rewrites of the path sent to an origin, and redirect targets, compiled once per route.

Everything here works on raw (still percent-encoded) text: captures come from the raw
request path, so what the client encoded stays encoded on its way to the origin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from edgeproxy.exceptions import BadRequest

if TYPE_CHECKING:
    from edgeproxy.config.models import Route
    from edgeproxy.routing.paths import RequestPath
    from edgeproxy.routing.table import RouteMatch

_PLACEHOLDER = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)|<\*>")
_QUERY_OR_FRAGMENT = re.compile(r"[?#]")
_HEADER_BREAKERS = re.compile(r"[\r\n\0]")


class Template:
    """A target such as `/blog/:year/:splat` or `https://new.example.com/<*>`, compiled once.

    `:name` is filled from the capture of the same name, `:splat` and `<*>` from the
    remainder after the route's prefix. `names` lists the captures the template needs.
    """

    __slots__ = ("_head", "_tail", "names", "text")

    def __init__(self, template: str) -> None:
        self.text = template
        # With one group, split alternates literal text and the captured name; `<*>` has
        # no group, so its name comes back as None.
        pieces = _PLACEHOLDER.split(template)
        self._head: str = pieces[0]
        self._tail: tuple[tuple[str, str], ...] = tuple(
            (name or "splat", text) for name, text in zip(pieces[1::2], pieces[2::2], strict=True)
        )
        self.names: frozenset[str] = frozenset(name for name, _ in self._tail)

    def render(self, params: Mapping[str, str]) -> str:
        out = [self._head]
        for name, text in self._tail:
            out.append(params[name])
            out.append(text)
        return "".join(out)


class PathRewriter:
    """Builds the raw path an origin receives from a route's `rewrite` section.

    Applied in order: `strip_prefix` removes the raw segments the route's pattern matched,
    `add_prefix` is prepended, then `replace` substitutes on the result; `to` replaces all of
    that. A result not starting with `/` gets one, so it is never empty. Stripping keeps the
    distinction between `/api` and `/api/`: with `add_prefix: /v1` they become `/v1` and
    `/v1/`, and without one both become `/`.
    """

    __slots__ = ("_add", "_add_dir", "_replace", "_strip", "_to", "_with")

    def __init__(self, route: Route) -> None:
        rewrite = route.rewrite
        self._strip = rewrite.strip_prefix
        self._add = rewrite.add_prefix
        self._add_dir = rewrite.add_prefix + "/"
        self._replace = None if rewrite.replace is None else re.compile(rewrite.replace.pattern)
        self._with = "" if rewrite.replace is None else rewrite.replace.with_
        self._to = None if rewrite.to is None else Template(rewrite.to)

    def upstream_path(self, match: RouteMatch, path: RequestPath) -> str:
        """The raw path (ASCII, percent-encoded, no query) to send to the origin."""
        if self._to is not None:
            result = self._to.render(match.params)
        else:
            start = _prefix_end(path, match.prefix_length) if self._strip else 0
            result = self._add + path.raw[start:].decode("ascii")
            if self._replace is not None:
                result = self._replace.sub(self._with, result)
        return result if result.startswith("/") else "/" + result

    def stripped_prefix(self, match: RouteMatch, path: RequestPath) -> str | None:
        """The raw public prefix `strip_prefix` removed (for `X-Forwarded-Prefix`).

        None when nothing was removed: `strip_prefix` is off or the pattern is `/`.
        """
        if not self._strip or match.prefix_length == 0:
            return None
        return path.raw[: _prefix_end(path, match.prefix_length)].decode("ascii")

    def public_path(self, upstream_path: str, match: RouteMatch, path: RequestPath) -> str | None:
        """Map a path the origin used (e.g. in `Location`) back to the public one.

        Only strip/add-prefix rewrites can be inverted; `replace` and `to` give None, as does
        a path outside `add_prefix`. The prefix put back is the concrete one this request
        matched, so `:name` segments come back as the client sent them. A `?query` or
        `#fragment` after the path is kept.
        """
        if self._replace is not None or self._to is not None or not upstream_path.startswith("/"):
            return None
        end = _QUERY_OR_FRAGMENT.search(upstream_path)
        cut = len(upstream_path) if end is None else end.start()
        rest, suffix = upstream_path[:cut], upstream_path[cut:]
        if self._add:
            if rest == self._add:
                rest = ""
            elif rest.startswith(self._add_dir):
                rest = rest[len(self._add) :]
            else:
                return None
        if self._strip:
            rest = path.raw[: _prefix_end(path, match.prefix_length)].decode("ascii") + rest
        return (rest or "/") + suffix


def redirect_target(to: Template, match: RouteMatch, query_string: bytes) -> str:
    """The `Location` of a redirect route.

    The request's query string is appended unless the target has a query of its own, which
    then wins (as Netlify and Caddy do); a `#fragment` in the target stays last.
    """
    location = to.render(match.params)
    if query_string:
        target, hash_mark, fragment = location.partition("#")
        if "?" not in target:
            location = f"{target}?{query_string.decode('latin-1')}{hash_mark}{fragment}"
    if _HEADER_BREAKERS.search(location) is not None:
        raise BadRequest(f"redirect target {location!r} would contain a line break or NUL")
    return location


def _prefix_end(path: RequestPath, prefix_length: int) -> int:
    # Offset in `raw` just past the first `prefix_length` segments: each is its bytes plus
    # the `/` before it. The route table has already refused paths whose dot-segments would
    # make the raw and normalised prefixes differ, so they have the same segment count.
    return sum(len(segment) + 1 for segment in path.raw_segments[:prefix_length])
