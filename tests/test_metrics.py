from __future__ import annotations

from edgeproxy.metrics import Metrics


def test_requests_and_latency_render_as_prometheus_series() -> None:
    metrics = Metrics()
    metrics.requests.observe("api", 200, 0.002)
    metrics.requests.observe("api", 200, 0.2)
    metrics.requests.observe("api", 502, 0.02)
    text = metrics.render().decode()
    assert 'edgeproxy_requests_total{route="api",status="200"} 2.0' in text
    assert 'edgeproxy_requests_total{route="api",status="502"} 1.0' in text
    assert 'edgeproxy_request_duration_seconds_bucket{le="0.0025",route="api"} 1.0' in text
    assert 'edgeproxy_request_duration_seconds_bucket{le="0.25",route="api"} 3.0' in text
    assert 'edgeproxy_request_duration_seconds_bucket{le="+Inf",route="api"} 3.0' in text
    assert 'edgeproxy_request_duration_seconds_count{route="api"} 3.0' in text
    assert "edgeproxy_request_duration_seconds_sum" in text
