"""Noticing that a client left before its response was done."""

from __future__ import annotations

import asyncio

from edgeproxy.types import DISCONNECT_HOOKS, Receive, Scope


class DisconnectWatcher:
    """Cancels the request's task when the client disconnects before the response is done.

    Under our own HTTP protocol this is a hook the protocol calls on disconnect. Under any
    other ASGI server it falls back to a task waiting on `receive()`, started once the
    request body has been read in full so it never competes with the body reader.
    """

    __slots__ = ("_hooked", "_receive", "_task", "_watch", "gone")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._receive = receive
        self._task = asyncio.current_task()
        self._watch: asyncio.Task[None] | None = None
        self.gone = False
        hooks = scope.get(DISCONNECT_HOOKS)
        self._hooked = hooks is not None
        if hooks is not None:
            hooks.append(self._disconnected)

    def start(self) -> None:
        if not self._hooked and self._watch is None:
            self._watch = asyncio.ensure_future(self._wait())

    def stop(self) -> None:
        self._task = None
        if self._watch is not None:
            self._watch.cancel()

    async def _wait(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._disconnected()

    def _disconnected(self) -> None:
        self.gone = True
        if self._task is not None:
            self._task.cancel()
