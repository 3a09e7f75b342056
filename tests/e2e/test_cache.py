"""End to end: the response cache in front of a real origin that scripts its headers."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ROOT, Edge, Origin

pytestmark = pytest.mark.e2e

TOKEN = "cache-token"


@pytest.fixture
def edge(origin: Origin, edge_factory: Callable[..., Edge]) -> Edge:
    return edge_factory(
        f"""
admin: {{token: {TOKEN}}}
origins:
  app: {{targets: ["{origin.url}"]}}
routes:
  - match: {{path: /}}
    proxy: app
    cache: {{stale_if_error: 60s}}
  - match: {{path: /nocache}}
    proxy: app
"""
    )


def hits(origin: Origin, path: str) -> int:
    return int(httpx.get(f"{origin.url}/_hits", params={"path": path}).json()["hits"])


def fetch(edge: Edge, path: str, *headers: str, **extra: str) -> httpx.Response:
    params = [("h", h) for h in headers] + list(extra.items())
    return edge.client().get(path, params=params)


def test_fresh_response_is_served_from_cache_with_age(edge: Edge, origin: Origin) -> None:
    first = fetch(edge, "/script/a", "Cache-Control: max-age=60")
    assert first.headers["cache-status"].startswith("edgeproxy; fwd=uri-miss")
    assert "stored" in first.headers["cache-status"]
    second = fetch(edge, "/script/a", "Cache-Control: max-age=60")
    assert second.text == first.text
    assert second.headers["cache-status"].startswith("edgeproxy; hit")
    assert int(second.headers["age"]) >= 0
    assert hits(origin, "/script/a") == 1


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Cache-Control: no-store", id="no-store"),
        pytest.param("Cache-Control: private, max-age=60", id="private"),
        pytest.param("Set-Cookie: a=b", id="no-freshness-and-a-cookie"),
        pytest.param("Set-Cookie: session=s1", id="cookie-not-replayed-to-others"),
    ],
)
def test_uncacheable_responses_go_to_the_origin_every_time(
    edge: Edge, origin: Origin, header: str
) -> None:
    path = f"/script/u-{header.split(':')[1].strip().split(',')[0].replace('=', '')}"
    fresh = "Cache-Control: max-age=60" if header.startswith("Set-Cookie: session") else ""
    for _ in range(2):
        fetch(edge, path, header, *([fresh] if fresh else []))
    assert hits(origin, path) == 2


def test_cookie_response_stored_when_origin_says_public(edge: Edge, origin: Origin) -> None:
    for _ in range(2):
        fetch(edge, "/script/pub", "Set-Cookie: theme=dark", "Cache-Control: public, max-age=60")
    assert hits(origin, "/script/pub") == 1


def test_no_cache_revalidates_with_etag(edge: Edge, origin: Origin) -> None:
    headers = ("Cache-Control: no-cache", 'ETag: "v1"')
    first = fetch(edge, "/script/r", *headers)
    second = fetch(edge, "/script/r", *headers)
    assert second.status_code == 200
    assert second.text == first.text  # the origin answered 304; the stored body was served
    assert "revalidated" in second.headers["cache-status"]
    assert hits(origin, "/script/r") == 2


def test_client_conditional_gets_304_from_cache(edge: Edge, origin: Origin) -> None:
    headers = ("Cache-Control: max-age=60", 'ETag: "v2"')
    fetch(edge, "/script/c", *headers)
    params = [("h", h) for h in headers]
    again = edge.client().get("/script/c", params=params, headers={"If-None-Match": '"v2"'})
    assert again.status_code == 304
    assert hits(origin, "/script/c") == 1


def test_vary_keeps_variants_apart(edge: Edge, origin: Origin) -> None:
    headers = [("h", "Cache-Control: max-age=60"), ("h", "Vary: Accept-Language")]
    client = edge.client()
    en = client.get("/script/v", params=headers, headers={"Accept-Language": "en"})
    de = client.get("/script/v", params=headers, headers={"Accept-Language": "de"})
    en_again = client.get("/script/v", params=headers, headers={"Accept-Language": "en"})
    assert en.text != de.text
    assert en_again.text == en.text
    assert hits(origin, "/script/v") == 2


def test_unsafe_method_invalidates(edge: Edge, origin: Origin) -> None:
    fetch(edge, "/script/p", "Cache-Control: max-age=60")
    edge.client().post("/script/p", params=[("h", "Cache-Control: max-age=60")])
    fetch(edge, "/script/p", "Cache-Control: max-age=60")
    assert hits(origin, "/script/p") == 3


def test_stale_if_error_serves_stale_when_origin_is_down(edge: Edge, origin: Origin) -> None:
    first = fetch(edge, "/script/s", "Cache-Control: max-age=1")
    time.sleep(1.5)
    origin.stop()
    stale = fetch(edge, "/script/s", "Cache-Control: max-age=1")
    assert stale.status_code == 200
    assert stale.text == first.text
    assert "fwd=stale" in stale.headers["cache-status"]


def test_concurrent_misses_are_coalesced(edge: Edge, origin: Origin) -> None:
    params = [("h", "Cache-Control: max-age=60"), ("delay", "0.5")]

    def one(_: int) -> str:
        return httpx.get(f"{edge.url}/script/co", params=params, timeout=30).text

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        bodies = list(pool.map(one, range(50)))
    assert len(set(bodies)) == 1
    assert hits(origin, "/script/co") == 1


def test_purge_by_url(edge: Edge, origin: Origin) -> None:
    fetch(edge, "/script/x", "Cache-Control: max-age=60")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{edge.url}/script/x"
    purged = edge.client().post("/_edge/api/cache/purge", json={"prefix": url}, headers=auth)
    assert purged.status_code == 200
    assert purged.json()["purged"] >= 1
    fetch(edge, "/script/x", "Cache-Control: max-age=60")
    assert hits(origin, "/script/x") == 2


def test_uncached_route_has_no_cache_status(edge: Edge) -> None:
    response = edge.client().get("/nocache/script/n")
    assert "cache-status" not in response.headers


def test_cache_metrics(edge: Edge) -> None:
    fetch(edge, "/script/m", "Cache-Control: max-age=60")
    fetch(edge, "/script/m", "Cache-Control: max-age=60")
    metrics = edge.client().get("/_edge/metrics").text
    assert "edgeproxy_cache_hits_total 1.0" in metrics
    assert "edgeproxy_cache_misses_total 1.0" in metrics
    assert "edgeproxy_cache_entries 1.0" in metrics


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        pytest.param(["--tag", "blue"], ["/script/t2"], id="by-tag"),
        pytest.param(["--all"], [], id="everything"),
    ],
)
def test_purge_cli(edge: Edge, origin: Origin, args: list[str], kept: list[str]) -> None:
    fetch(edge, "/script/t1", "Cache-Control: max-age=60", "Cache-Tag: blue, red")
    fetch(edge, "/script/t2", "Cache-Control: max-age=60", "Cache-Tag: green")
    command = [sys.executable, "-m", "edgeproxy", "purge", *args]
    command += ["--server", edge.url, "--token", TOKEN]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "purged" in result.stdout
    for path, tag in (("/script/t1", "Cache-Tag: blue, red"), ("/script/t2", "Cache-Tag: green")):
        fetch(edge, path, "Cache-Control: max-age=60", tag)
        assert hits(origin, path) == (1 if path in kept else 2)


def test_publishing_a_site_purges_its_cached_pages(
    edge_factory: Callable[..., Edge], tmp_path: Path
) -> None:
    def site(version: str) -> Path:
        root = tmp_path / version
        root.mkdir()
        (root / "index.html").write_text(version)
        (root / "_headers").write_text("/*\n  Cache-Control: public, max-age=600\n")
        return root

    edge = edge_factory(
        f"admin: {{token: {TOKEN}}}\n"
        f"sites:\n  s: {{source: {site('v1')}}}\n"
        "routes:\n  - match: {path: /}\n    site: s\n    cache: {}\n"
    )
    client = edge.client()
    assert client.get("/").text == "v1"
    cached = client.get("/")
    assert cached.headers["cache-status"].startswith("edgeproxy; hit")
    command = [sys.executable, "-m", "edgeproxy", "deploy", str(site("v2")), "--site", "s"]
    command += ["--server", edge.url, "--token", TOKEN]
    assert subprocess.run(command, capture_output=True, timeout=60, cwd=ROOT).returncode == 0
    for _ in range(50):
        if client.get("/").text == "v2":
            break
        time.sleep(0.1)
    assert client.get("/").text == "v2"


def test_range_is_answered_from_a_stored_complete_response(edge: Edge, origin: Origin) -> None:
    whole = fetch(edge, "/script/ranged", "Cache-Control: max-age=60", 'ETag: "r1"')
    assert whole.status_code == 200
    client = edge.client()
    params = [("h", "Cache-Control: max-age=60"), ("h", 'ETag: "r1"')]
    part = client.get("/script/ranged", params=params, headers={"Range": "bytes=2-5"})
    assert part.status_code == 206
    assert part.content == whole.content[2:6]
    assert part.headers["content-range"] == f"bytes 2-5/{len(whole.content)}"
    assert part.headers["cache-status"].startswith("edgeproxy; hit")
    stale_if_range = client.get(
        "/script/ranged", params=params, headers={"Range": "bytes=2-5", "If-Range": '"r0"'}
    )
    assert stale_if_range.status_code == 200
    assert stale_if_range.content == whole.content
    assert hits(origin, "/script/ranged") == 1


def test_head_is_answered_from_a_stored_get(edge: Edge, origin: Origin) -> None:
    fetch(edge, "/script/h", "Cache-Control: max-age=60")
    params = [("h", "Cache-Control: max-age=60")]
    head = edge.client().head("/script/h", params=params)
    assert head.status_code == 200
    assert head.headers["cache-status"].startswith("edgeproxy; hit")
    assert hits(origin, "/script/h") == 1


def test_stale_while_revalidate_serves_stale_and_refreshes_once(edge: Edge, origin: Origin) -> None:
    # max-age=2: Date has whole seconds, so a response may arrive up to 1 s old already.
    headers = ("Cache-Control: max-age=2, stale-while-revalidate=60",)
    first = fetch(edge, "/script/w", *headers)
    time.sleep(3)
    stale = [fetch(edge, "/script/w", *headers) for _ in range(3)]
    assert stale[0].text == first.text
    assert "revalidating" in stale[0].headers["cache-status"]
    for _ in range(50):
        if hits(origin, "/script/w") == 2:
            break
        time.sleep(0.1)
    time.sleep(0.3)
    assert hits(origin, "/script/w") == 2  # one background refresh, not one per request
    assert fetch(edge, "/script/w", *headers).text != first.text


def test_large_bodies_stream_through_unstored(
    origin: Origin, edge_factory: Callable[..., Edge]
) -> None:
    edge = edge_factory(
        f"""
origins:
  app: {{targets: ["{origin.url}"]}}
routes:
  - match: {{path: /}}
    proxy: app
    cache: {{max_object_size: 8}}
"""
    )
    for _ in range(2):
        response = fetch(edge, "/script/big", "Cache-Control: max-age=60")
        assert response.status_code == 200
    assert hits(origin, "/script/big") == 2


def test_cdn_cache_control_overrides_cache_control(edge: Edge, origin: Origin) -> None:
    headers = ("Cache-Control: no-store", "CDN-Cache-Control: max-age=60")
    fetch(edge, "/script/cdn", *headers)
    second = fetch(edge, "/script/cdn", *headers)
    assert second.headers["cache-status"].startswith("edgeproxy; hit")
    assert hits(origin, "/script/cdn") == 1
