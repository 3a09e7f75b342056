"""End to end: requests a proxy must refuse, and how it refuses them."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Edge, Origin
from tests.e2e.test_proxy import parse_response, raw_request, rules_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def edge(origin: Origin, edge_factory: Callable[..., Edge]) -> Edge:
    extra = """
  - name: admin
    match: {path: /admin}
    respond: {status: 200, body: "admin area"}
  - name: small
    match: {path: /small}
    proxy: app
    max_body_size: 1KiB
"""
    return edge_factory(rules_for(origin, extra))


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        pytest.param("http://127.0.0.1:1/api/echo", "absolute-form", id="absolute-form-ssrf"),
        pytest.param("/api/a%2fb", "encoded slash", id="encoded-slash"),
        pytest.param("/api/a%5Cb", "encoded backslash", id="encoded-backslash"),
        pytest.param("/api/a%00b", "encoded NUL", id="encoded-nul"),
        pytest.param("/api/../admin", "only through dot-segments", id="dot-segments-across-prefix"),
        pytest.param(
            "/api/%2e%2e/admin", "only through dot-segments", id="encoded-dots-across-prefix"
        ),
        pytest.param("/../etc/passwd", "climbs above the root", id="dots-above-root"),
    ],
)
def test_confusing_targets_are_refused_with_400(edge: Edge, target: str, reason: str) -> None:
    raw = raw_request(
        edge,
        f"GET {target} HTTP/1.1\r\nHost: x.test\r\nAccept: application/json\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    status, _, body = parse_response(raw)
    assert status == 400, raw[:300]
    assert reason.lower() in body.decode().lower()
    # Nothing reached the origin's admin-looking path through the refused request.
    assert b"admin area" not in body


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"Host: a.test\r\nHost: b.test\r\n", id="two-host-headers"),
        pytest.param(b"", id="no-host-header"),
    ],
)
def test_request_needs_exactly_one_host(edge: Edge, head: bytes) -> None:
    raw = raw_request(edge, b"GET /api/echo HTTP/1.1\r\n" + head + b"Connection: close\r\n\r\n")
    status, _, body = parse_response(raw)
    assert status == 400
    assert b"exactly one Host" in body


def test_content_length_with_chunked_is_refused(edge: Edge) -> None:
    raw = raw_request(
        edge,
        b"POST /api/echo HTTP/1.1\r\nHost: a.test\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    status, _, _ = parse_response(raw)
    assert status == 400
    assert b"admin area" not in raw


def test_declared_body_over_limit_is_413_before_the_origin(edge: Edge) -> None:
    response = edge.client().post("/small/upload", content=b"z" * 2048)
    assert response.status_code == 413
    assert response.headers["x-edge-error"] == "body-too-large"


def test_chunked_body_over_limit_is_413(edge: Edge) -> None:
    def chunks() -> object:
        for _ in range(4):
            yield b"z" * 1024

    response = edge.client().post("/small/upload", content=chunks())
    assert response.status_code == 413


def test_slow_headers_are_cut_off(origin: Origin, edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory("server:\n  timeouts: {header_read: 1s}\n" + rules_for(origin))
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
        sock.sendall(b"GET /api/echo HTTP/1.1\r\nHost: a.test\r\n")
        started = time.monotonic()
        received = b""
        # Dribble one header byte at a time, never finishing the header block.
        while time.monotonic() - started < 8:
            try:
                sock.sendall(b"X")
            except OSError:
                break
            sock.settimeout(0.2)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                break
            received += chunk
    assert received.startswith(b"HTTP/1.1 408")
    assert edge.client().get("/api/echo").status_code == 200


def test_error_pages_never_leak_tracebacks(edge: Edge) -> None:
    response = edge.client().get("/api/a%2fb", headers={"Accept": "application/json"})
    body = response.json()
    assert body["error"] == "bad-request"
    assert "Traceback" not in json.dumps(body)
    assert response.headers["x-request-id"] == body["request_id"]
