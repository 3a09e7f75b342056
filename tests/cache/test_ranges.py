"""Range requests answered from a stored complete response."""

from __future__ import annotations

import pytest

from edgeproxy.cache.ranges import partial_response
from edgeproxy.types import Headers

BODY = b"0123456789"
STORED: Headers = [
    (b"content-type", b"text/plain"),
    (b"content-length", b"10"),
    (b"etag", b'"v1"'),
    (b"last-modified", b"Sat, 28 Nov 2026 10:00:00 GMT"),
]


@pytest.mark.parametrize(
    ("request_headers", "expected"),
    [
        pytest.param([(b"range", b"bytes=2-4")], (206, b"234", b"bytes 2-4/10"), id="middle"),
        pytest.param([(b"range", b"bytes=7-")], (206, b"789", b"bytes 7-9/10"), id="open-end"),
        pytest.param([(b"range", b"bytes=-3")], (206, b"789", b"bytes 7-9/10"), id="suffix"),
        pytest.param([(b"range", b"bytes=8-99")], (206, b"89", b"bytes 8-9/10"), id="past-end"),
        pytest.param([(b"range", b"bytes=10-")], (416, b"", b"bytes */10"), id="unsatisfiable"),
        pytest.param(
            [(b"range", b"bytes=0-1"), (b"if-range", b'"v1"')],
            (206, b"01", b"bytes 0-1/10"),
            id="if-range-etag-matches",
        ),
        pytest.param(
            [(b"range", b"bytes=0-1"), (b"if-range", b"Sat, 28 Nov 2026 10:00:00 GMT")],
            (206, b"01", b"bytes 0-1/10"),
            id="if-range-date-matches",
        ),
    ],
)
def test_partial_from_stored_body(
    request_headers: Headers, expected: tuple[int, bytes, bytes]
) -> None:
    status, body, content_range = expected
    partial = partial_response(request_headers, STORED, BODY)
    assert partial is not None
    assert (partial.status, partial.body) == (status, body)
    headers = dict(partial.headers)
    assert headers[b"content-range"] == content_range
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"etag"] == b'"v1"'
    assert [n for n, _ in partial.headers].count(b"content-length") == 1


@pytest.mark.parametrize(
    "request_headers",
    [
        pytest.param([], id="no-range"),
        pytest.param([(b"range", b"bytes=0-1,4-5")], id="several-ranges-get-everything"),
        pytest.param([(b"range", b"items=0-1")], id="other-unit"),
        pytest.param([(b"range", b"bytes=5-2")], id="reversed"),
        pytest.param([(b"range", b"bytes=0-1"), (b"if-range", b'"v0"')], id="if-range-stale"),
        pytest.param(
            [(b"range", b"bytes=0-1"), (b"if-range", b"Sat, 28 Nov 2026 09:00:00 GMT")],
            id="if-range-other-date",
        ),
    ],
)
def test_whole_response_instead(request_headers: Headers) -> None:
    assert partial_response(request_headers, STORED, BODY) is None


def test_weak_etag_never_satisfies_if_range() -> None:
    weak = [(n, b'W/"v1"' if n == b"etag" else v) for n, v in STORED]
    request = [(b"range", b"bytes=0-1"), (b"if-range", b'W/"v1"')]
    assert partial_response(request, weak, BODY) is None
