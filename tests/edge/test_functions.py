from __future__ import annotations

from pathlib import Path

import pytest

from edgeproxy.edge.functions import SiteFunctions
from edgeproxy.exceptions import HandlerLoadError
from tests.edge.conftest import LoadSite

ANY = """
from starlette.responses import PlainTextResponse

async def on_request(request, env, ctx):
    return PlainTextResponse("x")
"""
GET_ONLY = """
from starlette.responses import PlainTextResponse

async def on_request_get(request, env, ctx):
    return PlainTextResponse("x")
"""

TREE = {
    "functions/index.py": ANY,
    "functions/_middleware.py": ANY,
    "functions/_lib.py": "VALUE = 1\n",
    "functions/_shared/util.py": ANY,
    "functions/notes.txt": "not code",
    "functions/api/_middleware.py": ANY,
    "functions/api/hello.py": GET_ONLY,
    "functions/api/special.py": ANY,
    "functions/api/[id].py": ANY,
    "functions/users/[id].py": ANY,
    "functions/docs/index.py": ANY,
    "functions/docs/[[path]].py": ANY,
    "functions/[team]/index.py": ANY,
    "functions/[team]/settings.py": ANY,
}
ROOT_MW = "functions/_middleware.py:on_request"
API_MW = "functions/api/_middleware.py:on_request"


@pytest.mark.parametrize(
    ("path", "method", "handler", "params", "middlewares"),
    [
        pytest.param("/", "GET", "functions/index.py:on_request", {}, [ROOT_MW], id="index"),
        pytest.param(
            "/api/hello",
            "GET",
            "functions/api/hello.py:on_request_get",
            {},
            [ROOT_MW, API_MW],
            id="method-variant-and-middlewares-outermost-first",
        ),
        pytest.param(
            "/api/hello",
            "POST",
            "functions/api/[id].py:on_request",
            {"id": "hello"},
            [ROOT_MW, API_MW],
            id="module-without-method-falls-through",
        ),
        pytest.param(
            "/api/hello/",
            "GET",
            "functions/api/hello.py:on_request_get",
            {},
            [ROOT_MW, API_MW],
            id="trailing-slash",
        ),
        pytest.param(
            "/api/special",
            "GET",
            "functions/api/special.py:on_request",
            {},
            [ROOT_MW, API_MW],
            id="literal-before-param",
        ),
        pytest.param(
            "/api/42",
            "GET",
            "functions/api/[id].py:on_request",
            {"id": "42"},
            [ROOT_MW, API_MW],
            id="param",
        ),
        pytest.param(
            "/docs",
            "GET",
            "functions/docs/index.py:on_request",
            {},
            [ROOT_MW],
            id="index-before-empty-catchall",
        ),
        pytest.param(
            "/docs/a",
            "GET",
            "functions/docs/[[path]].py:on_request",
            {"path": ["a"]},
            [ROOT_MW],
            id="catchall-one",
        ),
        pytest.param(
            "/docs/a/b/c",
            "GET",
            "functions/docs/[[path]].py:on_request",
            {"path": ["a", "b", "c"]},
            [ROOT_MW],
            id="catchall-list",
        ),
        pytest.param(
            "/acme",
            "GET",
            "functions/[team]/index.py:on_request",
            {"team": "acme"},
            [ROOT_MW],
            id="param-directory-index",
        ),
        pytest.param(
            "/acme/settings",
            "GET",
            "functions/[team]/settings.py:on_request",
            {"team": "acme"},
            [ROOT_MW],
            id="param-directory",
        ),
        pytest.param(
            "/users/7",
            "GET",
            "functions/users/[id].py:on_request",
            {"id": "7"},
            [ROOT_MW],
            id="users-param-beats-team-directory",
        ),
        pytest.param(
            "/_lib",
            "GET",
            "functions/[team]/index.py:on_request",
            {"team": "_lib"},
            [ROOT_MW],
            id="helper-is-no-route",
        ),
        pytest.param("/_shared/util/x", "GET", None, {}, [ROOT_MW], id="helper-dir-is-no-route"),
        pytest.param(
            "/notes.txt",
            "GET",
            "functions/[team]/index.py:on_request",
            {"team": "notes.txt"},
            [ROOT_MW],
            id="non-python-is-no-route",
        ),
    ],
)
def test_match(
    load_site: LoadSite,
    path: str,
    method: str,
    handler: str | None,
    params: dict[str, object],
    middlewares: list[str],
) -> None:
    chain = load_site(TREE).match(path, method)
    assert chain is not None
    assert (chain.handler.label if chain.handler else None) == handler
    assert chain.params == params
    assert [m.label for m in chain.middlewares] == middlewares


