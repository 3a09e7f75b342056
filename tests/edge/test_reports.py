from __future__ import annotations

import io

import pytest

from edgeproxy.edge.logs import LogHub
from edgeproxy.edge.metrics import HandlerStats
from edgeproxy.edge.reports import InvocationReport, InvocationReports


@pytest.mark.parametrize(
    ("seconds", "shown", "billed"),
    [
        pytest.param(0.0, "0.00", 0, id="zero-bills-nothing"),
        pytest.param(0.000004, "0.00", 0, id="below-display-precision"),
        pytest.param(0.00001, "0.01", 1, id="a-hundredth-bills-one"),
        pytest.param(0.002, "2.00", 2, id="exact-ms-not-rounded-up"),
        pytest.param(0.0020049, "2.00", 2, id="shown-as-exact-bills-exact"),
        pytest.param(0.00314159, "3.14", 4, id="fraction-rounds-up"),
        pytest.param(0.0999999, "100.00", 100, id="rounds-to-next-ms"),
        pytest.param(1.5, "1500.00", 1500, id="seconds"),
    ],
)
def test_duration_and_billing(seconds: float, shown: str, billed: int) -> None:
    line = InvocationReport("r1", "f.py:on_request", 200, seconds, 0.0, "ok").line()
    assert f" duration_ms={shown} billed_ms={billed} " in line


def test_report_line() -> None:
    report = InvocationReport(
        "abc", "functions/api/hello.py:on_request_get", 200, 0.00314, 0.0125, "ok", "demo"
    )
    assert report.line() == (
        "REPORT request_id=abc handler=functions/api/hello.py:on_request_get status=200 "
        "duration_ms=3.14 billed_ms=4 wait_until_ms=12.50 outcome=ok"
    )


def test_reports_go_to_stream_hub_and_metrics() -> None:
    logs, stats, stream = LogHub(), HandlerStats(), io.StringIO()
    reports = InvocationReports(logs, stats, stream)
    reports.write(InvocationReport("r1", "h.py:on_request", 200, 0.001, 0, "ok", "demo"))
    reports.write(InvocationReport("r2", "h.py:on_request", 500, 0.002, 0, "exception", None))
    assert [line[:20] for line in stream.getvalue().splitlines()] == [
        "REPORT request_id=r1",
        "REPORT request_id=r2",
    ]
    entries = logs.entries("demo")
    assert [(e.request_id, e.level, e.handler) for e in entries] == [
        ("r1", "REPORT", "h.py:on_request")
    ]
    assert stats.invocations == {("h.py:on_request", "ok"): 1, ("h.py:on_request", "exception"): 1}
