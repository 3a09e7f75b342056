"""The loop watchdog: notices a handler blocking the event loop, and names it.

A handler that computes for long, or calls blocking I/O (`time.sleep`, `requests.get`),
stops every other request of the process. A heartbeat task stamps the time every
`interval`; a daemon thread checks the stamp. When the loop is late by more than a
handler's `cpu_time` limit, the thread takes the loop thread's stack with
`sys._current_frames()` — the loop is stuck, so the stack is the only witness — and names
the handler: the outermost frame that is a handler entry point, else the innermost frame
in a handler module's file. It logs one warning per blocking episode (with the stack) and
counts it in `HandlerStats.loop_blocked`. Blocking outside handler code is not reported.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from types import FrameType

from edgeproxy.edge.metrics import HandlerStats
from edgeproxy.edge.modules import entry_point, handler_file

logger = logging.getLogger("edgeproxy.edge")


def blocking_handler(frame: FrameType | None) -> str | None:
    """The handler label a stack (innermost `frame` first) is running, or None."""
    entry = None
    innermost_file = None
    while frame is not None:
        label = entry_point(frame.f_code)
        if label is not None:
            entry = label  # keep walking: the outermost entry is the handler invoked
        elif innermost_file is None and entry is None:
            file = handler_file(frame.f_code.co_filename)
            if file is not None:
                innermost_file = f"{file}:{frame.f_code.co_name}"
        frame = frame.f_back
    return entry or innermost_file


class LoopWatchdog:
    """Heartbeat in the loop, check in a thread. `await start()` from the loop to watch;
    `await stop()` ends both (the thread is joined for at most `join_timeout`).

    `limits` maps handler labels to their `cpu_time` (the runner fills it); others get
    `default_limit`.
    """

    def __init__(
        self,
        stats: HandlerStats | None = None,
        *,
        default_limit: float = 0.05,
        interval: float = 0.01,
        join_timeout: float = 1.0,
    ) -> None:
        self.stats = stats
        self.default_limit = default_limit
        self.interval = interval
        self.join_timeout = join_timeout
        self.limits: dict[str, float] = {}
        self.detected: list[str] = []  # handlers reported, newest last (bounded)
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._loop_thread = 0

    @property
    def running(self) -> bool:
        return self._thread is not None

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._stop.clear()
        self._heartbeat = asyncio.create_task(self._tick())
        self._thread = threading.Thread(target=self._watch, name="edge-loop-watchdog", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        self._thread.join(self.join_timeout)
        self._thread = None

    async def _tick(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(self.interval)

    def _watch(self) -> None:
        reported = None  # the heartbeat stamp of the episode already reported
        while not self._stop.wait(self.interval):
            beat = self._beat
            late = time.monotonic() - beat - self.interval
            if late <= self.interval or beat == reported:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            handler = blocking_handler(frame)
            if handler is None or late <= self.limits.get(handler, self.default_limit):
                continue
            reported = beat
            self._report(handler, late, frame)

    def _report(self, handler: str, late: float, frame: FrameType | None) -> None:
        limit = self.limits.get(handler, self.default_limit)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
        logger.warning(
            "edge handler %s has blocked the event loop for over %.0f ms (cpu_time limit "
            "%.0f ms); every other request waits. Stack:\n%s",
            handler,
            late * 1000,
            limit * 1000,
            stack,
        )
        self.detected = [*self.detected[-99:], handler]
        if self.stats is not None:
            self.stats.loop_blocked(handler)
