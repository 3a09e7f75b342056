import re
from typing import Any

import pytest

from edgeproxy.config.models import Route
from edgeproxy.exceptions import BadRequest, ConfigError
from edgeproxy.routing.paths import parse_path
from edgeproxy.routing.table import RouteTable


def route(name: str, **match: Any) -> Route:
    return Route.model_validate({"name": name, "match": match, "proxy": "origin"})


def winner(table: RouteTable, host: str, path: str, method: str = "GET") -> str | None:
    found = table.match(host, parse_path(path.encode()), method)
    return None if found is None else found.route.name


HOSTS = [
    route("exact", host="api.example.com"),
    route("wild", host="*.example.com"),
    route("any"),
]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("api.example.com", "exact", id="exact-host-beats-wildcard"),
        pytest.param("API.Example.COM", "exact", id="host-case-insensitive"),
        pytest.param("api.example.com:8443", "exact", id="port-stripped"),
        pytest.param("api.example.com.", "exact", id="trailing-dot-stripped"),
        pytest.param("www.example.com", "wild", id="wildcard-beats-any"),
        pytest.param("a.b.example.com", "any", id="wildcard-one-label-only"),
        pytest.param("example.com", "any", id="wildcard-needs-one-label"),
        pytest.param(".example.com", "any", id="wildcard-needs-non-empty-label"),
        pytest.param("[::1]:8080", "any", id="ipv6-literal-with-port"),
        pytest.param("", "any", id="no-host-header"),
    ],
)
def test_host_rank(host: str, expected: str) -> None:
    assert winner(RouteTable(HOSTS), host, "/") == expected


def test_host_rank_beats_path_specificity() -> None:
    table = RouteTable([route("exact-root", host="a.example.com"), route("any-deep", path="/x/y")])
    assert winner(table, "a.example.com", "/x/y") == "exact-root"


def test_falls_back_to_less_specific_host_when_path_misses() -> None:
    table = RouteTable([route("exact-api", host="a.example.com", path="/api"), route("any")])
    assert winner(table, "a.example.com", "/web") == "any"


@pytest.mark.parametrize(
    ("routes", "host", "expected"),
    [
        pytest.param(
            [route("r", host="a.example.com")], "a.example.com:80", "r", id="host-with-port-matches"
        ),
        pytest.param(
            [route("r", host=["a.example.com", "*.b.example.com"])],
            "x.b.example.com",
            "r",
            id="one-route-many-hosts",
        ),
        pytest.param(
            [route("r", host="a.example.com")], "b.example.com", None, id="host-mismatch-no-route"
        ),
    ],
)
def test_host_lists(routes: list[Route], host: str, expected: str | None) -> None:
    assert winner(RouteTable(routes), host, "/") == expected


PATHS = [
    route("root", path="/"),
    route("api", path="/api"),
    route("api-v1", path="/api/v1/"),
    route("api-id", path="/api/:id"),
    route("api-id-edit", path="/api/:id/edit"),
    route("user", path="/:user/profile"),
]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/", "root", id="root-pattern-matches-root"),
        pytest.param("/anything/else", "root", id="root-pattern-matches-everything"),
        pytest.param("/apix", "root", id="prefix-matches-whole-segments-only"),
        pytest.param("/api", "api", id="prefix-matches-itself"),
        pytest.param("/api/", "api", id="prefix-matches-with-trailing-slash"),
        pytest.param("/api/v1", "api-v1", id="pattern-trailing-slash-ignored"),
        pytest.param("/api/v1/x/y", "api-v1", id="longer-literal-prefix-wins"),
        pytest.param("/api/v2", "api-id", id="param-takes-one-segment"),
        pytest.param("/api/v1/edit", "api-v1", id="literal-beats-param-at-same-position"),
        pytest.param("/api/7/edit", "api-id-edit", id="longer-param-pattern-wins"),
        pytest.param("/api/profile", "api-id", id="literal-first-segment-beats-param"),
        pytest.param("/bob/profile", "user", id="leading-param"),
        pytest.param("/API", "root", id="literal-case-sensitive"),
        pytest.param("/%61pi/v%31", "api-v1", id="unreserved-escapes-match-literals"),
        pytest.param("/api/7/edit/..", "api-id", id="dots-resolved-before-matching"),
        pytest.param("//profile", "root", id="param-needs-non-empty-segment"),
    ],
)
def test_path_specificity(path: str, expected: str) -> None:
    assert winner(RouteTable(PATHS), "example.com", path) == expected


