"""A proxied request answered from callbacks (`edgeproxy.direct`), while it waits upstream."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from edgeproxy.direct import DirectReply
from edgeproxy.proxy.client import UpstreamConnection
from edgeproxy.proxy.upstreams import Target
from edgeproxy.routing.paths import RequestPath
from edgeproxy.routing.table import RouteMatch
from edgeproxy.types import DISCONNECT_HOOKS, Receive, Scope, Send

if TYPE_CHECKING:
    from edgeproxy.proxy.forward import ProxyAction


class DirectExchange:
    """A request a `ProxyAction` wrote from callbacks, waiting for its response there.

    The connection calls `on_event` as the response arrives. A complete response is
    answered at once; anything else (an error, a timeout, a body still coming) is handed to
    the ASGI path, which takes the same exchange up where it stands (`ProxyAction.forward`).
    A client leaving first closes the connection.
    """

    __slots__ = (
        "action",
        "conn",
        "listening",
        "match",
        "path",
        "reply",
        "started",
        "target",
    )

    def __init__(
        self,
        action: ProxyAction,
        scope: Scope,
        match: RouteMatch,
        path: RequestPath,
        reply: DirectReply,
        target: Target,
        conn: UpstreamConnection,
    ) -> None:
        self.action = action
        self.match = match
        self.path = path
        self.reply = reply
        self.target = target
        self.conn = conn
        self.listening = True
        self.started = time.perf_counter()
        reply.ctx.upstream = target.url
        target.active += 1
        scope[DISCONNECT_HOOKS].append(self.on_disconnect)

    def on_event(self) -> None:
        conn = self.conn
        if conn.error is None and not conn.complete and not conn.head_ready:
            return
        self._decided()
        if conn.error is None and conn.complete and self.reply.writable:
            self.action.answer_direct(self)
        else:
            self.reply.hand_over(self.resume)

    def on_disconnect(self) -> None:
        if not self.listening:
            return
        self._decided()
        self.target.active -= 1
        self.conn.close()
        ctx = self.reply.ctx
        ctx.status = 499
        ctx.upstream_seconds = time.perf_counter() - self.started
        self.reply.finish()

    def _decided(self) -> None:
        self.listening = False
        self.action.client.settle(self.conn)

    async def resume(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = self.reply
        await self.action.forward(scope, receive, send, self.match, self.path, reply.ctx, self)
