from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edgeproxy.edge.downstream import _BACKLOG, open_response
from edgeproxy.types import Message, Receive, Scope, Send

SCOPE: Scope = {"type": "http", "method": "GET", "path": "/", "headers": []}


async def no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_error_before_start_is_raised_by_open() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise LookupError("before start")

    with pytest.raises(LookupError, match="before start"):
        run(open_response(app, SCOPE, no_body))


def test_app_without_response() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    with pytest.raises(RuntimeError, match="returned without sending a response"):
        run(open_response(app, SCOPE, no_body))


def test_error_after_start_is_raised_to_the_reader() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": [(b"a", b"1")]})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise LookupError("midway")

    async def scenario() -> None:
        response = await open_response(app, SCOPE, no_body)
        assert response.status_code == 201
        assert response.headers["a"] == "1"
        with pytest.raises(LookupError, match="midway"):
            await response.read()

    run(scenario())


@pytest.mark.parametrize(
    ("content_type", "raw", "text"),
    [
        pytest.param("text/plain", "héllo".encode(), "héllo", id="utf8-default"),
        pytest.param(
            "text/plain; charset=latin-1", "héllo".encode("latin-1"), "héllo", id="latin1"
        ),
        pytest.param('text/plain; charset="utf-8"', b"quoted", "quoted", id="quoted-charset"),
    ],
)
def test_text_uses_the_charset(content_type: str, raw: bytes, text: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", content_type.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": raw})

    async def scenario() -> str:
        response = await open_response(app, SCOPE, no_body)
        return await response.text()

    assert run(scenario()) == text


def test_app_runs_at_most_a_few_chunks_ahead_and_close_stops_it() -> None:
    produced: list[int] = []
    stopped = asyncio.Event

    async def scenario() -> tuple[int, bool]:
        cancelled = stopped()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            try:
                for n in range(1000):
                    produced.append(n)
                    await send({"type": "http.response.body", "body": b"x", "more_body": True})
            except asyncio.CancelledError:
                cancelled.set()
                raise

        response = await open_response(app, SCOPE, no_body)
        for _ in range(50):
            await asyncio.sleep(0)
        ahead = len(produced)
        response.close()
        await cancelled.wait()
        return ahead, response.buffered

    ahead, buffered = run(scenario())
    assert ahead <= _BACKLOG + 1
    assert not buffered


def test_read_then_send_sends_the_buffer() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"a", b"b", b"c"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def scenario() -> list[Message]:
        response = await open_response(app, SCOPE, no_body)
        assert await response.read() == b"abc"
        assert await response.read() == b"abc"
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        await response(SCOPE, no_body, send)
        return sent

    sent = run(scenario())
    assert [m.get("body") for m in sent] == [None, b"abc"]