@pytest.mark.parametrize(
    ("pattern", "path", "params", "prefix_length"),
    [
        pytest.param("/api", "/api", {"splat": ""}, 1, id="splat-empty"),
        pytest.param("/api", "/api/", {"splat": ""}, 1, id="splat-empty-with-trailing-slash"),
        pytest.param("/api", "/api/a%20b/c/", {"splat": "a%20b/c/"}, 1, id="splat-keeps-encoding"),
        pytest.param("/api", "/api/%7e", {"splat": "%7e"}, 1, id="splat-is-raw-not-normalized"),
        pytest.param("/api/*", "/api/x/y", {"splat": "x/y"}, 1, id="explicit-star"),
        pytest.param("/api/<*>", "/api/x", {"splat": "x"}, 1, id="explicit-angle-star"),
        pytest.param("/", "/a//b", {"splat": "a//b"}, 0, id="splat-keeps-double-slash"),
        pytest.param(
            "/u/:name/:tab",
            "/u/J%C3%B6rg/%7Efiles/x",
            {"name": "J%C3%B6rg", "tab": "%7Efiles", "splat": "x"},
            3,
            id="params-are-raw-segments",
        ),
        pytest.param(
            "/api", "/api/x/../y", {"splat": "x/../y"}, 1, id="splat-keeps-dots-inside-remainder"
        ),
    ],
)
def test_captures(pattern: str, path: str, params: dict[str, str], prefix_length: int) -> None:
    found = RouteTable([route("r", path=pattern)]).match("h", parse_path(path.encode()), "GET")
    assert found is not None
    assert found.params == params
    assert found.prefix_length == prefix_length


METHODS = [
    route("get", path="/x", methods=["GET"]),
    route("head", path="/y", methods=["HEAD"]),
    route("get-y", path="/y", methods=["GET"]),
    route("post", path="/x", methods=["POST", "PUT"]),
    route("any", path="/x"),
    route("deep-post", path="/z/deep", methods=["POST"]),
    route("z", path="/z"),
]


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        pytest.param("/x", "GET", "get", id="methods-list-beats-no-list"),
        pytest.param("/x", "PUT", "post", id="second-method-in-list"),
        pytest.param("/x", "DELETE", "any", id="unlisted-method-falls-back"),
        pytest.param("/x", "HEAD", "get", id="head-matches-get-route"),
        pytest.param("/y", "HEAD", "head", id="explicit-head-beats-head-via-get"),
        pytest.param("/y", "GET", "get-y", id="head-route-does-not-take-get"),
        pytest.param("/z/deep", "GET", "z", id="method-mismatch-falls-back-to-shorter-prefix"),
        pytest.param("/z/deep", "POST", "deep-post", id="method-match-takes-longer-prefix"),
    ],
)
def test_methods(path: str, method: str, expected: str) -> None:
    assert winner(RouteTable(METHODS), "h", path, method) == expected


def test_no_route() -> None:
    table = RouteTable([route("api", path="/api", methods=["GET"])])
    assert winner(table, "h", "/api", "POST") is None


def test_routes_keep_config_order_and_payload_slot() -> None:
    table = RouteTable([route("b", path="/b"), Route.model_validate({"proxy": "o"})])
    assert [(r.index, r.name, r.payload) for r in table.routes] == [
        (0, "b", None),
        (1, "routes[1]", None),
    ]
    table.routes[1].payload = "action"
    assert winner(table, "h", "/") == "routes[1]"
    found = table.match("h", parse_path(b"/"), "GET")
    assert found is not None
    assert found.route.payload == "action"


