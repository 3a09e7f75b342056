"""Proxying a WebSocket: connect upstream first, then accept the client and pump both ways."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from yarl import URL

from edgeproxy.exceptions import UpstreamProtocolError
from edgeproxy.proxy.errors import upstream_errors
from edgeproxy.types import Headers, Receive, Send

# The handshake is redone by the client library; these belong to the client's own handshake.
HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)
# 1005 (no status) and 1006 (abnormal) must never be sent in a close frame.
_UNSENDABLE = frozenset({1005, 1006, 1015})


def _close_code(code: int | None) -> int:
    return 1000 if code is None or code in _UNSENDABLE else code


async def proxy_websocket(
    receive: Receive,
    send: Send,
    *,
    session: aiohttp.ClientSession,
    url: str,
    headers: list[tuple[str, str]],
    subprotocols: list[str],
    close_timeout: float,
    where: str,
) -> None:
    """Relay one WebSocket session between the client and `url`, close codes included."""
    connect = await receive()
    if connect["type"] != "websocket.connect":
        return
    with upstream_errors(where):
        try:
            upstream = await session.ws_connect(
                URL(url, encoded=True),
                headers=headers,
                protocols=subprotocols,
                autoping=True,
                autoclose=False,
                max_msg_size=0,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=close_timeout),
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise UpstreamProtocolError(
                f"{where} refused the WebSocket handshake ({exc.status})"
            ) from exc
    accept_headers: Headers = []
    await send(
        {"type": "websocket.accept", "subprotocol": upstream.protocol, "headers": accept_headers}
    )

    async def client_to_upstream() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(
                    code=_close_code(message.get("code")),
                    message=(message.get("reason") or "").encode(),
                )
                return
            if message.get("text") is not None:
                await upstream.send_str(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send_bytes(message["bytes"])

    async def upstream_to_client() -> None:
        # Not `async for`: aiohttp's iterator hides the CLOSE frame and its code.
        while True:
            message = await upstream.receive()
            if message.type == aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": message.data})
            elif message.type == aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": message.data})
            elif message.type == aiohttp.WSMsgType.CLOSE:
                await upstream.close(code=_close_code(message.data))
                await send(
                    {
                        "type": "websocket.close",
                        "code": _close_code(message.data),
                        "reason": message.extra or "",
                    }
                )
                return
            else:
                break
        # The upstream went away without a close frame.
        await send({"type": "websocket.close", "code": 1011, "reason": "upstream connection lost"})

    pumps = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    try:
        done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()
    finally:
        for task in pumps:
            task.cancel()
        with contextlib.suppress(aiohttp.ClientError, OSError):
            await upstream.close()
