"""End to end: balancing, ejection, retries and the mapping of upstream failures."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import Edge, Origin, free_port

pytestmark = pytest.mark.e2e


def pool_rules(targets: list[str], balancing: str = "round_robin", extra: str = "") -> str:
    listed = ", ".join(f'"{t}"' for t in targets)
    return f"""
origins:
  pool:
    targets: [{listed}]
    balancing: {balancing}
    passive_health: {{max_fails: 2, fail_timeout: 60s}}
{extra}
routes:
  - match: {{path: /}}
    proxy: pool
"""


def origins_seen(edge: Edge, count: int, **kwargs: object) -> Counter[str]:
    client = edge.client()
    return Counter(client.get("/echo", **kwargs).headers["x-origin"] for _ in range(count))  # type: ignore[arg-type]


def test_round_robin_spreads_evenly(
    origin_factory: Callable[..., Origin], edge_factory: Callable[..., Edge]
) -> None:
    a, b = origin_factory("a"), origin_factory("b")
    edge = edge_factory(pool_rules([a.url, b.url]))
    assert origins_seen(edge, 10) == {"a": 5, "b": 5}


def test_ip_hash_sticks_to_one_target(
    origin_factory: Callable[..., Origin], edge_factory: Callable[..., Edge]
) -> None:
    a, b = origin_factory("a"), origin_factory("b")
    edge = edge_factory(pool_rules([a.url, b.url], "ip_hash"))
    assert len(origins_seen(edge, 10)) == 1


@pytest.mark.parametrize("balancing", ["least_conn", "random"])
def test_other_policies_use_every_target(
    origin_factory: Callable[..., Origin], edge_factory: Callable[..., Edge], balancing: str
) -> None:
    a, b = origin_factory("a"), origin_factory("b")
    edge = edge_factory(pool_rules([a.url, b.url], balancing))
    assert set(origins_seen(edge, 40)) == {"a", "b"}


def test_dead_target_is_retried_then_ejected(
    origin_factory: Callable[..., Origin], edge_factory: Callable[..., Edge]
) -> None:
    a = origin_factory("a")
    dead = f"http://127.0.0.1:{free_port()}"
    edge = edge_factory(pool_rules([a.url, dead]))
    # Every GET succeeds: a connect failure on the dead target is retried on the live one.
    assert origins_seen(edge, 8) == {"a": 8}
    status = edge.client().get("/_edge/status").json()
    dead_state = next(t for t in status["origins"]["pool"] if t["url"] == dead)
    assert dead_state["ejected"] is True
    metrics = edge.client().get("/_edge/metrics").text
    assert 'edgeproxy_requests_total{route="routes[0]",status="200"} 8.0' in metrics


def test_post_is_not_retried(
    origin_factory: Callable[..., Origin], edge_factory: Callable[..., Edge]
) -> None:
    a = origin_factory("a")
    dead = f"http://127.0.0.1:{free_port()}"
    edge = edge_factory(pool_rules([dead, a.url]))
    statuses = Counter(edge.client().post("/echo", content=b"x").status_code for _ in range(2))
    # Round robin sends one of the two to the dead target; a POST is not idempotent.
    assert statuses == {200: 1, 502: 1}


def test_connection_refused_is_502(edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory(pool_rules([f"http://127.0.0.1:{free_port()}"]))
    response = edge.client().get("/echo", headers={"Accept": "application/json"})
    assert response.status_code == 502
    assert response.headers["x-edge-error"] == "upstream-connect"
    body = response.json()
    assert body["error"] == "upstream-connect"
    assert "Traceback" not in response.text


def test_timeout_is_504(origin: Origin, edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory(
        pool_rules([origin.url]).replace(
            "balancing: round_robin", "balancing: round_robin\n    read_timeout: 300ms"
        )
    )
    response = edge.client().get("/slow", params={"delay": 3}, headers={"Accept": "text/html"})
    assert response.status_code == 504
    assert response.headers["x-edge-error"] == "upstream-timeout"
    assert response.headers["content-type"].startswith("text/html")


def test_all_targets_ejected_is_503(edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory(pool_rules([f"http://127.0.0.1:{free_port()}" for _ in range(2)]))
    client = edge.client()
    assert [client.get("/echo").status_code for _ in range(2)] == [502, 502]
    response = client.get("/echo")
    assert response.status_code == 503
    assert response.headers["x-edge-error"] == "no-healthy-upstream"


def test_a_single_target_is_never_ejected(
    origin_factory: Callable[..., Origin], edge_factory: Callable[..., Edge]
) -> None:
    # As nginx does with one server: failures don't take the only target out, so the
    # first request after it recovers is answered.
    port = free_port()
    edge = edge_factory(pool_rules([f"http://127.0.0.1:{port}"]))
    client = edge.client()
    assert [client.get("/echo").status_code for _ in range(4)] == [502] * 4
    origin_factory("back", port)
    assert client.get("/echo").status_code == 200


def test_active_health_check_takes_target_out_and_back(
    origin_factory: Callable[..., Origin], edge_factory: Callable[..., Edge]
) -> None:
    a, b = origin_factory("a"), origin_factory("b")
    extra = "    health_check: {path: /echo, interval: 200ms, timeout: 1s}"
    edge = edge_factory(
        pool_rules([a.url, b.url], extra=extra).replace("max_fails: 2", "max_fails: 0")
    )
    b.stop()
    client = edge.client()
    wait_for(lambda: not health(client, b.url))
    assert origins_seen(edge, 6) == {"a": 6}
    origin_factory("b", port=b.port)
    wait_for(lambda: health(client, b.url))
    assert set(origins_seen(edge, 6)) == {"a", "b"}


def health(client: httpx.Client, url: str) -> bool:
    targets = client.get("/_edge/status").json()["origins"]["pool"]
    return bool(next(t for t in targets if t["url"] == url)["healthy"])


def wait_for(condition: Callable[[], bool], attempts: int = 100) -> None:
    for _ in range(attempts):
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition never became true")
