"""HTTP-dates as tables: the three formats, robustness and two-digit years."""

from __future__ import annotations

import pytest

from edgeproxy.cache import dates

T0 = 1_000_000_000.0  # Sun, 09 Sep 2001 01:46:40 GMT
DATE = dates.format_http_date(T0)


# -- dates (RFC 9110 §5.6.7) ----------------------------------------------------------------

EPOCH_784111777 = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(b"Sun, 06 Nov 1994 08:49:37 GMT", EPOCH_784111777, id="imf-fixdate"),
        pytest.param(b"Sunday, 06-Nov-94 08:49:37 GMT", EPOCH_784111777, id="rfc850"),
        pytest.param(b"Sun Nov  6 08:49:37 1994", EPOCH_784111777, id="asctime"),
        pytest.param(b"SUN, 06 NOV 1994 08:49:37 gmt", EPOCH_784111777, id="case-robust"),
        pytest.param(b"Sun, 06  Nov 1994 08:49:37 GMT", EPOCH_784111777, id="extra-space-robust"),
        pytest.param(b"Mon, 06 Nov 1994 08:49:37 GMT", EPOCH_784111777, id="weekday-not-checked"),
        pytest.param(b"Sun, 06 Nov 1994 08:49:37 UTC", None, id="utc-invalid"),
        pytest.param(b"Sun 06 Nov 1994 08:49:37 GMT", None, id="missing-comma-invalid"),
        pytest.param(b"Sun, 06 Nov 94 08:49:37 GMT", None, id="two-digit-imf-invalid"),
        pytest.param(b"Sun, 31 Feb 1994 08:49:37 GMT", None, id="impossible-day-invalid"),
        pytest.param(b"Sun, 06 Nov 1994 24:00:00 GMT", None, id="hour-24-invalid"),
        pytest.param(b"Sat, 31 Dec 2016 23:59:60 GMT", 1483228800.0, id="leap-second"),
        pytest.param(b"0", None, id="zero-invalid"),
        pytest.param(b"", None, id="empty-invalid"),
    ],
)
def test_parse_http_date(value: bytes, expected: float | None) -> None:
    assert dates.parse_http_date(value) == expected


def test_rfc850_year_more_than_50_years_ahead_is_last_century() -> None:
    now = 2_000_000_000.0  # 2033
    assert dates.parse_http_date(b"Friday, 01-Jan-90 00:00:00 GMT", now=now) == 631152000.0
    assert dates.parse_http_date(b"Wednesday, 01-Jan-70 00:00:00 GMT", now=now) == 3155760000.0


def test_format_http_date_round_trips() -> None:
    assert dates.format_http_date(EPOCH_784111777 + 0.9) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert dates.parse_http_date(DATE) == T0
