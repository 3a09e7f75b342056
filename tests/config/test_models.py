from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from edgeproxy.config.models import Match, Origin, Redirect, Route, ServerConfig


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        pytest.param("127.0.0.1:8080", "127.0.0.1", 8080, id="ipv4"),
        pytest.param("[::1]:9000", "::1", 9000, id="ipv6-brackets-stripped"),
        pytest.param("edge.internal:80", "edge.internal", 80, id="name"),
    ],
)
def test_listen_splits_into_host_and_port(listen: str, host: str, port: int) -> None:
    server = ServerConfig(listen=listen)

    assert (server.host, server.port) == (host, port)


@pytest.mark.parametrize(
    "listen",
    [
        pytest.param("8080", id="no-host"),
        pytest.param("localhost:", id="no-port"),
        pytest.param("localhost:http", id="named-port"),
        pytest.param("localhost:65536", id="port-too-big"),
        pytest.param("localhost:0", id="port-zero"),
    ],
)
def test_listen_needs_host_and_port(listen: str) -> None:
    with pytest.raises(ValidationError, match="expected HOST:PORT"):
        ServerConfig(listen=listen)


def test_trusted_proxies_take_ipv4_and_ipv6_networks() -> None:
    server = ServerConfig.model_validate({"trusted_proxies": ["10.0.0.0/8", "fd00::/8"]})

    assert [net.version for net in server.trusted_proxies] == [4, 6]


def test_one_target_may_be_written_without_a_list() -> None:
    assert Origin.model_validate({"targets": "http://127.0.0.1:9000"}).targets == [
        "http://127.0.0.1:9000"
    ]


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("127.0.0.1:9000", id="no-scheme"),
        pytest.param("http://user:pw@127.0.0.1:9000", id="credentials"),
        pytest.param("http://127.0.0.1:9000/?q=1", id="query"),
        pytest.param("ws://127.0.0.1:9000", id="other-scheme"),
    ],
)
def test_targets_are_base_urls(target: str) -> None:
    with pytest.raises(ValidationError, match="expected a base URL"):
        Origin.model_validate({"targets": [target]})


def test_hosts_are_lowercased_and_one_may_be_written_without_a_list() -> None:
    assert Match.model_validate({"host": "API.Example.com"}).host == ["api.example.com"]
    assert Match.model_validate({"host": ["*.Example.org"]}).host == ["*.example.org"]


@pytest.mark.parametrize(
    "route",
    [
        pytest.param({}, id="none"),
        pytest.param({"proxy": "a", "respond": {}}, id="two"),
    ],
)
def test_route_needs_exactly_one_action(route: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one action"):
        Route.model_validate(route)


def test_redirect_status_accepts_digits_from_the_environment() -> None:
    assert Redirect.model_validate({"to": "/", "status": "308"}).status == 308
    with pytest.raises(ValidationError, match="301, 302, 303, 307 or 308"):
        Redirect.model_validate({"to": "/", "status": "200"})
