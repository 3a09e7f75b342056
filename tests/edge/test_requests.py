from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from edgeproxy.edge.requests import RequestBody, downstream_scope, rewrite_request
from edgeproxy.types import Message


def client_receive(*chunks: bytes) -> Any:
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
        for n, chunk in enumerate(chunks)
    ]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    return receive


SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/a b",
    "raw_path": b"/a%20b",
    "query_string": b"q=1",
    "headers": [(b"host", b"example"), (b"content-length", b"6")],
}


async def drain(receive: Any) -> bytes:
    data = b""
    while True:
        message = await receive()
        data += message.get("body", b"")
        if not message.get("more_body"):
            return data


def test_readers_replay_what_was_read() -> None:
    async def scenario() -> list[bytes]:
        body = RequestBody(client_receive(b"abc", b"def"))
        first = Request(SCOPE, body.reader())
        read = await first.body()
        again = await drain(body.reader())
        downstream = await drain(body.reader(record=False))
        return [read, again, downstream]

    assert asyncio.run(scenario()) == [b"abcdef"] * 3


def test_partly_read_body_streams_on_downstream() -> None:
    async def scenario() -> bytes:
        body = RequestBody(client_receive(b"abc", b"def", b"ghi"))
        reader = body.reader()
        assert (await reader())["body"] == b"abc"
        data = await drain(body.reader(record=False))
        assert body.streamed
        with pytest.raises(RuntimeError, match="already streamed"):
            await drain(body.reader())
        return data

    assert asyncio.run(scenario()) == b"abcdefghi"


def test_empty_body_replays_its_end() -> None:
    async def scenario() -> list[Message]:
        body = RequestBody(client_receive(b""))
        await Request(SCOPE, body.reader()).body()
        reader = body.reader()
        return [await reader(), await reader()]

    first, second = asyncio.run(scenario())
    assert first == {"type": "http.request", "body": b"", "more_body": False}
    assert second == {"type": "http.disconnect"}


def test_rewrite_request() -> None:
    async def scenario() -> tuple[Request, bytes]:
        body = RequestBody(client_receive(b"old", b"body"))
        request = Request(SCOPE, body.reader())
        changed = rewrite_request(
            request,
            path="/new path/ü?x=1",
            headers={"X-One": "1"},
            body="né",
            method="put",
        )
        return changed, await changed.body()

    changed, data = asyncio.run(scenario())
    assert changed.scope["raw_path"] == b"/new%20path/%C3%BC"
    assert changed.url.path == "/new path/ü"
    assert changed.scope["query_string"] == b"x=1"
    assert changed.method == "PUT"
    assert changed.scope["headers"] == [(b"x-one", b"1"), (b"content-length", b"3")]
    assert data == "né".encode()


@pytest.mark.parametrize(
    ("changes", "raw_path"),
    [
        pytest.param({"path": "/moved"}, b"/moved", id="path-changed-raw-follows"),
        pytest.param({"path": "/moved", "raw_path": b"/x"}, b"/x", id="raw-path-set-kept"),
        pytest.param({}, b"/a%20b", id="unchanged"),
    ],
)
def test_downstream_scope_raw_path(changes: dict[str, Any], raw_path: bytes) -> None:
    assert downstream_scope({**SCOPE, **changes}, SCOPE)["raw_path"] == raw_path


def test_downstream_scope_drops_file_send_extensions() -> None:
    scope = {**SCOPE, "extensions": {"http.response.pathsend": {}, "other": {}}}
    assert downstream_scope(scope, SCOPE)["extensions"] == {"other": {}}
