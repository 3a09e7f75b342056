"""End to end: the server process itself — readiness, graceful shutdown, workers, logs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import Edge, Origin
from tests.e2e.test_proxy import rules_for

pytestmark = pytest.mark.e2e


def test_sigterm_drains_in_flight_requests(
    origin: Origin, edge_factory: Callable[..., Edge]
) -> None:
    edge = edge_factory(rules_for(origin))
    result: dict[str, httpx.Response] = {}

    def slow_request() -> None:
        result["response"] = httpx.get(f"{edge.url}/api/slow", params={"delay": 1.5}, timeout=10)

    worker = threading.Thread(target=slow_request)
    worker.start()
    for _ in range(100):
        if httpx.get(f"{origin.url}/_count").json()["open_streams"] == 1:
            break
        threading.Event().wait(0.05)
    edge.process.send_signal(signal.SIGTERM)
    worker.join(timeout=15)
    assert result["response"].status_code == 200
    assert result["response"].json() == {"slow": True}
    # uvicorn re-raises the signal once drained, so the exit status says "terminated".
    assert edge.process.wait(timeout=15) in (0, -signal.SIGTERM)


def test_ready_and_health(origin: Origin, edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory(rules_for(origin))
    client = edge.client()
    assert client.get("/_edge/ready").json() == {"ready": True}
    assert client.get("/_edge/health").json() == {"status": "ok"}
    missing = client.get("/_edge/nope")
    assert missing.status_code == 404
    assert client.post("/_edge/health").status_code == 405


def test_access_log_line_per_request(origin: Origin, edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory(rules_for(origin))
    edge.client().get("/api/echo?x=1", headers={"Host": "logs.test"})
    entry = edge.access_log()[-1]
    assert entry["method"] == "GET"
    assert entry["host"] == "logs.test"
    assert entry["path"] == "/api/echo?x=1"
    assert entry["status"] == 200
    assert entry["route"] == "api"
    assert entry["upstream"] == origin.url
    assert entry["bytes"] > 0
    for key in ("time", "request_id", "duration_ms", "upstream_ms", "client"):
        assert key in entry


def test_latency_and_route_metrics(origin: Origin, edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory(rules_for(origin))
    client = edge.client()
    client.get("/api/echo")
    client.get("/nothing-here")
    metrics = client.get("/_edge/metrics").text
    assert 'edgeproxy_requests_total{route="api",status="200"} 1.0' in metrics
    assert 'edgeproxy_requests_total{route="-",status="404"} 1.0' in metrics
    assert 'edgeproxy_request_duration_seconds_count{route="api"} 1.0' in metrics


def test_several_workers_serve(origin: Origin, edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory(rules_for(origin), extra_args=["--workers", "2"])
    client = edge.client()
    assert all(client.get("/api/echo").status_code == 200 for _ in range(20))


def test_status_and_metrics_only_for_internal_networks(
    origin: Origin, edge_factory: Callable[..., Edge]
) -> None:
    edge = edge_factory("server:\n  internal_networks: [10.0.0.0/8]\n" + rules_for(origin))
    client = edge.client()
    for path in ("/_edge/status", "/_edge/metrics"):
        response = client.get(path)
        assert response.status_code == 403
        assert "internal_networks" in response.json()["detail"]
    assert client.get("/_edge/health").status_code == 200
    assert client.get("/_edge/ready").status_code == 200
