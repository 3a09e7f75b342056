"""Wall-time limits of handler invocations, checked by one periodic sweep.

`asyncio.timeout` costs a libuv timer per invocation plus, on Python 3.11, three
`asyncio.get_running_loop()` calls (each a getpid() system call): measured at ~7% of a
trivial function's request. A limit is seconds long (30 by default), so a sweep every
50 ms is precise enough.
"""

from __future__ import annotations

import asyncio

# How often overdue invocations are looked for: the limits' precision.
SWEEP_SECONDS = 0.05


class Deadline:
    """One invocation's limit; `expired` once the sweep has cancelled its task for it."""

    __slots__ = ("at", "cancelling", "expired", "task")

    def __init__(self, task: asyncio.Task[object], at: float) -> None:
        self.task = task
        self.at = at
        # The task's pending cancellations when the limit was set: a cancellation of ours
        # is told from someone else's as asyncio.timeout does (Task.uncancel).
        self.cancelling = task.cancelling()
        self.expired = False

    def ours(self) -> bool:
        """Call on CancelledError: whether the limit caused it (then it is consumed)."""
        return self.expired and self.task.uncancel() <= self.cancelling


class WallTimeLimits:
    """The pending deadlines of one event loop."""

    def __init__(self) -> None:
        self._pending: dict[Deadline, None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False

    def start(self, task: asyncio.Task[object], seconds: float) -> Deadline:
        loop = task.get_loop()
        if loop is not self._loop:
            # A new loop (tests run several): the old loop's sweep, if any, stops itself.
            self._loop, self._scheduled = loop, False
            self._pending.clear()
        deadline = Deadline(task, loop.time() + seconds)
        self._pending[deadline] = None
        if not self._scheduled:
            self._scheduled = True
            loop.call_later(SWEEP_SECONDS, self._sweep, loop)
        return deadline

    def end(self, deadline: Deadline) -> None:
        self._pending.pop(deadline, None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            return
        now = loop.time()
        for deadline in [deadline for deadline in self._pending if deadline.at <= now]:
            del self._pending[deadline]
            deadline.expired = True
            deadline.task.cancel()
        self._scheduled = bool(self._pending)
        if self._scheduled:
            loop.call_later(SWEEP_SECONDS, self._sweep, loop)
