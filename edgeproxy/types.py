"""ASGI type aliases and the `Literal`s that `rules.yaml` accepts."""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Headers = list[tuple[bytes, bytes]]

# Scope key our HTTP protocol adds: a list of callables run when the client disconnects
# before its response is complete. Cheaper than a task per request waiting on receive().
DISCONNECT_HOOKS = "edgeproxy.disconnect_hooks"

Balancing = Literal["round_robin", "least_conn", "ip_hash", "random"]
RedirectStatus = Literal[301, 302, 303, 307, 308]
HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"]
