from __future__ import annotations

import pytest

from edgeproxy.edge.routefilter import RouteFilter
from edgeproxy.exceptions import HandlerLoadError


@pytest.mark.parametrize(
    ("include", "exclude", "path", "allowed"),
    [
        pytest.param(["/*"], [], "/anything/at/all", True, id="everything"),
        pytest.param(["/"], [], "/", True, id="root-only"),
        pytest.param(["/"], [], "/x", False, id="root-only-not-below"),
        pytest.param(["/api/*"], [], "/api", True, id="slash-star-matches-bare"),
        pytest.param(["/api/*"], [], "/api/", True, id="slash-star-matches-slash"),
        pytest.param(["/api/*"], [], "/api/a/b", True, id="star-crosses-slashes"),
        pytest.param(["/api/*"], [], "/apix", False, id="segment-boundary"),
        pytest.param(["/api*"], [], "/apix", True, id="bare-star"),
        pytest.param(["/hello"], [], "/hello/", True, id="optional-trailing-slash"),
        pytest.param(["/hello"], [], "/hello/x", False, id="exact"),
        pytest.param(["/a.b"], [], "/aXb", False, id="dot-is-literal"),
        pytest.param(["/*/edit"], [], "/posts/1/edit", True, id="inner-star"),
        pytest.param(["/*"], ["/static/*"], "/static/app.js", False, id="exclude-wins"),
        pytest.param(["/static/a.js"], ["/static/*"], "/static/a.js", False, id="exclude-first"),
    ],
)
def test_allows(include: list[str], exclude: list[str], path: str, allowed: bool) -> None:
    assert RouteFilter(include, exclude).allows(path) is allowed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{", "_routes.json: line 1: not valid JSON", id="bad-json"),
        pytest.param("[]", "must be a JSON object, not a list", id="not-an-object"),
        pytest.param('{"include": ["/*"]}', "version must be 1 (got null)", id="no-version"),
        pytest.param('{"version": 2, "include": ["/*"]}', "version must be 1 (got 2)", id="v2"),
        pytest.param('{"version": 1}', "include is missing", id="missing-include"),
        pytest.param('{"version": 1, "include": "/*"}', "include must be a list", id="str-include"),
        pytest.param('{"version": 1, "include": []}', "at least one rule", id="empty-include"),
        pytest.param(
            '{"version": 1, "include": ["/*", 3]}', "include[1] must be a string, not 3", id="int"
        ),
        pytest.param(
            '{"version": 1, "include": ["api/*"]}',
            "include[0] 'api/*' must start with '/'",
            id="relative",
        ),
        pytest.param(
            '{"version": 1, "include": ["/*"], "exclude": {"a": 1}}',
            "exclude must be a list of strings, not an object",
            id="object-exclude",
        ),
        pytest.param(
            '{"version": 1, "include": ["/*"], "excludes": []}',
            "unknown key 'excludes' (known: version, description, include, exclude)",
            id="typo",
        ),
        pytest.param(
            '{"version": 1, "include": ["/' + "a" * 100 + '"]}', "at most 100", id="too-long"
        ),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(HandlerLoadError) as caught:
        RouteFilter.parse(text)
    assert str(caught.value).startswith("_routes.json: ")
    assert message in str(caught.value)


def test_parse_accepts_wrangler_output() -> None:
    text = '{"version": 1, "description": "Generated", "include": ["/api/*"], "exclude": []}'
    route_filter = RouteFilter.parse(text)
    assert route_filter.include == ("/api/*",)
    assert route_filter.allows("/api/x")
