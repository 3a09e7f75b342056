"""A handler invocation's wall-time limit, kept with the hot path's other deadlines
(`edgeproxy.deadlines`) rather than by `asyncio.timeout`: that costs a libuv timer per
invocation plus three getpid() system calls on Python 3.11, ~7% of a trivial function's
request."""

from __future__ import annotations

import asyncio
from typing import Any


class WallTime:
    """The limit of one invocation's task; its expiry cancels the task."""

    __slots__ = ("cancelling", "expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        # The task's pending cancellations when the limit was set: a cancellation of ours
        # is told from someone else's as asyncio.timeout does (Task.uncancel).
        self.cancelling = task.cancelling()
        self.expired = False

    def expire(self, seconds: float) -> None:
        self.expired = True
        self.task.cancel()

    def ours(self) -> bool:
        """Call on CancelledError: whether the limit caused it (then it is consumed)."""
        return self.expired and self.task.uncancel() <= self.cancelling
