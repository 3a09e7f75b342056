"""What the gateway learns about one request while handling it (for logs and metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from edgeproxy.types import Message, Send


@dataclass(slots=True)
class RequestContext:
    host: str
    client_ip: str
    scheme: str
    route: str = "-"
    upstream: str = ""
    upstream_seconds: float = 0.0
    status: int = 0
    bytes_sent: int = 0
    error: str = ""
    request_id: str = ""


def counting_send(send: Send, ctx: RequestContext) -> Send:
    """`send`, adding the body bytes that pass through to `ctx.bytes_sent` (for the access
    log of responses whose producers don't count them: static files, handlers)."""

    async def counted(message: Message) -> None:
        if message["type"] == "http.response.body":
            ctx.bytes_sent += len(message.get("body", b""))
        await send(message)

    return counted
