"""Prometheus metrics, in a registry of the gateway's own (one per worker process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgeproxy_requests",
            "Requests answered, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "edgeproxy_request_duration_seconds",
            "Time from request start to the end of the response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "edgeproxy_upstream_errors",
            "Failures talking to an origin, by route and error code.",
            ["route", "code"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "edgeproxy_config_reloads",
            "Config reload attempts, by result (ok or error).",
            ["result"],
            registry=self.registry,
        )
        self.config_ok = Gauge(
            "edgeproxy_config_last_reload_ok",
            "1 when the last config load succeeded, 0 when the last good config is still serving.",
            registry=self.registry,
        )
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        # .labels() hashes and locks on every call; cache the children per (route, status).
        children = self._children.get((route, status))
        if children is None:
            children = (self.requests.labels(route, str(status)), self.latency.labels(route))
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
