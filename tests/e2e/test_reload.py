"""End to end: editing rules.yaml while the server runs."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import Edge, Origin

pytestmark = pytest.mark.e2e

RULES = """
routes:
  - name: hello
    match: {{path: /hello}}
    respond: {{body: "{greeting}"}}
"""


def eventually(condition: Callable[[], bool], attempts: int = 100) -> None:
    for _ in range(attempts):
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition never became true")


def body_is(client: httpx.Client, expected: str) -> bool:
    return client.get("/hello").text == expected


def test_valid_edit_is_served_without_restart(edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory(RULES.format(greeting="one"))
    client = edge.client()
    assert client.get("/hello").text == "one"
    pid = edge.process.pid
    edge.config.write_text(RULES.format(greeting="two"))
    eventually(lambda: body_is(client, "two"))
    status = client.get("/_edge/status").json()
    assert status["config"]["version"] == 2
    assert status["last_reload"]["ok"] is True
    assert edge.process.pid == pid
    assert edge.process.poll() is None


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        pytest.param("routes:\n  - match: {path: /hello\n", "rules.yaml:", id="broken-yaml"),
        pytest.param(
            "routes:\n  - match: {path: /hello}\n    respond: {status: 999}\n",
            "routes[0].respond.status",
            id="bad-value",
        ),
        pytest.param(
            "routes:\n  - match: {path: /x}\n    proxy: nowhere\n",
            "origin 'nowhere' is not defined",
            id="undefined-origin",
        ),
        pytest.param(
            "routes:\n  - name: hello\n    match: {path: /hel",
            "rules.yaml:",
            id="half-written-file",
        ),
    ],
)
def test_invalid_edit_keeps_last_good_config(
    edge_factory: Callable[..., Edge], bad: str, expected: str
) -> None:
    edge = edge_factory(RULES.format(greeting="good"))
    client = edge.client()
    edge.config.write_text(bad)

    def reported() -> bool:
        return bool(client.get("/_edge/status").json()["last_reload"]["errors"])

    eventually(reported)
    status = client.get("/_edge/status").json()
    assert status["last_reload"]["ok"] is False
    assert any(expected in error for error in status["last_reload"]["errors"])
    assert status["config"]["version"] == 1
    assert client.get("/hello").text == "good"
    assert "edgeproxy_config_last_reload_ok 0.0" in client.get("/_edge/metrics").text
    assert expected in edge.logs()
    # Fixing the file recovers.
    edge.config.write_text(RULES.format(greeting="fixed"))
    eventually(lambda: body_is(client, "fixed"))
    assert client.get("/_edge/status").json()["last_reload"]["ok"] is True


def test_sighup_reloads(edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory(RULES.format(greeting="before"))
    client = edge.client()
    os.kill(edge.process.pid, signal.SIGHUP)
    eventually(lambda: client.get("/_edge/status").json()["config"]["version"] == 2)
    assert client.get("/hello").text == "before"


def test_reload_keeps_an_open_stream(origin: Origin, edge_factory: Callable[..., Edge]) -> None:
    rules = f"""
origins:
  app: {{targets: ["{origin.url}"]}}
routes:
  - match: {{path: /}}
    proxy: app
  - name: hello
    match: {{path: /hello}}
    respond: {{body: "{{greeting}}"}}
"""
    edge = edge_factory(rules.replace("{greeting}", "one"))
    client = edge.client()
    with edge.client().stream("GET", "/sse", params={"n": 2, "key": "reload"}) as response:
        lines = response.iter_lines()
        assert next(lines) == "id: 0"
        edge.config.write_text(rules.replace("{greeting}", "two"))
        eventually(lambda: body_is(client, "two"))
        httpx.get(f"{origin.url}/release", params={"key": "reload"})
        rest = list(lines)
    assert "data: event 1" in rest
