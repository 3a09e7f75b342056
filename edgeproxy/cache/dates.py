"""HTTP-dates (RFC 9110 §5.6.7): parsing all three formats, formatting IMF-fixdate."""

from __future__ import annotations

import calendar
import datetime
import math
import re
import time
from typing import Final

_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DAYS: Final = "(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAYS: Final = "(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_TIME: Final = r"(\d\d):(\d\d):(\d\d)"
_IMF_FIXDATE = re.compile(rf"{_DAYS}, (\d\d) ([a-z]{{3}}) (\d{{4}}) {_TIME} gmt", re.IGNORECASE)
_RFC850 = re.compile(rf"{_LONG_DAYS}, (\d\d)-([a-z]{{3}})-(\d\d) {_TIME} gmt", re.IGNORECASE)
_ASCTIME = re.compile(rf"{_DAYS} ([a-z]{{3}}) (\d\d?) {_TIME} (\d{{4}})", re.IGNORECASE)
_WHITESPACE = re.compile(r"[ \t]+")


def parse_http_date(value: bytes, *, now: float | None = None) -> float | None:
    """An HTTP-date (IMF-fixdate, RFC 850 or asctime) as a POSIX timestamp; None if invalid.

    Choice (RFC 9110 §5.6.7 "be robust"): day and month names and `GMT` are matched
    case-insensitively and runs of whitespace count as one space; the weekday is not
    checked against the date. `UTC`, numeric zones, missing commas and two-digit years
    outside RFC 850 are invalid. `now` only resolves RFC 850 two-digit years.
    """
    text = _WHITESPACE.sub(" ", value.decode("latin-1")).strip()
    if found := _IMF_FIXDATE.fullmatch(text):
        day, month, year, hour, minute, second = found.groups()
    elif found := _RFC850.fullmatch(text):
        day, month, short_year, hour, minute, second = found.groups()
        # RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in the past century.
        this_year = time.gmtime(time.time() if now is None else now).tm_year
        candidate = this_year - this_year % 100 + int(short_year)
        year = str(candidate - 100 if candidate > this_year + 50 else candidate)
    elif found := _ASCTIME.fullmatch(text):
        month, day, hour, minute, second, year = found.groups()
    else:
        return None
    month_number = _MONTHS.get(month.lower())
    if month_number is None:
        return None
    # second 60 is a leap second in the grammar; datetime rejects it, so count it forward.
    leap = int(second) == 60
    try:
        moment = datetime.datetime(
            int(year), month_number, int(day), int(hour), int(minute), 59 if leap else int(second)
        )
    except ValueError:
        return None
    return float(calendar.timegm(moment.timetuple()) + leap)


def format_http_date(timestamp: float) -> bytes:
    """IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(math.floor(timestamp))).encode()
