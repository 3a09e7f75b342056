"""A deployment's `functions/` directory, routed the way Cloudflare Pages Functions are.

    functions/index.py              /
    functions/api/hello.py          /api/hello
    functions/users/[id].py         /users/:id          ctx.params["id"] == "42"
    functions/docs/[[path]].py      /docs, /docs/a/b    ctx.params["path"] == ["a", "b"]
    functions/[id]/index.py         /:id                (directories may be params too)
    functions/api/_middleware.py    runs for /api and everything below it
    functions/_lib.py, _shared/     helpers: importable, never routes

The most specific route wins: more segments first (a catch-all does not count, as it may
match none), then segment by segment a literal before a `[param]` before a `[[catchall]]`.
A route whose module has no handler for the request's method is skipped as if absent.
Middlewares run outermost directory first, then the route's handler; where middlewares
match but no route does, the innermost `ctx.next()` reaches the static assets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgeproxy.edge.handlers import Chain, HandlerFunction, HandlerModule, Params
from edgeproxy.edge.loader import handler_module, import_handler_file
from edgeproxy.edge.modules import HandlerPackage
from edgeproxy.edge.routefilter import RouteFilter
from edgeproxy.exceptions import HandlerLoadError
from edgeproxy.memo import Memo

logger = logging.getLogger("edgeproxy.edge")

MIDDLEWARE_FILE = "_middleware.py"

SegmentKind = Literal["literal", "param", "catchall"]
_RANK: dict[SegmentKind, int] = {"literal": 0, "param": 1, "catchall": 2}
_CATCHALL = re.compile(r"\[\[([^\[\]/]+)\]\]")
_PARAM = re.compile(r"\[([^\[\]/]+)\]")


@dataclass(frozen=True, slots=True)
class Segment:
    kind: SegmentKind
    value: str  # the literal text, or the parameter's name

    @classmethod
    def parse(cls, name: str, file: str) -> Segment:
        if match := _CATCHALL.fullmatch(name):
            return cls("catchall", match[1])
        if match := _PARAM.fullmatch(name):
            return cls("param", match[1])
        if "[" in name or "]" in name:
            raise HandlerLoadError(
                file, f"{name!r} is neither a name, a [param] nor a [[catchall]]"
            )
        return cls("literal", name)

    def __str__(self) -> str:
        return {"literal": "{}", "param": "[{}]", "catchall": "[[{}]]"}[self.kind].format(
            self.value
        )


def _regex(segments: Sequence[Segment], *, prefix: bool) -> re.Pattern[str]:
    parts = []
    for segment in segments:
        if segment.kind == "literal":
            parts.append("/" + re.escape(segment.value))
        elif segment.kind == "param":
            parts.append("/([^/]+)")
        else:
            parts.append("(?:/([^/]+(?:/[^/]+)*))?")
    # A route matches with or without a trailing slash; a middleware matches everything below.
    parts.append("(?:/.*)?" if prefix else "/?")
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True, slots=True)
class FunctionRoute:
    """One routed module (or middleware directory), compiled to a regex."""

    segments: tuple[Segment, ...]
    module: HandlerModule
    regex: re.Pattern[str]

    @property
    def pattern(self) -> str:
        return "/" + "/".join(str(segment) for segment in self.segments)

    @property
    def specificity(self) -> tuple[int, tuple[int, ...]]:
        """Sorts most specific first (see the module docstring)."""
        counted = sum(segment.kind != "catchall" for segment in self.segments)
        return -counted, tuple(_RANK[segment.kind] for segment in self.segments)

    @property
    def shape(self) -> tuple[tuple[SegmentKind, str], ...]:
        """Equal for two routes that match exactly the same paths."""
        return tuple((s.kind, s.value if s.kind == "literal" else "") for s in self.segments)

    def match(self, path: str) -> Params | None:
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        params: Params = {}
        names = [s for s in self.segments if s.kind != "literal"]
        for segment, value in zip(names, found.groups(), strict=True):
            if segment.kind == "catchall":
                params[segment.value] = value.split("/") if value else []
            else:
                params[segment.value] = value
        return params


def _route(segments: list[Segment], module: HandlerModule, *, prefix: bool) -> FunctionRoute:
    names = [s.value for s in segments if s.kind != "literal"]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate is not None:
        raise HandlerLoadError(module.file, f"parameter {duplicate!r} appears twice in its path")
    return FunctionRoute(tuple(segments), module, _regex(segments, prefix=prefix))


class SiteFunctions:
    """The compiled functions of one deployment: parse once, match per request.

    `close()` unloads the deployment's modules when it is retired.
    """

    def __init__(
        self,
        routes: Sequence[FunctionRoute] = (),
        middlewares: Sequence[FunctionRoute] = (),
        route_filter: RouteFilter | None = None,
        package: HandlerPackage | None = None,
    ) -> None:
        self.routes = sorted(routes, key=lambda r: (r.specificity, r.pattern))
        self.middlewares = sorted(
            middlewares, key=lambda m: (len(m.segments), m.specificity, m.pattern)
        )
        self.route_filter = route_filter
        self.package = package
        # Which functions a (path, method) gets depends on nothing else: found once.
        self._matched: Memo[tuple[str, str], Chain | None] = Memo()

    @classmethod
    def load(
        cls, functions_dir: Path, deploy_id: str, routes_json: Path | None = None
    ) -> SiteFunctions:
        """Import every module under `functions_dir` and compile its routes.

        Raises HandlerLoadError on any load error (the deploy should fail). Without a
        `functions_dir`, the result matches nothing. A `routes_json` path that does not
        exist is ignored.
        """
        route_filter = None
        if routes_json is not None and routes_json.is_file():
            route_filter = RouteFilter.load(routes_json)
        if not functions_dir.is_dir():
            return cls(route_filter=route_filter)
        package = HandlerPackage(
            functions_dir, f"site_{deploy_id}", display_root=functions_dir.parent
        )
        try:
            routes, middlewares = _load_tree(functions_dir, package)
        except BaseException:
            package.unload()
            raise
        return cls(routes, middlewares, route_filter, package)

    def match(self, path: str, method: str) -> Chain | None:
        """What runs for `path`, or None when no function is involved at all."""
        try:
            return self._matched[path, method]
        except KeyError:
            return self._matched.remember((path, method), self._match(path, method))

    def _match(self, path: str, method: str) -> Chain | None:
        if self.route_filter is not None and not self.route_filter.allows(path):
            return None
        handler: HandlerFunction | None = None
        params: Params = {}
        for route in self.routes:
            found = route.match(path)
            if found is not None and (candidate := route.module.for_method(method)):
                handler, params = candidate, found
                break
        middlewares: list[HandlerFunction] = []
        outer: Params = {}
        for middleware in self.middlewares:
            found = middleware.match(path)
            if found is not None and (candidate := middleware.module.for_method(method)):
                middlewares.append(candidate)
                outer.update(found)
        if handler is None and not middlewares:
            return None
        return Chain(tuple(middlewares), handler, {**outer, **params})

    def close(self) -> None:
        """Unload this deployment's modules (idempotent)."""
        if self.package is not None:
            self.package.unload()


def _load_tree(
    root: Path, package: HandlerPackage
) -> tuple[list[FunctionRoute], list[FunctionRoute]]:
    routes: dict[tuple[tuple[SegmentKind, str], ...], FunctionRoute] = {}
    middlewares: list[FunctionRoute] = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        module = import_handler_file(package, path)
        file = package.display(path)
        directories = relative.parent.parts
        helper = any(part.startswith("_") for part in directories)
        if helper or (path.name.startswith("_") and path.name != MIDDLEWARE_FILE):
            continue
        segments = [Segment.parse(part, file) for part in directories]
        handlers = handler_module(module, file, package)
        if handlers.empty:
            logger.warning(
                "%s defines no on_request handler; it serves no route (prefix helper "
                "modules with '_')",
                file,
            )
            continue
        if path.name == MIDDLEWARE_FILE:
            middlewares.append(_route(segments, handlers, prefix=True))
            continue
        if path.stem != "index":
            segments.append(Segment.parse(path.stem, file))
        route = _route(segments, handlers, prefix=False)
        other = routes.get(route.shape)
        if other is not None:
            raise HandlerLoadError(
                file, f"routes the same paths as {other.module.file} ({route.pattern})"
            )
        routes[route.shape] = route
    return list(routes.values()), middlewares
