import re
from typing import Any

import pytest

from edgeproxy.config.models import Route
from edgeproxy.exceptions import BadRequest
from edgeproxy.routing.paths import RequestPath, parse_path
from edgeproxy.routing.rewrite import PathRewriter, Template, redirect_target
from edgeproxy.routing.table import RouteMatch, RouteTable


def matched(pattern: str, path: str, **rewrite: Any) -> tuple[Route, RouteMatch, RequestPath]:
    route = Route.model_validate({"match": {"path": pattern}, "proxy": "o", "rewrite": rewrite})
    request = parse_path(path.encode())
    found = RouteTable([route]).match("h", request, "GET")
    assert found is not None
    return route, found, request


@pytest.mark.parametrize(
    ("template", "params", "rendered", "names"),
    [
        pytest.param("/static", {"splat": "x"}, "/static", frozenset(), id="no-placeholders"),
        pytest.param(
            "/new/:splat", {"splat": "a/b%20c/"}, "/new/a/b%20c/", {"splat"}, id="colon-splat"
        ),
        pytest.param(
            "https://x.example.com/<*>",
            {"splat": "a"},
            "https://x.example.com/a",
            {"splat"},
            id="angle-star-splat",
        ),
        pytest.param(
            "/u/:user/:tab/",
            {"user": "bob", "tab": "x", "splat": ""},
            "/u/bob/x/",
            {"user", "tab"},
            id="named-params",
        ),
        pytest.param(
            "/:a:b-:a_1.html",
            {"a": "1", "b": "2", "a_1": "3"},
            "/12-3.html",
            {"a", "b", "a_1"},
            id="adjacent-names-and-underscores",
        ),
        pytest.param("/:splatter", {"splatter": "s"}, "/s", {"splatter"}, id="name-is-greedy"),
        pytest.param(
            "https://x.example.com:8443/a",
            {},
            "https://x.example.com:8443/a",
            frozenset(),
            id="port-is-not-a-placeholder",
        ),
        pytest.param("::x", {"x": "1"}, ":1", {"x"}, id="double-colon"),
    ],
)
def test_template(
    template: str, params: dict[str, str], rendered: str, names: frozenset[str]
) -> None:
    compiled = Template(template)
    assert compiled.render(params) == rendered
    assert compiled.names == names


