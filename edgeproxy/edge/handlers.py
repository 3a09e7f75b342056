"""Loaded handler functions, the handlers of one module, and a matched chain of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# The handler signature is `async (request, env, ctx) -> Response`; the loader has checked
# that it is a coroutine function, the runner checks what it returns.
HandlerCallable = Callable[..., Awaitable[Any]]

# Method-specific variants win over `on_request` for their method.
METHOD_VARIANTS: Mapping[str, str] = {
    "GET": "on_request_get",
    "POST": "on_request_post",
    "PUT": "on_request_put",
    "PATCH": "on_request_patch",
    "DELETE": "on_request_delete",
    "HEAD": "on_request_head",
    "OPTIONS": "on_request_options",
}
ANY_METHOD = "on_request"
HANDLER_NAMES = (ANY_METHOD, *METHOD_VARIANTS.values())

Params = dict[str, str | list[str]]


@dataclass(frozen=True, slots=True)
class HandlerFunction:
    """One handler function and the label reports, logs and metrics know it by.

    The label is `<file relative to its root>:<function>`, e.g.
    `functions/api/hello.py:on_request_get`.
    """

    label: str
    func: HandlerCallable


@dataclass(frozen=True, slots=True)
class HandlerModule:
    """The handlers one module file offers, by method.

    `fallback` is `on_request` (or the one function named in `module.py:function`); it
    answers every method without a variant of its own.
    """

    file: str
    by_method: Mapping[str, HandlerFunction] = field(default_factory=dict)
    fallback: HandlerFunction | None = None

    def for_method(self, method: str) -> HandlerFunction | None:
        """The handler for `method`, or None: then the module does not handle it."""
        return self.by_method.get(method, self.fallback)

    @property
    def empty(self) -> bool:
        return self.fallback is None and not self.by_method

    def chain(self, method: str) -> Chain | None:
        """A one-handler chain for `method` (a route's `handler:`), or None to skip it."""
        handler = self.for_method(method)
        return None if handler is None else Chain((), handler, {})


@dataclass(frozen=True, slots=True)
class Chain:
    """What runs for one request: middlewares outermost first, then the handler (if any).

    With no handler, the innermost middleware's `ctx.next()` reaches the downstream app.
    """

    middlewares: tuple[HandlerFunction, ...]
    handler: HandlerFunction | None
    params: Params
    # The middlewares, then the handler: what the invocation walks (made once per chain).
    steps: tuple[HandlerFunction, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        steps = self.middlewares if self.handler is None else (*self.middlewares, self.handler)
        object.__setattr__(self, "steps", steps)
