"""Deadlines on the hot path, checked by one periodic sweep instead of a timer each.

Arming and cancelling a libuv timer per request measured at ~1.4 us, and `asyncio.timeout`
adds getpid() system calls on Python 3.11. The deadlines kept here (an upstream read
timeout, a handler's wall-time limit) are seconds long, so a sweep every 50 ms is precise
enough. The server's own header-read and keep-alive deadlines are swept per connection in
`edgeproxy.server`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

# How often overdue items are looked for: the deadlines' precision.
SWEEP_SECONDS = 0.05

T = TypeVar("T")


class Deadlines(Generic[T]):
    """Items due at a time on their event loop; `expire(item, seconds)` is called for each
    one still pending then (`seconds`: what it was given)."""

    __slots__ = ("_expire", "_loop", "_pending", "_scheduled")

    def __init__(self, expire: Callable[[T, float], None]) -> None:
        self._expire = expire
        self._pending: dict[T, tuple[float, float]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False

    @property
    def sweeping(self) -> bool:
        """Whether a sweep is scheduled (none is while nothing is pending)."""
        return self._scheduled

    def add(self, item: T, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        if loop is not self._loop:
            # A new loop (tests run several): the old loop's sweep, if any, stops itself.
            self._loop, self._scheduled = loop, False
            self._pending.clear()
        self._pending[item] = (loop.time() + seconds, seconds)
        if not self._scheduled:
            self._scheduled = True
            loop.call_later(SWEEP_SECONDS, self._sweep, loop)

    def discard(self, item: T) -> None:
        self._pending.pop(item, None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            return
        now = loop.time()
        due = [(item, seconds) for item, (at, seconds) in self._pending.items() if at <= now]
        for item, seconds in due:
            del self._pending[item]
            self._expire(item, seconds)
        self._scheduled = bool(self._pending)
        if self._scheduled:
            loop.call_later(SWEEP_SECONDS, self._sweep, loop)
