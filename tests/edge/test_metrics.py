from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from edgeproxy.edge.metrics import HandlerStats


def test_collector_renders_three_families() -> None:
    stats = HandlerStats()
    registry = CollectorRegistry()
    registry.register(stats)
    stats.observe("f.py:on_request", "ok", 0.003)
    stats.observe("f.py:on_request", "ok", 0.2)
    stats.observe("f.py:on_request", "timeout", 30.0)
    stats.loop_blocked("f.py:on_request")
    text = generate_latest(registry).decode()
    assert 'edgeproxy_handler_invocations_total{handler="f.py:on_request",outcome="ok"} 2.0' in text
    assert (
        'edgeproxy_handler_invocations_total{handler="f.py:on_request",outcome="timeout"} 1.0'
        in text
    )
    assert (
        'edgeproxy_handler_duration_seconds_bucket{handler="f.py:on_request",le="0.005"} 1.0'
        in (text)
    )
    assert 'edgeproxy_handler_duration_seconds_count{handler="f.py:on_request"} 3.0' in text
    assert 'edgeproxy_handler_loop_blocked_total{handler="f.py:on_request"} 1.0' in text