@pytest.mark.parametrize(
    ("pattern", "path", "rewrite", "upstream"),
    [
        pytest.param("/api", "/api//x/%7e/", {}, "/api//x/%7e/", id="no-rewrite-is-byte-exact"),
        pytest.param("/api", "/api/x/../y", {}, "/api/x/../y", id="no-rewrite-keeps-dots"),
        pytest.param("/api", "/api", {"strip_prefix": True}, "/", id="strip-whole-path-gives-root"),
        pytest.param("/api", "/api/", {"strip_prefix": True}, "/", id="strip-prefix-of-dir"),
        pytest.param(
            "/api", "/api/x/", {"strip_prefix": True}, "/x/", id="strip-prefix-keeps-trailing-slash"
        ),
        pytest.param(
            "/api", "/api/a%20b", {"strip_prefix": True}, "/a%20b", id="strip-prefix-keeps-encoding"
        ),
        pytest.param(
            "/api",
            "/%61pi/x",
            {"strip_prefix": True},
            "/x",
            id="strip-removes-raw-spelling-of-prefix",
        ),
        pytest.param(
            "/api", "/api//x", {"strip_prefix": True}, "//x", id="strip-keeps-double-slash"
        ),
        pytest.param("/t/:id", "/t/42/x", {"strip_prefix": True}, "/x", id="strip-param-prefix"),
        pytest.param("/", "/x/y", {"strip_prefix": True}, "/x/y", id="strip-root-is-identity"),
        pytest.param(
            "/api",
            "/api/x",
            {"strip_prefix": True, "add_prefix": "/v1"},
            "/v1/x",
            id="strip-then-add",
        ),
        pytest.param(
            "/api",
            "/api",
            {"strip_prefix": True, "add_prefix": "/v1"},
            "/v1",
            id="strip-add-no-trailing-slash",
        ),
        pytest.param(
            "/api",
            "/api/",
            {"strip_prefix": True, "add_prefix": "/v1"},
            "/v1/",
            id="strip-add-keeps-trailing-slash",
        ),
        pytest.param("/api", "/api/x", {"add_prefix": "/v1"}, "/v1/api/x", id="add-only"),
        pytest.param("/", "/", {"add_prefix": "/v1"}, "/v1/", id="add-to-root"),
        pytest.param(
            "/api",
            "/api/old/x",
            {"replace": {"pattern": "/old/", "with": "/new/"}},
            "/api/new/x",
            id="replace-literal",
        ),
        pytest.param(
            "/api",
            "/api/u/7",
            {
                "strip_prefix": True,
                "add_prefix": "/v2",
                "replace": {"pattern": r"^/v2/u/(\d+)$", "with": r"/users/\1"},
            },
            "/users/7",
            id="replace-after-strip-and-add",
        ),
        pytest.param(
            "/api",
            "/api/a/a",
            {"replace": {"pattern": "a", "with": "b"}},
            "/bpi/b/b",
            id="replace-all-occurrences",
        ),
        pytest.param(
            "/api",
            "/api",
            {"replace": {"pattern": "^/api$", "with": ""}},
            "/",
            id="replace-to-empty-gives-root",
        ),
        pytest.param(
            "/api",
            "/api/x",
            {"replace": {"pattern": "^/api/", "with": ""}},
            "/x",
            id="replace-result-gets-leading-slash",
        ),
        pytest.param(
            "/blog/:year",
            "/blog/2024/a%20b/",
            {"to": "/posts/:year/:splat"},
            "/posts/2024/a%20b/",
            id="to-template-splat-keeps-encoding",
        ),
        pytest.param(
            "/blog/:year",
            "/blog/2024/a",
            {"to": "<*>", "strip_prefix": True, "add_prefix": "/x"},
            "/a",
            id="to-replaces-everything",
        ),
    ],
)
def test_upstream_path(pattern: str, path: str, rewrite: dict[str, Any], upstream: str) -> None:
    route, match, request = matched(pattern, path, **rewrite)
    assert PathRewriter(route).upstream_path(match, request) == upstream


@pytest.mark.parametrize(
    ("pattern", "path", "rewrite", "prefix"),
    [
        pytest.param("/api", "/api/x", {"strip_prefix": True}, "/api", id="stripped"),
        pytest.param(
            "/api", "/%61pi/x", {"strip_prefix": True}, "/%61pi", id="stripped-prefix-is-raw"
        ),
        pytest.param(
            "/t/:id",
            "/t/4%202/x",
            {"strip_prefix": True},
            "/t/4%202",
            id="stripped-prefix-with-param",
        ),
        pytest.param("/api", "/api/x", {"add_prefix": "/v1"}, None, id="no-strip-no-prefix"),
        pytest.param("/", "/x", {"strip_prefix": True}, None, id="root-strips-nothing"),
    ],
)
def test_stripped_prefix(
    pattern: str, path: str, rewrite: dict[str, Any], prefix: str | None
) -> None:
    route, match, request = matched(pattern, path, **rewrite)
    assert PathRewriter(route).stripped_prefix(match, request) == prefix


