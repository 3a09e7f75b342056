"""Awaiting the rest of a coroutine that was stepped by hand."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Continuation(Generic[T]):
    """The rest of a coroutine stepped by hand until it first waited (`waiting`: what it
    yielded then). Awaited in a task, it passes what the coroutine waits for up to the task
    and the task's answers (values, cancellation) down to it, as `await` would have; in
    `context`, when given, rather than the task's."""

    __slots__ = ("_context", "_coro", "_waiting")

    def __init__(
        self,
        coro: Coroutine[Any, Any, T],
        waiting: Any,
        context: contextvars.Context | None = None,
    ) -> None:
        self._coro = coro
        self._waiting = waiting
        self._context = context

    def __await__(self) -> Generator[Any, Any, T]:
        coro, waiting, context = self._coro, self._waiting, self._context
        while True:
            try:
                answer = yield waiting
            except GeneratorExit:
                if context is None:
                    coro.close()
                else:
                    context.run(coro.close)
                raise
            except BaseException as exc:  # passed on to the coroutine
                step: Callable[[], Any] = functools.partial(coro.throw, exc)
            else:
                step = functools.partial(coro.send, answer)
            try:
                waiting = step() if context is None else context.run(step)
            except StopIteration as returned:
                return returned.value  # type: ignore[no-any-return]
