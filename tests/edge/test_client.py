"""The client's side of an invocation: what was sent (ClientSend), whether it left (ClientWatch)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from edgeproxy.edge.client import ClientSend, ClientWatch
from edgeproxy.edge.requests import RequestBody
from edgeproxy.types import DISCONNECT_HOOKS, Message


async def _never() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def test_the_disconnect_hook_is_registered_only_once_listening() -> None:
    async def scenario() -> tuple[bool, bool, list[Callable[[], None]]]:
        hooks: list[Callable[[], None]] = []
        watch = ClientWatch({DISCONNECT_HOOKS: hooks}, RequestBody(_never))
        registered_before = bool(hooks)
        task = asyncio.ensure_future(asyncio.sleep(10))
        watch.watch(task)
        watch.listen()  # again: still one hook
        for hook in list(hooks):
            hook()  # the client leaves
        await asyncio.sleep(0)
        return registered_before, task.cancelled(), hooks

    registered_before, cancelled, hooks = asyncio.run(scenario())
    assert not registered_before
    assert len(hooks) == 1
    assert cancelled


def test_a_client_leaving_after_the_watch_stopped_cancels_nothing() -> None:
    async def scenario() -> tuple[bool, bool]:
        hooks: list[Callable[[], None]] = []
        watch = ClientWatch({DISCONNECT_HOOKS: hooks}, RequestBody(_never))
        task = asyncio.ensure_future(asyncio.sleep(0.01))
        watch.watch(task)
        watch.watch(None)
        hooks[0]()
        await task
        return watch.cancelled, watch.gone

    assert asyncio.run(scenario()) == (False, True)


def test_client_send_counts_what_it_sends_either_way() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def scenario() -> tuple[Any, ...]:
        by_messages = ClientSend(send)
        await by_messages({"type": "http.response.start", "status": 201, "headers": []})
        await by_messages({"type": "http.response.body", "body": b"ab", "more_body": True})
        await by_messages({"type": "http.response.body", "body": b"cde"})
        whole = ClientSend(send)
        written = whole.whole(lambda status, headers, body: True, Response(b"12345", 202))
        refused = ClientSend(send)
        not_written = refused.whole(lambda status, headers, body: False, Response(b"x"))
        return (
            (by_messages.status, by_messages.sent, by_messages.complete),
            (written, whole.status, whole.sent, whole.complete),
            (not_written, refused.started, refused.sent),
        )

    assert asyncio.run(scenario()) == ((201, 5, True), (True, 202, 5, True), (False, False, 0))
    assert len(sent) == 3
