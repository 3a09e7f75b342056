"""Invocation reports: one line per handler invocation, in the style of a function platform.

    REPORT request_id=4f1c0a2b00000007 handler=functions/api/hello.py:on_request_get
        status=200 duration_ms=3.14 billed_ms=4 wait_until_ms=0.00 outcome=ok

(one line). `duration_ms` is the time from invoking the chain until it returned its
Response, with two decimals; `billed_ms` is that duration rounded up to the next whole
millisecond, with no minimum (0.00 bills 0, 0.01 bills 1, 2.00 bills 2); `wait_until_ms`
is how long `ctx.wait_until()` work ran on after the response was sent. The report is
written once that work has finished, so it is complete when it appears.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, TextIO

from edgeproxy.edge.logs import LogHub
from edgeproxy.edge.metrics import HandlerStats


def hundredths_of_ms(seconds: float) -> int:
    """`seconds` in hundredths of a millisecond: the precision reports show."""
    return round(seconds * 100_000)


def format_ms(hundredths: int) -> str:
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def billed_ms(hundredths: int) -> int:
    """Whole milliseconds billed for a duration shown as `hundredths`: rounded up."""
    return -(-hundredths // 100)


class InvocationReport(NamedTuple):
    """The facts of one invocation. `handler` is the chain's final handler, or the last
    middleware that answered (or the one that raised). A tuple: one is made per request,
    and a frozen dataclass measured at three times the cost."""

    request_id: str
    handler: str
    status: int
    duration: float
    wait_until: float
    outcome: str
    site: str | None = None

    def line(self) -> str:
        duration = hundredths_of_ms(self.duration)
        return (
            f"REPORT request_id={self.request_id} handler={self.handler} status={self.status} "
            f"duration_ms={format_ms(duration)} billed_ms={billed_ms(duration)} "
            f"wait_until_ms={format_ms(hundredths_of_ms(self.wait_until))} outcome={self.outcome}"
        )


# An InvocationReport from a tuple of its fields, made by `tuple.__new__` itself: the
# NamedTuple's generated `__new__` is a Python function, one call more per request.
make_report: Callable[[tuple[Any, ...]], InvocationReport] = functools.partial(
    tuple.__new__, InvocationReport
)


class InvocationReports:
    """Writes each report to the site's log hub entries (level `REPORT`), the handler
    metrics, and, when `stream` is set, one line on it (the server's stderr).

    The stream gets a plain write, like the access log: going through `logging` measured
    at a third of a trivial function's whole cost.
    """

    def __init__(
        self,
        logs: LogHub | None = None,
        stats: HandlerStats | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.logs = logs
        self.stats = stats
        self.stream = stream

    def write(self, report: InvocationReport) -> None:
        if self.stream is not None:
            self.stream.write(report.line() + "\n")
            self.stream.flush()
        if self.logs is not None and report.site is not None:
            # The line is formatted when someone reads the entry, not per request.
            self.logs.append(report.site, report.request_id, report.handler, "REPORT", report)
        if self.stats is not None:
            self.stats.observe(report.handler, report.outcome, report.duration)
