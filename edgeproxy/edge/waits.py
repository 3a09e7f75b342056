"""`ctx.wait_until()` work, after the response: tracked until it ends (or its wall-time
limit cancels it), drained at shutdown, and the invocation's report written once it is over
(its `wait_until_ms` is how long it ran on)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from edgeproxy.edge.context import Invocation

logger = logging.getLogger("edgeproxy.edge")

# Writes an invocation's report: (invocation, site, status, duration, wait_until seconds).
WriteReport = Callable[[Invocation, "str | None", int, float, float], None]


class WaitUntilWork:
    """The `wait_until` work of every invocation of one runner."""

    def __init__(self, write_report: WriteReport) -> None:
        self._write_report = write_report
        self._waits: set[asyncio.Future[Any]] = set()
        self._finishers: set[asyncio.Task[None]] = set()

    def report_after(
        self,
        invocation: Invocation,
        site: str | None,
        status: int,
        duration: float,
        wall_time: float,
    ) -> None:
        """Write the report of an invocation that has `wait_until` work once that work is
        over; it may run `wall_time` seconds more."""
        for wait in invocation.waits:
            if not wait.done():
                self._waits.add(wait)
                wait.add_done_callback(self._waits.discard)
        report = functools.partial(self._write_report, invocation, site, status, duration)
        if all(wait.done() for wait in invocation.waits):
            report(0.0)
            return
        finisher = asyncio.create_task(self._after_waits(invocation, report, wall_time))
        self._finishers.add(finisher)
        finisher.add_done_callback(self._finishers.discard)

    @staticmethod
    async def _after_waits(
        invocation: Invocation, report: Callable[[float], None], wall_time: float
    ) -> None:
        ended = time.perf_counter()
        try:
            async with asyncio.timeout(wall_time):
                while pending := [wait for wait in invocation.waits if not wait.done()]:
                    await asyncio.wait(pending)
        except TimeoutError:
            message = (
                f"wait_until work of {invocation.handler} ran past the wall-time limit of "
                f"{wall_time:g} s and was cancelled (request {invocation.request_id})"
            )
            logger.error("%s", message)
            invocation.output.emit(invocation.handler, "ERROR", message)
        finally:
            # Past the limit, or cancelled by drain(): work started late is stopped too.
            for wait in invocation.waits:
                wait.cancel()
            report(time.perf_counter() - ended)

    @property
    def pending(self) -> int:
        """`wait_until` tasks (and reports waiting on them) still running."""
        return len(self._waits) + len(self._finishers)

    # A timeout parameter, not asyncio.timeout(): the work left must be cancelled and counted.
    async def drain(self, timeout: float) -> int:  # noqa: ASYNC109
        """Wait up to `timeout` seconds for `wait_until` work; cancel what is left (at
        shutdown). Returns how many tasks had to be cancelled."""
        waits = set(self._waits)
        pending: set[asyncio.Future[Any]] = {*waits, *self._finishers}
        if not pending:
            return 0
        _, left = await asyncio.wait(pending, timeout=timeout)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=1.0)
        if self._finishers:
            # Reports of cancelled work are written by their finishers; let them run.
            await asyncio.wait(set(self._finishers), timeout=1.0)
        return len(left & waits)
