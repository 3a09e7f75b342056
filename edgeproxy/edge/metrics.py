"""Prometheus series of edge handlers, kept as plain dicts and turned into families at scrape
(the same reasoning as `edgeproxy.metrics`: no lock per observation)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from edgeproxy.metrics import LATENCY_BUCKETS

OUTCOMES = ("ok", "exception", "timeout", "canceled")


class HandlerStats(Collector):
    """Invocations by handler and outcome, their duration, and event-loop blocking.

    Register it in the metrics registry: `registry.register(stats)`. `loop_blocked` is
    called from the watchdog's thread; it is the only writer of its dict.
    """

    def __init__(self) -> None:
        self.invocations: dict[tuple[str, str], int] = {}
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}
        self.blocked: dict[str, int] = {}

    def observe(self, handler: str, outcome: str, seconds: float) -> None:
        key = (handler, outcome)
        self.invocations[key] = self.invocations.get(key, 0) + 1
        buckets = self.buckets.get(handler)
        if buckets is None:
            buckets = self.buckets[handler] = [0] * (len(LATENCY_BUCKETS) + 1)
            self.sums[handler] = 0.0
        buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sums[handler] += seconds

    def loop_blocked(self, handler: str) -> None:
        self.blocked[handler] = self.blocked.get(handler, 0) + 1

    def collect(self) -> Iterator[Metric]:
        invocations = CounterMetricFamily(
            "edgeproxy_handler_invocations",
            "Edge handler invocations, by handler and outcome (ok, exception, timeout, canceled).",
            labels=["handler", "outcome"],
        )
        for (handler, outcome), count in sorted(self.invocations.copy().items()):
            invocations.add_metric([handler, outcome], count)
        yield invocations
        duration = HistogramMetricFamily(
            "edgeproxy_handler_duration_seconds",
            "Time from invoking a handler chain to the Response it returned, by handler.",
            labels=["handler"],
        )
        for handler, buckets in sorted(self.buckets.copy().items()):
            cumulative, running = [], 0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
                running += count
                cumulative.append((str(bound) if bound != float("inf") else "+Inf", running))
            duration.add_metric([handler], cumulative, self.sums[handler])
        yield duration
        blocked = CounterMetricFamily(
            "edgeproxy_handler_loop_blocked",
            "Times a handler blocked the event loop for longer than its cpu_time limit.",
            labels=["handler"],
        )
        for handler, count in sorted(self.blocked.copy().items()):
            blocked.add_metric([handler], count)
        yield blocked
