from __future__ import annotations

from ipaddress import ip_network

import pytest

from edgeproxy.config.models import HeaderOps
from edgeproxy.proxy.headers import (
    HeaderRules,
    TrustedProxies,
    client_response_headers,
    relayed_block,
    upstream_request_headers,
)


def forward(headers: list[tuple[bytes, bytes]], trusted: bool = False) -> dict[bytes, list[bytes]]:
    out = upstream_request_headers(
        headers,
        peer_trusted=trusted,
        peer="10.0.0.5",
        scheme="http",
        host=b"public.test",
        prefix="/api",
        upstream_host=b"origin:9000",
    )
    seen: dict[bytes, list[bytes]] = {}
    for name, value in out:
        seen.setdefault(name, []).append(value)
    return seen


def test_framing_and_hop_by_hop_are_dropped() -> None:
    seen = forward(
        [
            (b"host", b"public.test"),
            (b"content-length", b"5"),
            (b"transfer-encoding", b"chunked"),
            (b"connection", b"close, x-private"),
            (b"x-private", b"1"),
            (b"upgrade", b"h2c"),
            (b"accept", b"*/*"),
        ]
    )
    assert seen[b"host"] == [b"origin:9000"]
    for name in (b"content-length", b"transfer-encoding", b"connection", b"x-private", b"upgrade"):
        assert name not in seen
    assert seen[b"accept"] == [b"*/*"]


@pytest.mark.parametrize(
    ("trusted", "expected_for", "expected_proto"),
    [
        pytest.param(False, [b"10.0.0.5"], [b"http"], id="untrusted-peer-claims-dropped"),
        pytest.param(True, [b"1.2.3.4, 10.0.0.5"], [b"https"], id="trusted-peer-chain-appended"),
    ],
)
def test_forwarded_for(
    trusted: bool, expected_for: list[bytes], expected_proto: list[bytes]
) -> None:
    seen = forward([(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-proto", b"https")], trusted)
    assert seen[b"x-forwarded-for"] == expected_for
    assert seen[b"x-forwarded-proto"] == expected_proto
    assert seen[b"x-forwarded-prefix"] == [b"/api"]
    assert seen[b"via"] == [b"1.1 edgeproxy"]


@pytest.mark.parametrize(
    ("peer", "chain", "client"),
    [
        pytest.param("10.0.0.1", [b"1.1.1.1, 10.0.0.2"], "1.1.1.1", id="rightmost-untrusted-hop"),
        pytest.param("8.8.8.8", [b"1.1.1.1"], "8.8.8.8", id="untrusted-peer-is-the-client"),
        pytest.param(
            "10.0.0.1", [b"6.6.6.6, 2.2.2.2"], "2.2.2.2", id="spoofed-left-entries-ignored"
        ),
        pytest.param("10.0.0.1", [], "10.0.0.1", id="no-header-means-peer"),
    ],
)
def test_client_ip_reads_right_to_left(peer: str, chain: list[bytes], client: str) -> None:
    trusted = TrustedProxies([ip_network("10.0.0.0/8")])
    assert trusted.client_ip(peer, chain) == client


def test_nobody_is_trusted_by_default() -> None:
    assert not TrustedProxies([]).trusts("127.0.0.1")


def test_header_rules_set_add_remove() -> None:
    rules = HeaderRules(HeaderOps(set={"X-A": "1"}, add={"X-B": ["2", "3"]}, remove=["X-C"]))
    out = rules.apply([(b"x-a", b"old"), (b"x-c", b"gone"), (b"x-d", b"kept")])
    assert out == [(b"x-d", b"kept"), (b"x-a", b"1"), (b"x-b", b"2"), (b"x-b", b"3")]


def test_response_headers_drop_hop_by_hop_and_relocate() -> None:
    out = client_response_headers(
        [(b"location", b"/x"), (b"connection", b"x-hop"), (b"x-hop", b"1"), (b"keep-alive", b"1")],
        lambda value: b"/api" + value,
    )
    assert out == [(b"location", b"/api/x"), (b"via", b"1.1 edgeproxy")]


def test_underscore_lookalikes_of_forwarding_headers_are_dropped() -> None:
    seen = forward([(b"x_forwarded_for", b"6.6.6.6"), (b"x_real_ip", b"6.6.6.6"), (b"x_ok", b"1")])
    assert b"x_forwarded_for" not in seen
    assert b"x_real_ip" not in seen
    assert seen[b"x_ok"] == [b"1"]


NGINX_FIELDS = (
    b"Server: nginx\r\nConnection: keep-alive\r\nContent-Length: 2\r\n"
    b'Keep-Alive: timeout=5\r\nETag: "x"\r\n'
)


def parsed(fields: bytes) -> list[tuple[bytes, bytes]]:
    lines = fields.split(b"\r\n")[:-1]
    return [(n.lower(), v.strip()) for n, _, v in (line.partition(b":") for line in lines)]


def test_an_ordinary_header_block_is_relayed_as_it_is() -> None:
    fields = b"Server: nginx\r\nContent-Length: 2\r\nX-Case:  MiXeD\r\n"
    assert relayed_block(parsed(fields), fields) == fields


def test_keep_alive_lines_are_cut_out_of_a_relayed_block() -> None:
    assert relayed_block(parsed(NGINX_FIELDS), NGINX_FIELDS) == (
        b'Server: nginx\r\nContent-Length: 2\r\nETag: "x"\r\n'
    )
    shouting = b"CONNECTION: Close, Keep-Alive\r\nContent-Length: 0\r\n"
    assert relayed_block(parsed(shouting), shouting) == b"Content-Length: 0\r\n"


@pytest.mark.parametrize(
    "fields",
    [
        # A Connection naming another header: that one must go too, field by field.
        b"Connection: x-secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Length: 0\r\nUpgrade: h2c\r\n",
        b"Content-Length: 0\r\nVia: 1.0 other\r\n",
        b"Location: http://origin/x\r\nContent-Length: 0\r\n",
        b"Content-Location: /x\r\nContent-Length: 0\r\n",
        b"Content-Length: 2\r\nContent-Length: 2\r\n",
        b"Server: no-length\r\n",
    ],
)
def test_blocks_needing_rewrites_are_not_relayed_as_they_are(fields: bytes) -> None:
    assert relayed_block(parsed(fields), fields) is None
