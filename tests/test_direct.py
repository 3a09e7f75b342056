"""`edgeproxy.direct.write_response` (and `write_relayed`, for a header block already on
the wire): a whole response written from callbacks as uvicorn's `send` would write a start
message and a final body message, in one write."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import pytest

from edgeproxy.direct import write_relayed, write_response
from edgeproxy.types import Headers

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True


class FakeEvent:
    def __init__(self) -> None:
        self.set_count = 0

    def set(self) -> None:
        self.set_count += 1


class FakeCycle:
    """The attributes of uvicorn's RequestResponseCycle that `write_response` uses."""

    def __init__(
        self, method: str = "GET", keep_alive: bool = True, default_headers: Headers | None = None
    ) -> None:
        self.scope = {"method": method}
        self.default_headers = list(default_headers or [])
        self.keep_alive = keep_alive
        self.transport = FakeTransport()
        self.message_event = FakeEvent()
        self.response_started = False
        self.response_complete = False
        self.waiting_for_100_continue = True
        self.responses = 0

    def on_response(self) -> None:
        self.responses += 1


def write(cycle: FakeCycle, status: int, headers: Headers, body: bytes = b"") -> bool:
    return write_response(cast("RequestResponseCycle", cycle), status, headers, body)


def parse(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """Status line, header fields (in order) and the bytes after the head."""
    head, separator, body = data.partition(b"\r\n\r\n")
    assert separator, data
    status_line, *lines = head.split(b"\r\n")
    fields = []
    for line in lines:
        name, colon, value = line.partition(b": ")
        assert colon, line
        fields.append((name, value))
    return status_line, fields, body


def written(cycle: FakeCycle) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    assert len(cycle.transport.writes) == 1, "a whole response is one write"
    return parse(cycle.transport.writes[0])


def values(fields: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in fields if key == name]


CT = (b"content-type", b"text/plain")


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param([CT], b"hello", id="no-length-given"),
        pytest.param([CT, (b"content-length", b"999")], b"hello", id="wrong-length-replaced"),
        pytest.param([(b"content-length", b"5"), CT], b"hello", id="right-length-not-doubled"),
        pytest.param([CT, (b"content-length", b"3")], b"", id="empty-body-framed-as-zero"),
    ],
)
def test_a_get_response_is_framed_by_its_body(headers: Headers, body: bytes) -> None:
    cycle = FakeCycle()
    assert write(cycle, 200, headers, body)
    status_line, fields, rest = written(cycle)
    assert status_line == b"HTTP/1.1 200 OK"
    assert values(fields, b"content-length") == [str(len(body)).encode()]
    assert values(fields, b"content-type") == [b"text/plain"]
    assert rest == body
    assert values(fields, b"connection") == []
    assert not cycle.transport.closed


@pytest.mark.parametrize(
    ("headers", "length"),
    [
        pytest.param([CT, (b"content-length", b"5000")], [b"5000"], id="given-length-kept"),
        pytest.param([CT], [], id="no-length-none-added"),
    ],
)
def test_a_head_response_keeps_its_own_length_and_writes_no_body(
    headers: Headers, length: list[bytes]
) -> None:
    cycle = FakeCycle(method="HEAD")
    # The body a GET would have had; a HEAD response must not carry it.
    assert write(cycle, 200, headers, b"x" * 5000)
    _, fields, rest = written(cycle)
    assert values(fields, b"content-length") == length
    assert rest == b""


@pytest.mark.parametrize(
    ("status", "headers", "status_line"),
    [
        pytest.param(204, [], b"HTTP/1.1 204 No Content", id="204"),
        pytest.param(
            304,
            [(b"etag", b'"v1"'), (b"content-length", b"12")],
            b"HTTP/1.1 304 Not Modified",
            id="304-keeps-the-representation-length",
        ),
    ],
)
def test_bodiless_statuses_write_no_body_and_add_no_length(
    status: int, headers: Headers, status_line: bytes
) -> None:
    cycle = FakeCycle()
    assert write(cycle, status, headers, b"ignored body")
    line, fields, rest = written(cycle)
    assert line == status_line
    assert fields == list(headers)
    assert rest == b""


@pytest.mark.parametrize(
    ("status", "status_line"),
    [
        pytest.param(404, b"HTTP/1.1 404 Not Found", id="known"),
        pytest.param(599, b"HTTP/1.1 599 ", id="unknown-has-empty-reason"),
    ],
)
def test_status_line(status: int, status_line: bytes) -> None:
    cycle = FakeCycle()
    assert write(cycle, status, [], b"x")
    assert written(cycle)[0] == status_line


def test_default_headers_come_first() -> None:
    cycle = FakeCycle(default_headers=[(b"server", b"edge"), (b"date", b"today")])
    assert write(cycle, 200, [CT], b"ok")
    _, fields, _ = written(cycle)
    assert fields[:3] == [(b"server", b"edge"), (b"date", b"today"), CT]