@pytest.mark.parametrize(
    ("routes", "path", "message"),
    [
        pytest.param(
            [route("admin", path="/admin"), route("api", path="/api")],
            "/api/../admin",
            "reaches the route prefix '/admin' only through dot-segments",
            id="dot-segment-across-prefix-refused",
        ),
        pytest.param(
            [route("api", path="/api")],
            "/api/../api/x",
            "climbs out of the route prefix '/api'",
            id="climb-out-and-back-refused",
        ),
        pytest.param(
            [route("api", path="/api/:id")],
            "/api/x/../%2e%2e/api/y",
            "reaches the route prefix '/api/y' only through dot-segments",
            id="encoded-dots-across-param-prefix-refused",
        ),
    ],
)
def test_prefix_boundary(routes: list[Route], path: str, message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        RouteTable(routes).match("h", parse_path(path.encode()), "GET")


@pytest.mark.parametrize(
    ("routes", "issues"),
    [
        pytest.param(
            [
                route("a", host="api.example.com", path="/api"),
                route("b", host="API.example.com", path="/api"),
            ],
            [
                (
                    "routes[1].match",
                    "routes[1] ties with routes[0] (same host 'api.example.com', "
                    "path '/api', methods any); make one more specific or remove it",
                )
            ],
            id="tie-is-config-error",
        ),
        pytest.param(
            [route("a", path="/api/:id"), route("b", path="/api/:key/*/")],
            [
                (
                    "routes[1].match",
                    "routes[1] ties with routes[0] (both for any host, paths "
                    "'/api/:key/*/' and '/api/:id' alike, methods any); make one more specific or "
                    "remove it",
                )
            ],
            id="params-tie-regardless-of-name",
        ),
        pytest.param(
            [
                route("a", host="*.example.com", methods=["GET", "POST"]),
                route("b", host=["x.org", "*.example.com"], methods=["POST", "PUT"]),
            ],
            [
                (
                    "routes[1].match",
                    "routes[1] ties with routes[0] (same host '*.example.com', "
                    "path '/', methods POST); make one more specific or remove it",
                )
            ],
            id="overlapping-methods-tie",
        ),
        pytest.param(
            [route("a"), route("b"), route("c")],
            [
                ("routes[1].match", "routes[1] ties with routes[0]"),
                ("routes[2].match", "routes[2] ties with routes[0]"),
                ("routes[2].match", "routes[2] ties with routes[1]"),
            ],
            id="every-tied-pair-listed",
        ),
        pytest.param(
            [route("a", path="/:x/:x")],
            [("routes[0].match.path", "'/:x/:x': ':x' is used twice")],
            id="duplicate-param-refused",
        ),
        pytest.param(
            [route("a", path="/a/*/b")],
            [("routes[0].match.path", "'*' and '<*>' may only be the whole last segment")],
            id="star-not-at-end-refused",
        ),
        pytest.param(
            [route("a", path="/api*")],
            [("routes[0].match.path", "'*' and '<*>' may only be the whole last segment")],
            id="glob-star-refused",
        ),
        pytest.param(
            [route("a", path="/:splat")],
            [("routes[0].match.path", "':splat' is reserved")],
            id="splat-param-name-reserved",
        ),
        pytest.param(
            [route("a", path="/:1x")],
            [("routes[0].match.path", "':1x' is not a valid :name")],
            id="bad-param-name-refused",
        ),
        pytest.param(
            [route("a", path="/a//b")],
            [("routes[0].match.path", "has an empty segment")],
            id="empty-pattern-segment-refused",
        ),
        pytest.param(
            [route("a", path="/a/../b")],
            [("routes[0].match.path", "has a '.' or '..' segment")],
            id="dot-segment-pattern-refused",
        ),
        pytest.param(
            [route("a", path="/a%2Fb")],
            [("routes[0].match.path", "encoded slash (%2F)")],
            id="invalid-pattern-path-refused",
        ),
        pytest.param(
            [route("a", path="/café")],
            [("routes[0].match.path", "non-ASCII characters; percent-encode them")],
            id="non-ascii-pattern-refused",
        ),
        pytest.param(
            [route("a", host=[]), route("b", methods=[])],
            [
                ("routes[0].match.host", "empty list; omit host to match any host"),
                ("routes[1].match.methods", "empty list; omit methods to allow any method"),
            ],
            id="empty-lists-refused",
        ),
        pytest.param(
            [Route.model_validate({"match": {"path": "/b/:id"}, "redirect": {"to": "/c/:slug"}})],
            [
                (
                    "routes[0].redirect.to",
                    ":slug not captured by match.path '/b/:id' (available: :id, :splat)",
                )
            ],
            id="redirect-template-unknown-name-refused",
        ),
        pytest.param(
            [Route.model_validate({"proxy": "o", "rewrite": {"to": "/x/:id"}})],
            [("routes[0].rewrite.to", ":id not captured by match.path '/'")],
            id="rewrite-template-unknown-name-refused",
        ),
        pytest.param(
            [Route.model_validate({"redirect": {"to": "/a\r\nSet-Cookie: x=1"}})],
            [("routes[0].redirect.to", "contains a line break or NUL")],
            id="redirect-template-line-break-refused",
        ),
        pytest.param(
            [
                Route.model_validate(
                    {"proxy": "o", "rewrite": {"replace": {"pattern": "^/(a)", "with": r"/\2"}}}
                )
            ],
            [("routes[0].rewrite.replace.with", "is not a valid replacement for '^/(a)'")],
            id="replacement-bad-group-refused",
        ),
    ],
)
def test_config_errors(routes: list[Route], issues: list[tuple[str, str]]) -> None:
    with pytest.raises(ConfigError) as caught:
        RouteTable(routes)
    found = caught.value.issues
    assert [issue.path for issue in found] == [path for path, _ in issues]
    for issue, (_, message) in zip(found, issues, strict=True):
        assert message in issue.message


@pytest.mark.parametrize(
    "routes",
    [
        pytest.param(
            [route("a", methods=["GET"]), route("b", methods=["POST"])],
            id="disjoint-methods-do-not-tie",
        ),
        pytest.param([route("a", methods=["GET"]), route("b")], id="methods-list-outranks-none"),
        pytest.param(
            [route("a", methods=["GET"]), route("b", methods=["HEAD"])],
            id="explicit-head-outranks-get",
        ),
        pytest.param(
            [route("a", host="a.example.com"), route("b", host="*.example.com")],
            id="different-host-keys-do-not-tie",
        ),
        pytest.param(
            [route("a", path="/:x/b"), route("b", path="/a/:y")], id="different-shapes-do-not-tie"
        ),
        pytest.param(
            [route("a", host=["a.example.com", "a.example.com"])],
            id="host-listed-twice-does-not-tie-itself",
        ),
    ],
)
def test_not_a_tie(routes: list[Route]) -> None:
    assert len(RouteTable(routes).routes) == len(routes)


EXPLAINED = [
    route("web", host="www.example.com"),
    route("api", host="api.example.com", path="/api/v1"),
    route("api-any", path="/api"),
    route("api-post", path="/api/v1", methods=["POST"]),
    route("api-wild", host="*.example.com", path="/api/v1/x"),
    route("admin", path="/admin"),
    route("v1-any", path="/api/v1"),
    route("v1-get", host="api.example.com", path="/api/v1", methods=["GET"]),
]


@pytest.mark.parametrize(
    ("host", "path", "method", "lines"),
    [
        pytest.param(
            "api.example.com:443",
            "/api/v1/x",
            "GET",
            [
                "request: host=api.example.com path=/api/v1/x method=GET",
                "winner: routes[7] 'v1-get' host=api.example.com (exact) path=/api/v1 methods=GET",
                "routes[0] 'web': host mismatch (wants www.example.com)",
                "routes[1] 'api': less specific than winner (no methods list < GET)",
                "routes[2] 'api-any': less specific than winner (host any < exact)",
                "routes[3] 'api-post': method GET not allowed (allows POST)",
                "routes[4] 'api-wild': less specific than winner (host wildcard < exact)",
                "routes[5] 'admin': path mismatch (pattern /admin)",
                "routes[6] 'v1-any': less specific than winner (host any < exact)",
            ],
            id="explain-winner-and-losers",
        ),
        pytest.param(
            "x.example.com",
            "/api/v1",
            "DELETE",
            [
                "request: host=x.example.com path=/api/v1 method=DELETE",
                "winner: routes[6] 'v1-any' host=* (any) path=/api/v1",
                "routes[0] 'web': host mismatch (wants www.example.com)",
                "routes[1] 'api': host mismatch (wants api.example.com)",
                "routes[2] 'api-any': less specific than winner (path /api < /api/v1)",
                "routes[3] 'api-post': method DELETE not allowed (allows POST)",
                "routes[4] 'api-wild': path mismatch (pattern /api/v1/x)",
                "routes[5] 'admin': path mismatch (pattern /admin)",
                "routes[7] 'v1-get': host mismatch (wants api.example.com)",
            ],
            id="explain-path-specificity",
        ),
        pytest.param(
            "",
            "/api/../admin",
            "GET",
            [
                "request: host=(none) path=/admin (raw /api/../admin) method=GET",
                "winner: routes[5] 'admin' host=* (any) path=/admin",
                "refused with 400: path '/api/../admin' reaches the route prefix '/admin' only "
                "through dot-segments; request the normalized path instead",
            ],
            id="explain-refused-winner",
        ),
    ],
)
def test_explain(host: str, path: str, method: str, lines: list[str]) -> None:
    explained = RouteTable(EXPLAINED).explain(host, parse_path(path.encode()), method)
    assert explained[: len(lines)] == lines


@pytest.mark.parametrize(
    ("routes", "method", "lines"),
    [
        pytest.param(
            [route("a", host="a.example.com"), route("b", path="/b", methods=["GET"])],
            "POST",
            [
                "request: host=h path=/c method=POST",
                "no route matches",
                "routes[0] 'a': host mismatch (wants a.example.com)",
                "routes[1] 'b': path mismatch (pattern /b)",
            ],
            id="explain-no-match",
        ),
        pytest.param(
            [route("get", methods=["GET"]), route("head", methods=["HEAD"])],
            "HEAD",
            [
                "request: host=h path=/c method=HEAD",
                "winner: routes[1] 'head' host=* (any) path=/ methods=HEAD",
                "routes[0] 'get': less specific than winner (takes HEAD only via GET < lists HEAD)",
            ],
            id="explain-explicit-head",
        ),
    ],
)
def test_explain_edges(routes: list[Route], method: str, lines: list[str]) -> None:
    assert RouteTable(routes).explain("h", parse_path(b"/c"), method) == lines
