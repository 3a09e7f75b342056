"""StaticFiles over real deployment trees, driven through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest

from edgeproxy.exceptions import ConfigError
from edgeproxy.sites.static import MEMORY_FILE_LIMIT, ExtraHeaders, StaticFiles
from edgeproxy.types import Receive, Scope, Send

APP_JS = b"console.log('app');\n" * 20
ROBOTS = b"User-agent: *\n"
BIG = bytes(range(256)) * 4608  # 1.125 MiB: over the in-memory limit, streamed in 64 KiB chunks
MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z

SITE = {
    "index.html": b"<h1>home</h1>",
    "404.html": b"<h1>root 404</h1>",
    "about.html": b"<h1>about</h1>",
    "docs/index.html": b"<h1>docs</h1>",
    "both.html": b"<h1>both.html</h1>",
    "both/index.html": b"<h1>both/index.html</h1>",
    "blog/404.html": b"<h1>blog 404</h1>",
    "blog/post.html": b"<h1>post</h1>",
    "plain": b"a file named plain",
    "plain.html": b"<h1>plain.html</h1>",
    "caf\u00e9.html": b"<h1>cafe</h1>",
    "robots.txt": ROBOTS,
    "assets/app.js": APP_JS,
    "assets/app.js.br": b"BROTLI-BYTES",
    "assets/app.js.gz": gzip.compress(APP_JS, mtime=0),
    "assets/big.bin": BIG,
    "_redirects": b"/a /b 301\n",
    "_headers": b"/*\n  X-Secret: 1\n",
    "_routes.json": b"{}",
    "_worker.js": b"secret worker",
    "functions/api.js": b"secret function",
    "node_modules/lib/index.js": b"dependency",
    ".git/config": b"[core]",
    "docs/.DS_Store": b"finder",
}


def http_date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


def build(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.utime(path, (MTIME, MTIME))
    return root


@pytest.fixture
def site(tmp_path: Path) -> StaticFiles:
    return StaticFiles(build(tmp_path / "site", SITE))


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes
    returned: int  # what serve() returned


def fetch(
    static: StaticFiles,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    query: str = "",
    extra: ExtraHeaders | None = None,
    status: int | None = None,
) -> Reply:
    """One request; `path` goes to serve() as given, the way the gateway hands it over.

    httpx would normalise `..` and re-encode the path before it reached us, so the URL only
    carries the query string. Header values are sent as Latin-1, as a client may.
    """
    returned: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        returned.append(await static.serve(scope, receive, send, path, extra, status=status))

    raw = {name.encode(): value.encode("latin-1") for name, value in (headers or {}).items()}

    async def run() -> Reply:
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://site.test") as client,
            client.stream(method, f"/?{query}" if query else "/", headers=raw) as response,
        ):
            # Raw bytes: the test checks what was sent, not what httpx would decode.
            body = b"".join([chunk async for chunk in response.aiter_raw()])
        return Reply(response.status_code, response.headers, body, returned[0])

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("path", "status", "expected"),
    [
        pytest.param("/", 200, b"<h1>home</h1>", id="root-serves-index"),
        pytest.param("/index.html", 308, "/", id="root-index-html-redirects"),
        pytest.param("/index", 308, "/", id="root-index-redirects"),
        pytest.param("/about", 200, b"<h1>about</h1>", id="clean-url-serves-html"),
        pytest.param("/about.html", 308, "/about", id="html-extension-redirects"),
        pytest.param("/about/", 308, "/about", id="slash-on-file-redirects"),
        pytest.param("/docs", 308, "/docs/", id="directory-gets-slash"),
        pytest.param("/docs/", 200, b"<h1>docs</h1>", id="directory-serves-index"),
        pytest.param("/docs/index.html", 308, "/docs/", id="directory-index-html-redirects"),
        pytest.param("/docs/index", 308, "/docs/", id="directory-index-redirects"),
        pytest.param("/docs/index/", 308, "/docs/", id="directory-index-slash-redirects"),
        pytest.param("/both", 200, b"<h1>both.html</h1>", id="ambiguous-no-slash-is-file"),
        pytest.param("/both/", 200, b"<h1>both/index.html</h1>", id="ambiguous-slash-is-dir"),
        pytest.param("/both.html", 308, "/both", id="ambiguous-html-redirects"),
        pytest.param("/both/index.html", 308, "/both/", id="ambiguous-index-redirects"),
        pytest.param("/plain", 200, b"a file named plain", id="exact-name-wins"),
        pytest.param("/plain.html", 200, b"<h1>plain.html</h1>", id="html-kept-when-stem-exists"),
        pytest.param("/robots.txt", 200, ROBOTS, id="non-html-file"),
        pytest.param("/robots", 404, b"<h1>root 404</h1>", id="no-clean-url-for-non-html"),
        pytest.param("/blog/post", 200, b"<h1>post</h1>", id="nested-clean-url"),
        pytest.param("/caf\u00e9", 200, b"<h1>cafe</h1>", id="decoded-unicode-path"),
        pytest.param("/caf\u00e9.html", 308, "/caf%C3%A9", id="redirect-location-is-encoded"),
    ],
)
def test_route_matching(site: StaticFiles, path: str, status: int, expected: bytes | str) -> None:
    reply = fetch(site, path)
    assert (reply.status, reply.returned) == (status, status)
    if isinstance(expected, str):
        assert reply.headers["location"] == expected
        assert reply.body == b""
    else:
        assert reply.body == expected


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/missing", b"<h1>root 404</h1>", id="root-404"),
        pytest.param("/blog/missing", b"<h1>blog 404</h1>", id="nearest-404"),
        pytest.param("/blog/deep/er/missing", b"<h1>blog 404</h1>", id="walks-up-to-404"),
        pytest.param("/blog/", b"<h1>blog 404</h1>", id="directory-without-index"),
        pytest.param("/docs/missing.css", b"<h1>root 404</h1>", id="skips-dirs-without-404"),
    ],
)
def test_not_found_serves_the_nearest_404_page(site: StaticFiles, path: str, body: bytes) -> None:
    reply = fetch(site, path)
    assert (reply.status, reply.body) == (404, body)
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    # Pages sends its 404 pages without validators or Cache-Control.
    assert "cache-control" not in reply.headers
    assert "etag" not in reply.headers


def test_redirect_keeps_the_query_string(site: StaticFiles) -> None:
    reply = fetch(site, "/about.html", query="a=1&b=%2F")
    assert (reply.status, reply.headers["location"]) == (308, "/about?a=1&b=%2F")


@pytest.mark.parametrize(
    ("files", "path", "status", "body"),
    [
        pytest.param(
            {"index.html": b"app"}, "/any/route", 200, b"app", id="no-404-page-serves-the-app"
        ),
        pytest.param(
            {"index.html": b"app", "blog/404.html": b"blog 404"},
            "/other",
            200,
            b"app",
            id="nested-404-does-not-cover-other-paths",
        ),
        pytest.param(
            {"index.html": b"app", "blog/404.html": b"blog 404"},
            "/blog/x",
            404,
            b"blog 404",
            id="nested-404-covers-its-subtree",
        ),
        pytest.param({"a.txt": b"a"}, "/missing", 404, b"", id="no-404-no-index-plain-404"),
        pytest.param({"index.html": b"app"}, "/../etc/passwd", 404, b"", id="escape-is-never-app"),
    ],
)
def test_single_page_app_fallback(
    tmp_path: Path, files: dict[str, bytes], path: str, status: int, body: bytes
) -> None:
    reply = fetch(StaticFiles(build(tmp_path, files)), path)
    assert (reply.status, reply.body) == (status, body)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/../outside/secret.txt", id="dotdot-escape"),
        pytest.param("/assets/../../outside/secret.txt", id="dotdot-deep-escape"),
        pytest.param("/..", id="dotdot-alone"),
        pytest.param("/./robots.txt", id="dot-segment"),
        pytest.param("//robots.txt", id="empty-segment"),
        pytest.param("robots.txt", id="relative-path"),
        pytest.param("OUTSIDE/secret.txt", id="absolute-host-path"),
        pytest.param("/robots.txt\x00.html", id="nul-byte"),
        pytest.param("/assets\\app.js", id="backslash"),
        pytest.param("/back\\slash.txt", id="backslash-filename"),
        pytest.param("/link-out.txt", id="symlink-outside-root"),
        pytest.param("/linked-dir/secret.txt", id="symlinked-dir-outside-root"),
        pytest.param("/link-in.txt", id="symlink-inside-root"),
        pytest.param("/_redirects", id="redirects-file-not-served"),
        pytest.param("/_headers", id="headers-file-not-served"),
        pytest.param("/_routes.json", id="routes-file-not-served"),
        pytest.param("/_worker.js", id="worker-not-served"),
        pytest.param("/functions/api.js", id="functions-not-served"),
        pytest.param("/functions/api", id="functions-not-served-clean"),
        pytest.param("/node_modules/lib/index.js", id="node-modules-not-served"),
        pytest.param("/.git/config", id="git-not-served"),
        pytest.param("/docs/.DS_Store", id="ds-store-not-served"),
    ],
)
def test_nothing_outside_the_deployment_is_served(tmp_path: Path, path: str) -> None:
    outside = build(tmp_path / "outside", {"secret.txt": b"SECRET"})
    root = build(tmp_path / "site", SITE)
    (root / "link-out.txt").symlink_to(outside / "secret.txt")
    (root / "linked-dir").symlink_to(outside)
    (root / "link-in.txt").symlink_to(root / "robots.txt")
    (root / "back\\slash.txt").write_bytes(b"SECRET")
    static = StaticFiles(root)
    path = path.replace("OUTSIDE", str(outside))
    reply = fetch(static, path)
    assert (reply.status, reply.body) == (404, b"<h1>root 404</h1>")
    assert not static.exists(path)


def test_a_root_reached_through_a_symlink_is_served(tmp_path: Path) -> None:
    build(tmp_path / "release-1", {"index.html": b"v1"})
    (tmp_path / "current").symlink_to(tmp_path / "release-1")
    assert fetch(StaticFiles(tmp_path / "current"), "/").body == b"v1"


@pytest.mark.parametrize(
    ("path", "kind", "status", "file", "location"),
    [
        pytest.param("/about", "file", 200, "/about.html", "", id="file"),
        pytest.param("/about.html", "redirect", 308, None, "/about", id="redirect"),
        pytest.param("/blog/nope", "not_found", 404, "/blog/404.html", "", id="not-found"),
        pytest.param("/a/../b", "not_found", 404, "/404.html", "", id="refused"),
    ],
)
def test_resolve(
    site: StaticFiles, path: str, kind: str, status: int, file: str | None, location: str
) -> None:
    resolution = site.resolve(path)
    assert (resolution.kind, resolution.status, resolution.location) == (kind, status, location)
    assert (resolution.file.path if resolution.file else None) == file


def test_resolve_spa_and_exists(tmp_path: Path) -> None:
    static = StaticFiles(build(tmp_path, {"index.html": b"app", "about.html": b"about"}))
    resolution = static.resolve("/deep/link")
    assert (resolution.kind, resolution.status) == ("spa", 200)
    assert resolution.file is not None
    assert resolution.file.path == "/index.html"
    assert static.exists("/about")
    assert not static.exists("/about.html")  # a redirect, not a file
    assert not static.exists("/deep/link")  # the app answers, but no file is there


def test_index_records_etag_from_content_hash(site: StaticFiles) -> None:
    file = site.resolve("/robots.txt").file
    assert file is not None
    digest = hashlib.sha256(ROBOTS).hexdigest()[:16]
    assert file.identity.etag == f'"{digest}"'
    assert file.identity.size == len(ROBOTS)
    assert file.identity.mtime == MTIME
    assert file.content_type == "text/plain; charset=utf-8"
    assert not file.encoded


def test_full_response_headers(site: StaticFiles) -> None:
    reply = fetch(site, "/robots.txt")
    file = site.resolve("/robots.txt").file
    assert file is not None
    assert reply.headers["etag"] == file.identity.etag
    assert reply.headers["last-modified"] == http_date(MTIME)
    assert reply.headers["content-length"] == str(len(reply.body))
    assert reply.headers["accept-ranges"] == "bytes"
    assert reply.headers["cache-control"] == "public, max-age=0, must-revalidate"
    assert reply.headers["access-control-allow-origin"] == "*"
    assert reply.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert "date" in reply.headers
    assert "vary" not in reply.headers


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        pytest.param("a.html", "text/html; charset=utf-8", id="html"),
        pytest.param("a.css", "text/css; charset=utf-8", id="css"),
        pytest.param("a.js", "text/javascript; charset=utf-8", id="javascript"),
        pytest.param("a.mjs", "text/javascript; charset=utf-8", id="module"),
        pytest.param("a.json", "application/json", id="json"),
        pytest.param("a.svg", "image/svg+xml", id="svg"),
        pytest.param("a.png", "image/png", id="png"),
        pytest.param("a.webp", "image/webp", id="webp"),
        pytest.param("a.woff2", "font/woff2", id="woff2"),
        pytest.param("a.wasm", "application/wasm", id="wasm"),
        pytest.param("a.tar.gz", "application/gzip", id="gzip-archive-itself"),
        pytest.param("a.js.br", "application/octet-stream", id="brotli-sibling-itself"),
        pytest.param("a.unknown", "application/octet-stream", id="unknown"),
        pytest.param("LICENSE", "application/octet-stream", id="no-extension"),
    ],
)
def test_content_type(tmp_path: Path, name: str, content_type: str) -> None:
    static = StaticFiles(build(tmp_path, {name: b"x"}))
    file = static.resolve(f"/{name.removesuffix('.html')}").file
    assert file is not None
    assert file.content_type == content_type


@pytest.mark.parametrize(
    ("path", "patterns", "headers", "cache_control"),
    [
        pytest.param("/about", ("/assets/*",), {}, "public, max-age=0, must-revalidate", id="html"),
        pytest.param(
            "/assets/big.bin",
            ("/assets/*",),
            {},
            "public, max-age=31536000, immutable",
            id="immutable-default-pattern",
        ),
        pytest.param(
            "/robots.txt",
            ("/*.txt",),
            {},
            "public, max-age=31536000, immutable",
            id="custom-pattern",
        ),
        pytest.param(
            "/blog/post",
            ("/b*t.html",),
            {},
            "public, max-age=31536000, immutable",
            id="star-spans-slashes",
        ),
        pytest.param(
            "/assets/big.bin",
            (),
            {},
            "public, max-age=0, must-revalidate",
            id="no-patterns",
        ),
        pytest.param(
            "/assets/app.js",
            ("/assets/*",),
            {"accept-encoding": "gzip"},
            "public, max-age=31536000, immutable, no-transform",
            id="precompressed-no-transform",
        ),
        pytest.param(
            "/about", ("/assets/*",), {"authorization": "Basic eDp5"}, None, id="authorization"
        ),
        pytest.param("/missing", ("/assets/*",), {}, None, id="not-found-page"),
    ],
)
def test_cache_control(
    tmp_path: Path,
    path: str,
    patterns: tuple[str, ...],
    headers: dict[str, str],
    cache_control: str | None,
) -> None:
    static = StaticFiles(build(tmp_path, SITE), immutable_paths=patterns)
    assert fetch(static, path, headers=headers).headers.get("cache-control") == cache_control


def test_immutable_patterns_must_be_absolute(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"immutable_paths\[1\]: pattern 'assets/\*'"):
        StaticFiles(tmp_path, immutable_paths=("/ok/*", "assets/*"))


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"if-none-match": "ETAG"}, 304, id="etag-matches"),
        pytest.param({"if-none-match": "W/ETAG"}, 304, id="weak-etag-matches"),
        pytest.param({"if-none-match": '"nope", ETAG'}, 304, id="etag-list"),
        pytest.param({"if-none-match": "*"}, 304, id="star"),
        pytest.param({"if-none-match": '"nope"'}, 200, id="etag-differs"),
        pytest.param({"if-modified-since": http_date(MTIME)}, 304, id="ims-equal"),
        pytest.param({"if-modified-since": http_date(MTIME + 60)}, 304, id="ims-later"),
        pytest.param({"if-modified-since": http_date(MTIME - 1)}, 200, id="ims-earlier"),
        pytest.param({"if-modified-since": "yesterday"}, 200, id="ims-invalid"),
        pytest.param(
            {"if-none-match": '"nope"', "if-modified-since": http_date(MTIME)},
            200,
            id="if-none-match-overrides-ims",
        ),
    ],
)
def test_conditional_get(site: StaticFiles, headers: dict[str, str], status: int) -> None:
    file = site.resolve("/about").file
    assert file is not None
    headers = {name: value.replace("ETAG", file.identity.etag) for name, value in headers.items()}
    reply = fetch(site, "/about", headers=headers)
    assert reply.status == status
    if status == 304:
        assert reply.body == b""
        assert reply.headers["etag"] == file.identity.etag
        assert reply.headers["last-modified"] == http_date(MTIME)
        assert reply.headers["cache-control"] == "public, max-age=0, must-revalidate"
        assert "content-length" not in reply.headers


def test_last_modified_is_never_in_the_future(tmp_path: Path) -> None:
    root = build(tmp_path, {"a.txt": b"a"})
    future = time.time() + 86_400
    os.utime(root / "a.txt", (future, future))
    file = StaticFiles(root).resolve("/a.txt").file
    assert file is not None
    assert file.identity.mtime <= time.time()


@pytest.mark.parametrize(
    ("range_header", "status", "content_range", "expected"),
    [
        pytest.param("bytes=0-3", 206, "bytes 0-3/14", b"User", id="first-bytes"),
        pytest.param("bytes=5-", 206, "bytes 5-13/14", b"agent: *\n", id="open-end"),
        pytest.param("bytes=-2", 206, "bytes 12-13/14", b"*\n", id="suffix"),
        pytest.param("bytes=-99", 206, "bytes 0-13/14", ROBOTS, id="suffix-longer-than-file"),
        pytest.param("bytes=10-99", 206, "bytes 10-13/14", b": *\n", id="end-clamped"),
        pytest.param("Bytes = 0-0", 206, "bytes 0-0/14", b"U", id="unit-case-and-spaces"),
        pytest.param("bytes=14-", 416, "bytes */14", b"", id="start-past-end"),
        pytest.param("bytes=-0", 416, "bytes */14", b"", id="empty-suffix"),
        pytest.param("bytes=0-1,4-5", 200, None, ROBOTS, id="multiple-ranges-get-everything"),
        pytest.param("bytes=5-2", 200, None, ROBOTS, id="reversed-ignored"),
        pytest.param("bytes=abc", 200, None, ROBOTS, id="garbage-ignored"),
        pytest.param("bytes=\u00b2-", 200, None, ROBOTS, id="non-ascii-digit-ignored"),
        pytest.param("lines=0-1", 200, None, ROBOTS, id="other-unit-ignored"),
    ],
)
def test_range(
    site: StaticFiles, range_header: str, status: int, content_range: str | None, expected: bytes
) -> None:
    reply = fetch(site, "/robots.txt", headers={"range": range_header})
    assert (reply.status, reply.body) == (status, expected)
    assert reply.headers.get("content-range") == content_range
    assert reply.headers["content-length"] == str(len(expected))
    # Pages drops Cache-Control when the request carries a Range.
    assert "cache-control" not in reply.headers


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(65530, 131080, id="across-chunks"),
        pytest.param(1, len(BIG) - 1, id="to-the-end"),
    ],
)
def test_range_streamed_from_disk(site: StaticFiles, start: int, end: int) -> None:
    reply = fetch(site, "/assets/big.bin", headers={"range": f"bytes={start}-{end}"})
    assert (reply.status, reply.body) == (206, BIG[start : end + 1])
    assert reply.headers["content-range"] == f"bytes {start}-{end}/{len(BIG)}"


def test_range_on_empty_file_sends_it_whole(tmp_path: Path) -> None:
    static = StaticFiles(build(tmp_path, {"empty.txt": b""}))
    reply = fetch(static, "/empty.txt", headers={"range": "bytes=-5"})
    assert (reply.status, reply.body) == (200, b"")


@pytest.mark.parametrize(
    ("if_range", "status"),
    [
        pytest.param("ETAG", 206, id="etag-matches"),
        pytest.param('"other"', 200, id="etag-differs"),
        pytest.param("W/ETAG", 200, id="weak-etag-never-matches"),
        pytest.param(http_date(MTIME), 206, id="date-matches"),
        pytest.param(http_date(MTIME + 1), 200, id="date-differs"),
    ],
)
def test_if_range(site: StaticFiles, if_range: str, status: int) -> None:
    file = site.resolve("/robots.txt").file
    assert file is not None
    headers = {"range": "bytes=0-3", "if-range": if_range.replace("ETAG", file.identity.etag)}
    assert fetch(site, "/robots.txt", headers=headers).status == status


@pytest.mark.parametrize(
    ("accept_encoding", "encoding"),
    [
        pytest.param("br, gzip", "br", id="br-preferred"),
        pytest.param("gzip, deflate", "gzip", id="gzip"),
        pytest.param("x-gzip", "gzip", id="x-gzip-alias"),
        pytest.param("br;q=0, gzip", "gzip", id="br-refused"),
        pytest.param("gzip;q=1, br;q=0.5", "gzip", id="higher-q-wins"),
        pytest.param("*", "br", id="wildcard"),
        pytest.param("*;q=0", None, id="wildcard-refused"),
        pytest.param("gzip;q=0, br;q=0", None, id="all-refused"),
        pytest.param("br;q=oops", None, id="bad-q-refuses"),
        pytest.param("identity", None, id="identity"),
        pytest.param("", None, id="empty"),
    ],
)
def test_precompressed_siblings(
    site: StaticFiles, accept_encoding: str, encoding: str | None
) -> None:
    reply = fetch(site, "/assets/app.js", headers={"accept-encoding": accept_encoding})
    suffix = {"br": ".br", "gzip": ".gz", None: ""}[encoding]
    assert reply.status == 200
    assert reply.body == SITE[f"assets/app.js{suffix}"]
    assert reply.headers.get("content-encoding") == encoding
    assert reply.headers["content-type"] == "text/javascript; charset=utf-8"
    assert reply.headers["vary"] == "accept-encoding"
    assert reply.headers["content-length"] == str(len(reply.body))
    digest = hashlib.sha256(reply.body).hexdigest()[:16]
    assert reply.headers["etag"] == f'"{digest}"'


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"accept-encoding": "br"}, 304, id="br-etag-for-br"),
        pytest.param({"accept-encoding": "gzip"}, 200, id="br-etag-for-gzip"),
        pytest.param({}, 200, id="br-etag-for-identity"),
    ],
)
def test_etag_is_per_encoding(site: StaticFiles, headers: dict[str, str], status: int) -> None:
    file = site.resolve("/assets/app.js").file
    assert file is not None
    br_etag = file.encoded["br"].etag
    assert len({br_etag, file.encoded["gzip"].etag, file.identity.etag}) == 3
    reply = fetch(site, "/assets/app.js", headers={**headers, "if-none-match": br_etag})
    assert reply.status == status
    assert reply.headers["vary"] == "accept-encoding"


def test_range_uses_the_identity_representation(site: StaticFiles) -> None:
    reply = fetch(site, "/assets/app.js", headers={"accept-encoding": "br", "range": "bytes=0-6"})
    assert (reply.status, reply.body) == (206, APP_JS[:7])
    assert "content-encoding" not in reply.headers
    assert reply.headers["vary"] == "accept-encoding"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/about", id="from-memory"),
        pytest.param("/assets/big.bin", id="from-disk"),
        pytest.param("/missing", id="not-found-page"),
        pytest.param("/about.html", id="redirect"),
    ],
)
def test_head_sends_the_get_headers_without_a_body(site: StaticFiles, path: str) -> None:
    get, head = fetch(site, path), fetch(site, path, method="HEAD")
    assert (head.status, head.body) == (get.status, b"")
    del get.headers["date"], head.headers["date"]
    assert head.headers == get.headers


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_not_allowed(site: StaticFiles, method: str) -> None:
    reply = fetch(site, "/about", method=method)
    assert (reply.status, reply.returned, reply.body) == (405, 405, b"")
    assert reply.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        pytest.param("/about", {}, 200, id="ok"),
        pytest.param("/about.html", {}, 308, id="redirect"),
        pytest.param("/missing", {}, 404, id="not-found-page"),
        pytest.param("/about", {"if-none-match": "*"}, 304, id="not-modified"),
        pytest.param("/robots.txt", {"range": "bytes=0-1"}, 206, id="partial"),
    ],
)
def test_extra_headers_reach_every_response(
    site: StaticFiles, path: str, headers: dict[str, str], status: int
) -> None:
    seen: list[int] = []

    def robots(code: int, response_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        seen.append(code)
        return [*response_headers, (b"x-robots-tag", b"noindex")]

    reply = fetch(site, path, headers=headers, extra=robots)
    assert (reply.status, seen) == (status, [status])
    assert reply.headers["x-robots-tag"] == "noindex"


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        pytest.param("/about", 410, b"<h1>about</h1>", id="file-under-rewrite-status"),
        pytest.param("/anything", 451, b"<h1>root 404</h1>", id="404-page-under-rewrite-status"),
        pytest.param("/about.html", 308, b"", id="redirect-keeps-its-status"),
    ],
)
def test_status_override(site: StaticFiles, path: str, status: int, body: bytes) -> None:
    reply = fetch(site, path, status=status, headers={"if-none-match": "*"})
    assert (reply.status, reply.returned, reply.body) == (status, status, body)
    assert "etag" not in reply.headers


def test_small_files_are_served_from_memory(tmp_path: Path) -> None:
    root = build(tmp_path, {"small.txt": b"s" * MEMORY_FILE_LIMIT, "big.bin": BIG})
    static = StaticFiles(root)
    (root / "small.txt").unlink()  # no disk I/O on the hot path: still served
    assert fetch(static, "/small.txt").body == b"s" * MEMORY_FILE_LIMIT
    big = static.resolve("/big.bin").file
    assert big is not None
    assert big.identity.body is None
    assert fetch(static, "/big.bin").body == BIG


def test_a_sibling_is_read_once(site: StaticFiles) -> None:
    app, sibling = site.resolve("/assets/app.js").file, site.resolve("/assets/app.js.br").file
    assert app is not None
    assert sibling is not None
    assert app.encoded["br"].body is sibling.identity.body


def test_memory_limit_bounds_what_is_kept(tmp_path: Path) -> None:
    static = StaticFiles(build(tmp_path, {"a.txt": b"a" * 10, "b.txt": b"b" * 10}), memory_limit=15)
    bodies = [static.resolve(path).file for path in ("/a.txt", "/b.txt")]
    assert [file.identity.body if file else None for file in bodies] == [b"a" * 10, None]
    assert fetch(static, "/b.txt").body == b"b" * 10


def test_a_file_that_vanished_fails_before_headers_are_sent(tmp_path: Path) -> None:
    root = build(tmp_path, {"big.bin": BIG})
    static = StaticFiles(root)
    (root / "big.bin").unlink()
    with pytest.raises(FileNotFoundError):
        fetch(static, "/big.bin")
