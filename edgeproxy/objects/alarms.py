"""The alarm scheduler: fires each object's one alarm at or after its time, at least once.

Alarms live in the shards (so they survive a restart: the system loads them at start);
the scheduler keeps them in a heap and learns of changes only once they are committed.
A handler that raises is retried after `retry_base * 2**n` seconds (2, 4, 8, ... by
default) with `info.retry_count = n + 1`, at most `max_retries` times; then the alarm goes
to its namespace's dead-letter list. Retry counts are kept in memory: after a restart a
still-failing alarm starts counting again from its stored time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from edgeproxy.objects.api import AlarmInfo
from edgeproxy.objects.schema import DeadLetterRow

logger = logging.getLogger("edgeproxy.objects")

AlarmKey = tuple[str, str, str]  # binding, scope, object ID hex
FireAlarm = Callable[[AlarmKey, AlarmInfo], Awaitable[None]]
DeadLetter = Callable[[AlarmKey, DeadLetterRow], Awaitable[None]]


@dataclass(order=True)
class _Entry:
    at: float
    order: int
    key: AlarmKey = field(compare=False)
    scheduled: float = field(compare=False)  # the stored time; retries keep it
    retries: int = field(compare=False, default=0)


class AlarmScheduler:
    """Runs due alarms through `fire`; hands exhausted ones to `dead_letter`."""

    def __init__(
        self,
        fire: FireAlarm,
        dead_letter: DeadLetter,
        *,
        clock: Callable[[], float],
        retry_base: float,
        max_retries: int,
    ) -> None:
        self._fire = fire
        self._dead_letter = dead_letter
        self._clock = clock
        self._retry_base = retry_base
        self._max_retries = max_retries
        self._entries: dict[AlarmKey, _Entry] = {}
        self._heap: list[_Entry] = []
        self._order = 0
        self._generation: dict[AlarmKey, int] = {}
        self._running: dict[AlarmKey, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None

    def scheduled(self) -> dict[AlarmKey, float]:
        """Every alarm waiting to fire, with when it fires next."""
        return {key: entry.at for key, entry in self._entries.items()}

    def set(self, key: AlarmKey, at: float | None) -> None:
        """A committed alarm change: `at` epoch seconds, or None when it was cleared."""
        self._generation[key] = self._generation.get(key, 0) + 1
        if at is None:
            self._entries.pop(key, None)
        else:
            self._push(_Entry(at, 0, key, at))

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, grace: float) -> None:
        """Stop firing; wait up to `grace` seconds for running handlers, then cancel them."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        running = list(self._running.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def _push(self, entry: _Entry) -> None:
        self._order += 1
        entry.order = self._order
        self._entries[entry.key] = entry
        heapq.heappush(self._heap, entry)
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            now = self._clock()
            while self._heap and self._heap[0].at <= now:
                entry = heapq.heappop(self._heap)
                if self._entries.get(entry.key) is not entry:
                    continue  # replaced or cleared since it was pushed
                if entry.key in self._running:
                    continue  # re-pushed when the running handler finishes
                del self._entries[entry.key]
                task = asyncio.get_running_loop().create_task(self._attempt(entry))
                self._running[entry.key] = task
            delay = self._heap[0].at - now if self._heap else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _attempt(self, entry: _Entry) -> None:
        key = entry.key
        generation = self._generation.get(key, 0)
        try:
            await self._fire(key, AlarmInfo(retry_count=entry.retries))
        except Exception as exc:
            await self._failed(entry, generation, exc)
        finally:
            del self._running[key]
            waiting = self._entries.get(key)
            if waiting is not None:
                heapq.heappush(self._heap, waiting)
                self._wake.set()

    async def _failed(self, entry: _Entry, generation: int, error: Exception) -> None:
        key = entry.key
        if self._generation.get(key, 0) != generation:
            return  # the handler set or cleared the alarm before failing: that one stands
        logger.warning(
            "alarm of %s/%s failed (attempt %d of %d): %s: %s",
            key[0],
            key[2][:12],
            entry.retries + 1,
            self._max_retries + 1,
            type(error).__name__,
            error,
        )
        if entry.retries < self._max_retries:
            delay = self._retry_base * 2**entry.retries
            retry = _Entry(self._clock() + delay, 0, key, entry.scheduled, entry.retries + 1)
            self._push(retry)
            return
        letter = DeadLetterRow(
            scheduled=entry.scheduled,
            failed_at=self._clock(),
            retries=entry.retries,
            error=f"{type(error).__name__}: {error}",
        )
        try:
            await self._dead_letter(key, letter)
        except Exception:
            # The alarm is still stored, so it fires again after a restart.
            logger.exception("could not dead-letter the alarm of %s/%s", key[0], key[2][:12])