BAD_HEADERS = {
    "crlf-in-value": [(b"x-a", b"one\r\nset-cookie: evil=1")],
    "lf-in-value": [(b"x-a", b"one\nx-b: two")],
    "cr-in-value": [(b"x-a", b"one\rtwo")],
    "nul-in-value": [(b"x-a", b"nul\x00")],
    "del-in-value": [(b"x-a", b"del\x7f")],
    "second-value-bad": [(b"x-a", b"ok"), (b"x-b", b"bell\x07")],
    "space-in-name": [(b"bad name", b"v")],
    "colon-in-name": [(b"x:y", b"v")],
    "crlf-in-name": [(b"x-a\r\nx-b", b"v")],
    "separator-in-name": [(b"(x)", b"v")],
    "empty-name": [(b"", b"v")],
}


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        *(
            pytest.param(method, headers, id=f"{method}-{name}")
            for method in ("GET", "HEAD")
            for name, headers in BAD_HEADERS.items()
        ),
        # A HEAD keeps its own Content-Length, so that value is checked too.
        pytest.param("HEAD", [CT, (b"content-length", b"5\r\nx: y")], id="HEAD-crlf-in-length"),
    ],
)
def test_a_header_uvicorn_would_refuse_writes_nothing(method: str, headers: Headers) -> None:
    cycle = FakeCycle(method=method)
    assert write(cycle, 200, headers, b"body") is False
    assert cycle.transport.writes == []
    assert not cycle.transport.closed
    assert cycle.responses == 0
    assert cycle.message_event.set_count == 0
    assert (cycle.response_started, cycle.response_complete) == (False, False)
    assert cycle.keep_alive


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(b"x-a", b"tab\there")], id="tab-in-value"),
        pytest.param([(b"x-a", "café".encode("latin-1"))], id="obs-text-in-value"),
        pytest.param([(b"x-a", b"")], id="empty-value"),
        pytest.param([(b"x-custom_header.v2~!#$%&'*+^`|", b"v")], id="token-characters-in-name"),
    ],
)
def test_headers_uvicorn_accepts_are_written_as_given(headers: Headers) -> None:
    cycle = FakeCycle()
    assert write(cycle, 200, headers, b"ok")
    _, fields, rest = written(cycle)
    assert fields[: len(headers)] == list(headers)
    assert rest == b"ok"


def test_a_bad_header_after_a_good_response_still_writes_nothing() -> None:
    # Names that passed once are remembered; a bad one must still be caught after them.
    assert write(FakeCycle(), 200, [(b"x-seen", b"1")], b"ok")
    cycle = FakeCycle()
    assert write(cycle, 200, [(b"x-seen", b"1"), (b"x seen", b"2")], b"ok") is False
    assert cycle.transport.writes == []


@pytest.mark.parametrize(
    ("method", "status"),
    [
        pytest.param("GET", 200, id="get"),
        pytest.param("HEAD", 200, id="head"),
        pytest.param("GET", 304, id="not-modified"),
    ],
)
def test_without_keep_alive_the_response_says_close_and_the_transport_closes(
    method: str, status: int
) -> None:
    cycle = FakeCycle(method=method, keep_alive=False)
    assert write(cycle, status, [CT], b"bye")
    _, fields, _ = written(cycle)
    assert values(fields, b"connection") == [b"close"]
    assert cycle.transport.closed
    assert cycle.responses == 1


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"close", id="close"),
        pytest.param(b"Close", id="any-case"),
        pytest.param(b"x-hop, close", id="in-a-list"),
    ],
)
@pytest.mark.parametrize("keep_alive", [True, False])
def test_a_connection_close_header_ends_keep_alive_and_is_written_once(
    value: bytes, keep_alive: bool
) -> None:
    cycle = FakeCycle(keep_alive=keep_alive)
    assert write(cycle, 200, [CT, (b"connection", value)], b"bye")
    _, fields, rest = written(cycle)
    assert values(fields, b"connection") == [value]
    assert rest == b"bye"
    assert cycle.keep_alive is False
    assert cycle.transport.closed


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(b"connection", b"keep-alive")], id="keep-alive"),
        pytest.param([(b"connection", b"x-closed")], id="token-containing-close"),
        pytest.param([(b"x-connection", b"close")], id="other-header-named-like-it"),
        pytest.param([(b"x-note", b"connection: close")], id="in-another-value"),
    ],
)
def test_only_a_close_token_in_connection_ends_keep_alive(headers: Headers) -> None:
    cycle = FakeCycle()
    assert write(cycle, 200, headers, b"ok")
    assert cycle.keep_alive is True
    assert not cycle.transport.closed


@pytest.mark.parametrize(
    ("method", "status", "keep_alive"),
    [
        pytest.param("GET", 200, True, id="get"),
        pytest.param("HEAD", 200, True, id="head"),
        pytest.param("GET", 204, True, id="no-content"),
        pytest.param("GET", 200, False, id="closing"),
    ],
)
def test_the_cycle_is_complete_and_told_once(method: str, status: int, keep_alive: bool) -> None:
    cycle = FakeCycle(method=method, keep_alive=keep_alive)
    assert write(cycle, status, [CT], b"done")
    assert cycle.responses == 1
    assert cycle.message_event.set_count == 1
    assert cycle.response_started
    assert cycle.response_complete
    assert not cycle.waiting_for_100_continue
    assert len(cycle.transport.writes) == 1


@pytest.mark.parametrize("keep_alive", [True, False])
def test_a_relayed_block_follows_the_default_headers_and_keeps_its_own_framing(
    keep_alive: bool,
) -> None:
    cycle = FakeCycle(keep_alive=keep_alive, default_headers=[(b"server", b"edge")])
    block = b"Content-Type: text/plain\r\nContent-Length: 2\r\n"
    write_relayed(cast("RequestResponseCycle", cycle), 200, block, b"ok")
    status_line, fields, body = written(cycle)
    assert status_line == b"HTTP/1.1 200 OK"
    close = [] if keep_alive else [(b"connection", b"close")]
    relayed = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"2")]
    assert fields == [(b"server", b"edge"), *relayed, *close]
    assert body == b"ok"
    assert cycle.transport.closed is not keep_alive
    assert cycle.responses == 1
