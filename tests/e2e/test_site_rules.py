"""End to end: clean URLs, 404/SPA fallback, `_redirects` in both dialects, `_headers`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from edgeproxy.sites.headers import HeaderRules
from edgeproxy.sites.redirects import RedirectRules
from tests.e2e.conftest import ROOT, Edge, Origin

pytestmark = pytest.mark.e2e

TOKEN = "rules-token"

FILES = {
    "index.html": "home",
    "about.html": "about",
    "docs/index.html": "docs index",
    "guide.html": "guide",
    "blog/post.html": "post",
    "blog/404.html": "blog not found",
    "shadowed.html": "the file",
    "_headers": (
        "/*\n  X-Everywhere: 1\n  X-Joined: a\n"
        "/blog/*\n  X-Joined: b\n  ! X-Everywhere\n"
        "/blog/:slug\n  X-Slug: :slug\n"
    ),
}


def deploy(edge: Edge, root: Path, branch: str) -> None:
    command = [
        sys.executable, "-m", "edgeproxy", "deploy", str(root), "--site", "s", "--branch", branch,
        "--server", edge.url, "--token", TOKEN,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def site_tree(root: Path, redirects: str, extra: dict[str, str] | None = None) -> Path:
    for name, content in {**FILES, "_redirects": redirects, **(extra or {})}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


def start(edge_factory: Callable[..., Edge], dialect: str) -> Edge:
    return edge_factory(
        f"admin: {{token: {TOKEN}}}\nsites:\n  s:\n    redirects_dialect: {dialect}\n"
    )


def get(edge: Edge, alias: str, path: str) -> httpx.Response:
    return edge.client().get(path, headers={"Host": f"{alias}.s.localhost:{edge.port}"})


@pytest.fixture
def cloudflare(edge_factory: Callable[..., Edge], tmp_path: Path) -> Edge:
    edge = start(edge_factory, "cloudflare")
    redirects = (
        "/old /about 301\n"
        "/shadowed /about 302\n"
        "/news/* /blog/:splat\n"
        "/people/:name /team/:name 307\n"
        "/app/* /index.html 200\n"
    )
    deploy(edge, site_tree(tmp_path / "cf", redirects), "cf")
    return edge


@pytest.mark.parametrize(
    ("path", "status", "expected"),
    [
        pytest.param("/", 200, "home", id="root-index"),
        pytest.param("/about", 200, "about", id="clean-url"),
        pytest.param("/about.html", 308, "/about", id="html-extension-redirects"),
        pytest.param("/docs/index.html", 308, "/docs/", id="index-html-redirects"),
        pytest.param("/docs", 308, "/docs/", id="directory-gets-slash"),
        pytest.param("/guide/", 308, "/guide", id="slash-removed-for-html-file"),
        pytest.param("/blog/missing", 404, "blog not found", id="nearest-404"),
        pytest.param("/elsewhere/missing", 200, "home", id="spa-fallback-without-404"),
    ],
)
def test_clean_urls_and_fallbacks(cloudflare: Edge, path: str, status: int, expected: str) -> None:
    response = get(cloudflare, "cf", path)
    assert response.status_code == status
    if 300 <= status < 400:
        assert response.headers["location"] == expected
    else:
        assert response.text == expected


@pytest.mark.parametrize(
    ("path", "status", "location"),
    [
        pytest.param("/old?ref=x", 301, "/about?ref=x", id="query-kept"),
        pytest.param("/news/2024/post", 302, "/blog/2024/post", id="splat-default-302"),
        pytest.param("/people/ada", 307, "/team/ada", id="placeholder"),
        pytest.param("/shadowed", 302, "/about", id="cloudflare-redirect-beats-file"),
    ],
)
def test_cloudflare_redirects(cloudflare: Edge, path: str, status: int, location: str) -> None:
    response = get(cloudflare, "cf", path)
    assert response.status_code == status
    assert response.headers["location"] == location


def test_cloudflare_rewrite_serves_other_content(cloudflare: Edge) -> None:
    response = get(cloudflare, "cf", "/app/settings/profile")
    assert response.status_code == 200
    assert response.text == "home"


def test_headers_merge_detach_and_placeholders(cloudflare: Edge) -> None:
    home = get(cloudflare, "cf", "/about")
    assert home.headers["x-everywhere"] == "1"
    assert home.headers["x-joined"] == "a"
    post = get(cloudflare, "cf", "/blog/post")
    assert "x-everywhere" not in post.headers
    assert post.headers["x-joined"] == "a, b"
    assert post.headers["x-slug"] == "post"
    missing = get(cloudflare, "cf", "/blog/nope")
    assert missing.status_code == 404
    assert missing.headers["x-slug"] == "nope"


@pytest.fixture
def netlify(edge_factory: Callable[..., Edge], tmp_path: Path, origin: Origin) -> Edge:
    edge = start(edge_factory, "netlify")
    redirects = (
        "/old /about\n"
        "/shadowed /about 302\n"
        "/forced /about 302!\n"
        "/store id=:id /products/:id 301\n"
        "/gone /guide 410\n"
        f"/api/* {origin.url}/:splat 200\n"
    )
    deploy(edge, site_tree(tmp_path / "nl", redirects, {"forced.html": "forced file"}), "nl")
    return edge


@pytest.mark.parametrize(
    ("path", "status", "expected"),
    [
        pytest.param("/old", 301, "/about", id="netlify-default-301"),
        pytest.param("/shadowed", 200, "the file", id="shadowing-serves-the-file"),
        pytest.param("/forced", 302, "/about", id="force-beats-the-file"),
        pytest.param("/store?id=7", 301, "/products/7", id="query-parameter-condition"),
        pytest.param("/store", 200, "home", id="condition-unmet-falls-through"),
        pytest.param("/gone", 410, "guide", id="rewrite-with-410"),
    ],
)
def test_netlify_redirects(netlify: Edge, path: str, status: int, expected: str) -> None:
    response = get(netlify, "nl", path)
    assert response.status_code == status
    if 300 <= status < 400:
        assert response.headers["location"] == expected
    else:
        assert response.text == expected


def test_netlify_proxy_rule_reaches_the_origin(netlify: Edge) -> None:
    response = netlify.client().get(
        "/api/echo?x=1",
        headers={
            "Host": f"nl.s.localhost:{netlify.port}",
            "Authorization": "Bearer preview-secret",
            "Cookie": "edge_preview=preview-secret; theme=dark",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["raw_path"] == "/echo"
    assert body["query"] == "x=1"
    # What authenticates the visitor to the gateway never goes to a third party.
    assert "authorization" not in body["headers"]
    assert body["headers"]["cookie"] == ["theme=dark"]


def test_demo_site_rules_files_are_valid() -> None:
    demo = ROOT / "sites" / "demo"
    assert RedirectRules.parse((demo / "_redirects").read_text(), "cloudflare")[1] == []
    assert HeaderRules.parse((demo / "_headers").read_text())[1] == []
