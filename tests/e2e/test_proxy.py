"""End to end: `edgeproxy serve` forwarding to real origins on loopback."""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import Edge, Origin

pytestmark = pytest.mark.e2e


def rules_for(origin: Origin, extra_route: str = "", origin_extra: str = "") -> str:
    return f"""
origins:
  app:
    targets: ["{origin.url}"]
{origin_extra}
routes:
  - name: api
    match: {{path: /api}}
    proxy: app
    rewrite: {{strip_prefix: true}}
  - name: plain
    match: {{path: /plain}}
    proxy: app
  - name: kept-host
    match: {{path: /kept}}
    proxy: app
    preserve_host: true
    headers:
      request: {{set: {{X-Team: edge}}, remove: [X-Drop-Me]}}
      response: {{set: {{X-Frame-Options: DENY}}, remove: [X-Origin]}}
{extra_route}
"""


class _Replay:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, *args: object, **kwargs: object) -> io.BytesIO:
        return io.BytesIO(self.data)


def parse_response(raw: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
    response = http.client.HTTPResponse(_Replay(raw))  # type: ignore[arg-type]
    response.begin()
    return response.status, response.headers, response.read()


def raw_request(edge: Edge, request: bytes, read_timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", edge.port), timeout=read_timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture
def edge(origin: Origin, edge_factory: Callable[..., Edge]) -> Edge:
    return edge_factory(rules_for(origin))


@pytest.mark.parametrize(
    ("request_path", "origin_path"),
    [
        pytest.param("/api", "/", id="bare-prefix-becomes-root"),
        pytest.param("/api/", "/", id="prefix-slash-becomes-root"),
        pytest.param("/api/users/", "/users/", id="strip-prefix-keeps-trailing-slash"),
        pytest.param("/api/a%20b/%41%2e", "/a%20b/%41%2e", id="strip-prefix-keeps-encoding"),
        pytest.param("/api/x//y", "/x//y", id="double-slash-preserved"),
        pytest.param("/api/q?b=2&a=1&a=%20", "/q?b=2&a=1&a=%20", id="query-string-byte-for-byte"),
        pytest.param("/plain/Ab%7e/", "/plain/Ab%7e/", id="no-rewrite-forwards-raw-path"),
        pytest.param("/api/a/./b/../c", "/a/./b/../c", id="dots-inside-prefix-forwarded-raw"),
    ],
)
def test_origin_receives_raw_path_with_only_the_rewrite(
    edge: Edge, request_path: str, origin_path: str
) -> None:
    # httpx would normalise the URL; send the exact bytes over a socket instead.
    response = raw_request(
        edge,
        f"GET {request_path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n".encode(),
    )
    status, _, raw_body = parse_response(response)
    assert status == 200, response[:300]
    body = json.loads(raw_body)
    path, _, query = origin_path.partition("?")
    assert body["raw_path"] == path
    assert body["query"] == query


def test_prefix_matches_whole_segments_only(edge: Edge) -> None:
    response = edge.client().get("/apix")
    assert response.status_code == 404
    assert response.headers["x-edge-error"] == "no-route"


def test_forwarded_headers_are_set_and_client_spoofing_is_dropped(
    edge: Edge, origin: Origin
) -> None:
    response = edge.client().get(
        "/api/echo",
        headers={
            "Host": "shop.example.test",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.test",
            "X-Forwarded-Proto": "https",
        },
    )
    seen = response.json()["headers"]
    # The peer (127.0.0.1) is not a trusted proxy, so its X-Forwarded-* claims are discarded.
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-host"] == ["shop.example.test"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-prefix"] == ["/api"]
    assert seen["host"] == [f"127.0.0.1:{origin.port}"]
    assert seen["via"] == ["1.1 edgeproxy"]
    assert response.headers["via"] == "1.1 edgeproxy"


def test_trusted_proxy_chain_is_appended(origin: Origin, edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory("server:\n  trusted_proxies: [127.0.0.0/8]\n" + rules_for(origin))
    seen = (
        edge.client()
        .get("/api/echo", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
        .json()["headers"]
    )
    assert seen["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["https"]
    line = edge.access_log()[-1]
    assert line["client"] == "203.0.113.9"


def test_preserve_host_and_header_rules(edge: Edge) -> None:
    response = edge.client().get("/kept/echo", headers={"Host": "public.test", "X-Drop-Me": "1"})
    seen = response.json()["headers"]
    assert seen["host"] == ["public.test"]
    assert seen["x-team"] == ["edge"]
    assert "x-drop-me" not in seen
    assert response.headers["x-frame-options"] == "DENY"
    assert "x-origin" not in response.headers


def test_hop_by_hop_headers_removed_both_ways(edge: Edge) -> None:
    response = edge.client().get(
        "/api/echo",
        headers={
            "Connection": "keep-alive, X-Private",
            "X-Private": "secret",
            "Keep-Alive": "timeout=9",
            "TE": "trailers",
        },
    )
    seen = response.json()["headers"]
    for name in ("connection", "x-private", "keep-alive", "te"):
        assert name not in seen, name
    response = edge.client().get("/api/hop")
    assert response.headers["x-kept"] == "yes"
    assert "x-secret-hop" not in response.headers
    assert "keep-alive" not in response.headers


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        pytest.param(
            "{origin}/login?next=1",
            "http://public.test/api/login?next=1",
            id="absolute-origin-url-mapped-back",
        ),
        pytest.param("/login", "/api/login", id="origin-relative-path-gets-prefix"),
        pytest.param(
            "https://elsewhere.test/x", "https://elsewhere.test/x", id="foreign-url-untouched"
        ),
    ],
)
def test_location_rewritten_through_public_prefix(
    edge: Edge, origin: Origin, location: str, expected: str
) -> None:
    target = location.format(origin=origin.url)
    response = edge.client().get(
        "/api/redirect", params={"to": target}, headers={"Host": "public.test"}
    )
    assert response.status_code == 302
    assert response.headers["location"] == expected
    assert response.headers["content-location"] == expected


def test_large_download_streams_in_bounded_memory(edge: Edge) -> None:
    size = 1024 * 1024 * 1024
    received = 0
    with edge.client().stream("GET", "/api/download", params={"size": size}) as response:
        assert response.headers["content-length"] == str(size)
        for chunk in response.iter_raw():
            received += len(chunk)
    assert received == size
    assert rss_mib(edge) < 200, "the proxy buffered the body"


def test_large_upload_streams_in_bounded_memory(
    edge: Edge, origin: Origin, edge_factory: Callable[..., Edge]
) -> None:
    edge = edge_factory("server:\n  max_body_size: 2GiB\n" + rules_for(origin))
    size = 1024 * 1024 * 1024
    block = b"y" * (1024 * 1024)

    def body() -> object:
        for _ in range(size // len(block)):
            yield block

    response = edge.client().post("/api/upload", content=body())
    assert response.status_code == 200
    assert response.json()["body_size"] == size
    assert rss_mib(edge) < 200, "the proxy buffered the body"


def rss_mib(edge: Edge) -> float:
    with open(f"/proc/{edge.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_server_sent_events_arrive_one_by_one(edge: Edge, origin: Origin) -> None:
    with edge.client().stream("GET", "/api/sse", params={"n": 3, "key": "t1"}) as response:
        lines = response.iter_lines()
        seen = []
        for index in range(3):
            # Event N+1 is only written after we release it, so receiving event N here proves
            # the proxy passed it on without waiting for more of the body.
            line = next(lines)
            while not line.startswith("data:"):
                line = next(lines)
            seen.append(line)
            if index < 2:
                httpx.get(f"{origin.url}/release", params={"key": "t1"})
    assert seen == ["data: event 0", "data: event 1", "data: event 2"]


def test_upstream_stream_closed_when_client_leaves(edge: Edge, origin: Origin) -> None:
    with edge.client().stream("GET", "/api/forever") as response:
        next(response.iter_lines())
        assert httpx.get(f"{origin.url}/_count").json()["open_streams"] == 1
    for _ in range(100):
        if httpx.get(f"{origin.url}/_count").json()["open_streams"] == 0:
            break
        time.sleep(0.05)
    assert httpx.get(f"{origin.url}/_count").json()["open_streams"] == 0


def test_upstream_request_closed_when_client_leaves_before_the_response(
    edge: Edge, origin: Origin
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        edge.client(timeout=0.5).get("/api/slow", params={"delay": 30})
    for _ in range(100):
        if httpx.get(f"{origin.url}/_count").json()["open_streams"] == 0:
            break
        time.sleep(0.05)
    assert httpx.get(f"{origin.url}/_count").json()["open_streams"] == 0
    line = edge.access_log()[-1]
    assert line["status"] == 499


def test_pipelined_requests_are_answered_in_order(edge: Edge) -> None:
    # Responses are written at the end of each loop iteration (edgeproxy/writes.py); the
    # responses to requests sent back to back on one connection must still come in order.
    names = ["0", "1", "2", "3", "4", "last"]
    requests = b"".join(
        f"GET /api/echo?n={name} HTTP/1.1\r\nHost: a.test\r\n".encode()
        + (b"Connection: close\r\n" if name == "last" else b"")
        + b"\r\n"
        for name in names
    )
    raw = raw_request(edge, requests)
    assert raw.count(b"HTTP/1.1 200 ") == len(names)
    assert re.findall(rb'"query":\s*"n=(\w+)"', raw) == [name.encode() for name in names]