@pytest.mark.parametrize(
    ("files", "path", "handler"),
    [
        pytest.param(
            {"functions/[a]/b/c.py": ANY, "functions/x/[[rest]].py": ANY},
            "/x/b/c",
            "functions/[a]/b/c.py:on_request",
            id="more-segments-win",
        ),
        pytest.param(
            {"functions/[a]/[b].py": ANY, "functions/x/[[rest]].py": ANY},
            "/x/y",
            "functions/[a]/[b].py:on_request",
            id="param-before-catchall-of-fewer-segments",
        ),
        pytest.param(
            {"functions/x/[b].py": ANY, "functions/[a]/y.py": ANY},
            "/x/y",
            "functions/x/[b].py:on_request",
            id="compared-segment-by-segment",
        ),
        pytest.param(
            {"functions/[[all]].py": ANY, "functions/index.py": ANY},
            "/",
            "functions/index.py:on_request",
            id="root-index-before-root-catchall",
        ),
        pytest.param(
            {"functions/[[all]].py": ANY},
            "/",
            "functions/[[all]].py:on_request",
            id="catchall-matches-zero-segments",
        ),
        pytest.param(
            {"functions/sitemap.xml.py": ANY},
            "/sitemap.xml",
            "functions/sitemap.xml.py:on_request",
            id="dotted-file-name",
        ),
        pytest.param(
            {"functions/api/index.py": GET_ONLY, "functions/api/[[rest]].py": ANY},
            "/api",
            "functions/api/[[rest]].py:on_request",
            id="method-fall-through-to-catchall",
        ),
    ],
)
def test_specificity(load_site: LoadSite, files: dict[str, str], path: str, handler: str) -> None:
    chain = load_site(files).match(path, "POST")
    assert chain is not None
    assert chain.handler is not None
    assert chain.handler.label == handler


def test_middleware_in_param_directories(load_site: LoadSite) -> None:
    site = load_site(
        {
            "functions/[team]/[project]/_middleware.py": ANY,
            "functions/[team]/[project]/[[rest]].py": GET_ONLY,
        }
    )
    chain = site.match("/acme/site/deep/path", "POST")
    assert chain is not None
    assert chain.handler is None
    assert chain.params == {"team": "acme", "project": "site"}
    assert [m.label for m in chain.middlewares] == [
        "functions/[team]/[project]/_middleware.py:on_request"
    ]
    assert site.match("/acme", "POST") is None


def test_no_route_no_middleware_is_none(load_site: LoadSite) -> None:
    site = load_site({"functions/api/hello.py": GET_ONLY})
    assert site.match("/index.html", "GET") is None
    assert site.match("/api/hello", "POST") is None
    assert site.match("/api/hello/more", "GET") is None


def test_without_functions_dir_matches_nothing(tmp_path: Path) -> None:
    site = SiteFunctions.load(tmp_path / "nothing", "d1", None)
    assert site.match("/", "GET") is None
    site.close()


ROUTES_TREE = {"functions/_middleware.py": ANY, "functions/api/[[rest]].py": ANY}


@pytest.mark.parametrize(
    ("routes_json", "path", "invoked"),
    [
        pytest.param('{"version": 1, "include": ["/api/*"]}', "/api/x", True, id="included"),
        pytest.param('{"version": 1, "include": ["/api/*"]}', "/api", True, id="bare-prefix"),
        pytest.param('{"version": 1, "include": ["/api/*"]}', "/about", False, id="not-included"),
        pytest.param(
            '{"version": 1, "include": ["/*"], "exclude": ["/static/*"]}',
            "/static/app.js",
            False,
            id="excluded",
        ),
        pytest.param(
            '{"version": 1, "include": ["/static/app.js"], "exclude": ["/static/*"]}',
            "/static/app.js",
            False,
            id="exclude-checked-first",
        ),
        pytest.param(
            '{"version": 1, "include": ["/*"], "exclude": ["/static/*"]}',
            "/index.html",
            True,
            id="include-all",
        ),
    ],
)
def test_routes_json_limits_functions(
    load_site: LoadSite, routes_json: str, path: str, invoked: bool
) -> None:
    site = load_site({**ROUTES_TREE, "_routes.json": routes_json})
    assert (site.match(path, "GET") is not None) is invoked


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param(
            {"functions/users/[id].py": ANY, "functions/users/[name].py": ANY},
            "routes the same paths as",
            id="same-shape-twice",
        ),
        pytest.param(
            {"functions/users.py": ANY, "functions/users/index.py": ANY},
            "routes the same paths as",
            id="file-and-index",
        ),
        pytest.param(
            {"functions/[id]/[id].py": ANY},
            "parameter 'id' appears twice",
            id="duplicate-param",
        ),
        pytest.param(
            {"functions/a[b.py": ANY},
            "is neither a name, a [param] nor a [[catchall]]",
            id="bad-segment",
        ),
        pytest.param(
            {"functions/ok.py": ANY, "_routes.json": "{not json"},
            "_routes.json: line 1: not valid JSON",
            id="bad-routes-json",
        ),
    ],
)
def test_load_errors(load_site: LoadSite, files: dict[str, str], message: str) -> None:
    with pytest.raises(HandlerLoadError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_site(files)