@pytest.mark.parametrize(
    ("pattern", "path", "rewrite", "upstream", "public"),
    [
        pytest.param("/api", "/api/x", {}, "/login", "/login", id="no-rewrite-is-identity"),
        pytest.param(
            "/api", "/api/x", {"strip_prefix": True}, "/login", "/api/login", id="strip-inverted"
        ),
        pytest.param(
            "/api", "/api/x", {"strip_prefix": True}, "/", "/api/", id="strip-inverted-root"
        ),
        pytest.param(
            "/api",
            "/api/x",
            {"strip_prefix": True, "add_prefix": "/v1"},
            "/v1/login",
            "/api/login",
            id="strip-add-inverted",
        ),
        pytest.param(
            "/api",
            "/api/x",
            {"strip_prefix": True, "add_prefix": "/v1"},
            "/v1",
            "/api",
            id="strip-add-inverted-exact",
        ),
        pytest.param(
            "/api",
            "/api/x",
            {"strip_prefix": True, "add_prefix": "/v1"},
            "/other",
            None,
            id="outside-add-prefix",
        ),
        pytest.param(
            "/api",
            "/api/x",
            {"strip_prefix": True, "add_prefix": "/v1"},
            "/v1x/y",
            None,
            id="add-prefix-needs-segment-boundary",
        ),
        pytest.param(
            "/api", "/api/x", {"add_prefix": "/v1"}, "/v1/api/x", "/api/x", id="add-only-inverted"
        ),
        pytest.param("/api", "/api/x", {"add_prefix": "/v1"}, "/v1", "/", id="add-only-root"),
        pytest.param(
            "/t/:id",
            "/t/4%202/x",
            {"strip_prefix": True},
            "/done",
            "/t/4%202/done",
            id="concrete-param-prefix-put-back",
        ),
        pytest.param(
            "/api",
            "/api/x",
            {"strip_prefix": True, "add_prefix": "/v1"},
            "/v1/login?next=/v1/x#top",
            "/api/login?next=/v1/x#top",
            id="query-and-fragment-kept",
        ),
        pytest.param(
            "/api",
            "/api/x",
            {"strip_prefix": True, "add_prefix": "/v1"},
            "/v1?x",
            "/api?x",
            id="query-right-after-add-prefix",
        ),
        pytest.param(
            "/api",
            "/api/x",
            {"strip_prefix": True},
            "login",
            None,
            id="relative-reference-not-mapped",
        ),
        pytest.param(
            "/api",
            "/api/x",
            {"replace": {"pattern": "a", "with": "b"}},
            "/login",
            None,
            id="replace-not-invertible",
        ),
        pytest.param("/api", "/api/x", {"to": "/x/:splat"}, "/login", None, id="to-not-invertible"),
    ],
)
def test_public_path(
    pattern: str, path: str, rewrite: dict[str, Any], upstream: str, public: str | None
) -> None:
    route, match, request = matched(pattern, path, **rewrite)
    assert PathRewriter(route).public_path(upstream, match, request) == public


@pytest.mark.parametrize(
    ("pattern", "path", "to", "query", "location"),
    [
        pytest.param(
            "/old", "/old/a%20b", "/new/:splat", b"", "/new/a%20b", id="splat-keeps-encoding"
        ),
        pytest.param(
            "/old",
            "/old/x",
            "/new/:splat",
            b"a=1&b=%20",
            "/new/x?a=1&b=%20",
            id="query-kept-on-redirect",
        ),
        pytest.param(
            "/old", "/old/x", "/new?from=old", b"a=1", "/new?from=old", id="target-query-wins"
        ),
        pytest.param(
            "/old", "/old/x", "/new#top", b"a=1", "/new?a=1#top", id="query-goes-before-fragment"
        ),
        pytest.param(
            "/old",
            "/old/x",
            "/new#a?b",
            b"a=1",
            "/new?a=1#a?b",
            id="question-mark-in-fragment-is-not-a-query",
        ),
        pytest.param(
            "/p/:id",
            "/p/7",
            "https://x.example.com/items/:id",
            b"",
            "https://x.example.com/items/7",
            id="absolute-target",
        ),
    ],
)
def test_redirect_target(pattern: str, path: str, to: str, query: bytes, location: str) -> None:
    _, match, _ = matched(pattern, path)
    assert redirect_target(Template(to), match, query) == location


@pytest.mark.parametrize(
    ("params", "query"),
    [
        pytest.param({"splat": "a\r\nSet-Cookie: x=1"}, b"", id="line-break-in-capture-refused"),
        pytest.param({"splat": "a"}, b"a=1\nb", id="line-break-in-query-refused"),
        pytest.param({"splat": "a\x00"}, b"", id="nul-refused"),
    ],
)
def test_redirect_target_refuses_header_breakers(params: dict[str, str], query: bytes) -> None:
    _, match, _ = matched("/", "/")
    forged = RouteMatch(match.route, params, 0)
    with pytest.raises(BadRequest, match=re.escape("would contain a line break or NUL")):
        redirect_target(Template("/new/:splat"), forged, query)
