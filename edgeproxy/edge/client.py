"""The client's side of one handler invocation: what was sent to it, and whether it left."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from edgeproxy.edge.requests import RequestBody
from edgeproxy.types import DISCONNECT_HOOKS, Headers, Message, Scope, Send

# Writes a complete response (status, headers, body) at once; False, with nothing written,
# when it cannot and the response must go through `send`; ValueError, with nothing written,
# for a header that no server may send (`DirectReply.write`).
WholeResponse = Callable[[int, Headers, bytes], bool]


class ClientSend:
    """The client's `send`, noting whether (and with which status) the response started,
    and the body bytes sent."""

    __slots__ = ("_send", "complete", "failed", "sent", "started", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.complete = False
        self.status = 0
        self.failed = False  # the client's transport failed: not the handler's doing
        self.sent = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if self.started:
                raise RuntimeError("the response has already started")
            self.started = True
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.sent += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = True
        try:
            await self._send(message)
        except BaseException:
            self.failed = True
            raise

    def whole(self, write: WholeResponse, response: Response) -> bool:
        """Send a plain Response (its body complete in memory) with `write`, if it can;
        raises ValueError for a header that cannot be sent."""
        body = response.body
        if not isinstance(body, bytes) or not write(
            response.status_code, response.raw_headers, body
        ):
            return False
        self.started = self.complete = True
        self.status = response.status_code
        self.sent = len(body)
        return True


class ClientWatch:
    """Whether the client left; while the chain runs, cancels it when that happens.

    edgeproxy's HTTP protocol calls a hook on disconnect (the proxy's `DisconnectWatcher`
    uses the same one), from the first `listen()` on: before the invocation waits for
    anything (until then no callback can run, so no disconnect can be seen). Under another
    server, a disconnect is known once something reads the request's `receive` and gets
    `http.disconnect`.
    """

    __slots__ = ("_body", "_hooks", "_left", "_task", "cancelled")

    def __init__(self, scope: Scope, body: RequestBody) -> None:
        self._body = body
        self._hooks: list[Callable[[], None]] | None = scope.get(DISCONNECT_HOOKS)
        self._left = False
        self._task: asyncio.Task[Any] | None = None
        self.cancelled = False

    def listen(self) -> None:
        """Hear of a disconnect from now on (idempotent)."""
        hooks = self._hooks
        if hooks is not None:
            self._hooks = None
            hooks.append(self._disconnected)

    @property
    def gone(self) -> bool:
        """The client left (asked before anything was sent)."""
        return self._left or self._body.client_gone

    def left(self, sender: ClientSend) -> bool:
        """Whether the client left before the response was complete (after it, a server
        answers every `receive()` with `http.disconnect`)."""
        return self._left or (self._body.client_gone and not sender.complete)

    def watch(self, task: asyncio.Task[Any] | None) -> None:
        """Cancel `task` if the client leaves (None: stop)."""
        self.listen()
        self._task = task

    def _disconnected(self) -> None:
        self._left = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            self.cancelled = True
        self._task = None
