"""What crosses a stub: RPC method checks, argument and result copies, remote exceptions,
and the fresh Request an object's `fetch()` receives.

Arguments and results travel as JSON copies, so a caller and an object never share
mutable state. An exception raised in the object is re-raised at the caller as the same
type when it is a builtin or an edgeproxy exception, otherwise as RemoteObjectError.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.types import Message

from edgeproxy import exceptions
from edgeproxy.exceptions import ObjectValueError, RemoteObjectError, RpcMethodError
from edgeproxy.objects import values

NOT_RPC = frozenset({"fetch", "alarm"})
_HTTP_SCOPE_KEYS = (
    "type", "asgi", "http_version", "method", "scheme", "path", "raw_path", "query_string",
    "root_path", "headers", "server", "client",
)  # fmt: skip


def check_method(cls: type, name: str) -> None:
    """Refuse `name` unless it is a public coroutine method of `cls`."""
    where = f"{cls.__name__}.{name}"
    if name.startswith("_"):
        raise RpcMethodError(f"{where} is private; RPC calls only public async methods")
    if name in NOT_RPC:
        raise RpcMethodError(
            f"{where} is not callable by RPC: use stub.fetch() for requests; alarms are "
            "delivered by the scheduler"
        )
    attribute = getattr(cls, name, None)
    if attribute is None:
        raise RpcMethodError(
            f"{cls.__name__} has no method {name!r} (RPC methods: {', '.join(methods(cls))})"
        )
    if not inspect.iscoroutinefunction(attribute):
        raise RpcMethodError(f"{where} is not an async method; RPC calls only `async def`")


def methods(cls: type) -> list[str]:
    """The names RPC may call on `cls`."""
    return sorted(
        name
        for name in dir(cls)
        if not name.startswith("_")
        and name not in NOT_RPC
        and inspect.iscoroutinefunction(getattr(cls, name, None))
    )


def copy_arguments(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    copied = values.copy([list(args), dict(kwargs)], f"argument of {name}()")
    return copied[0], copied[1]


def copy_result(name: str, result: Any) -> Any:
    return values.copy(result, f"result of {name}()")


def remote_error(error: Exception) -> Exception:
    """The exception the caller sees for `error` raised inside an object."""
    kind = type(error)
    transferable = getattr(builtins, kind.__name__, None) is kind or (
        getattr(exceptions, kind.__name__, None) is kind
    )
    if transferable:
        try:
            args = values.copy(list(error.args), "exception arguments")
            copied = kind(*args)
        except (TypeError, ValueError):  # constructors that want other arguments
            copied = None
        if isinstance(copied, Exception) and str(copied) == str(error):
            return copied
    return RemoteObjectError(f"{kind.__module__}.{kind.__qualname__}", str(error))


async def object_request(
    target: Request | str,
    method: str | None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
    body: bytes | str | None,
) -> Request:
    """A fresh Request for an object's `fetch()`: from a URL, or a copy of `target`."""
    host: bytes | None = None
    if isinstance(target, Request):
        scope: dict[str, Any] = {
            key: target.scope[key] for key in _HTTP_SCOPE_KEYS if key in target.scope
        }
        scope["headers"] = list(target.scope.get("headers", []))
        content = await target.body() if body is None else _bytes(body)
    elif isinstance(target, str):
        scope, host = _scope_from_url(target)
        content = _bytes(body) if body is not None else b""
    else:
        raise ObjectValueError(
            f"stub.fetch() takes a Request or an absolute URL, got {type(target).__name__}"
        )
    if method is not None:
        scope["method"] = method.upper()
    if headers is not None:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        scope["headers"] = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
    if host is not None and not any(name == b"host" for name, _ in scope["headers"]):
        scope["headers"].insert(0, (b"host", host))
    if content or body is not None:
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        scope["headers"].append((b"content-length", str(len(content)).encode()))
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": content, "more_body": False}

    return Request(scope, receive)


def _bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


def _scope_from_url(url: str) -> tuple[dict[str, Any], bytes]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ObjectValueError(f"stub.fetch() needs an absolute http(s) URL, got {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    host = parts.hostname.encode("idna")
    if parts.port is not None:
        host += f":{parts.port}".encode()
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": parts.scheme,
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": parts.query.encode("latin-1"),
        "root_path": "",
        "headers": [],
        "server": (parts.hostname, port),
        "client": None,
    }
    return scope, host
