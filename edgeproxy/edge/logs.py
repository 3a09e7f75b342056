"""The log hub: recent handler output per site, and live subscriptions to it.

What handler code prints or logs, the runner's error lines and the invocation reports land
here (see `edgeproxy.edge.capture`), for `edgeproxy logs --site S [--tail]` through the
admin API. Each site keeps a bounded ring of its latest entries.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any, Protocol


class Line(Protocol):
    """A message made when it is read (an invocation report, whose line it formats)."""

    def line(self) -> str: ...


# An entry as the ring keeps it: (time, site, request_id, handler, level, message). A tuple
# of strings and a float (or a report, itself such a tuple, as the message) is something the
# garbage collector stops tracking; one is kept per invocation, and objects in their place
# measured at ~2.7 us a request in collections (most of a report's cost).
_Row = tuple[float, str, str, str, str, "str | Line"]


class LogEntry:
    """One line of handler output.

    `level` is a logging level name (`INFO`, `ERROR`, ...) for `logging` calls and the
    runner's errors, `STDOUT`/`STDERR` for `print`, `REPORT` for invocation reports.
    """

    __slots__ = ("_message", "handler", "level", "request_id", "site", "time")

    def __init__(
        self,
        time: float,
        site: str,
        request_id: str,
        handler: str,
        level: str,
        message: str | Line,
    ) -> None:
        self.time = time
        self.site = site
        self.request_id = request_id
        self.handler = handler
        self.level = level
        self._message = message

    @property
    def message(self) -> str:
        message = self._message
        if not isinstance(message, str):
            message = self._message = message.line()
        return message

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "site": self.site,
            "request_id": self.request_id,
            "handler": self.handler,
            "level": self.level,
            "message": self.message,
        }


class Subscription:
    """Entries of one site as they are appended: `async for entry in subscription`.

    Ends when closed (`close()`, or leaving `async with`). A subscriber that falls more
    than `maxsize` entries behind loses the newest ones; `dropped` counts them.
    """

    def __init__(self, hub: LogHub, site: str, maxsize: int) -> None:
        self._hub = hub
        self.site = site
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._queue: asyncio.Queue[LogEntry | None] = asyncio.Queue(maxsize + 1)
        self._maxsize = maxsize
        self.closed = False
        self.dropped = 0

    def deliver(self, entry: LogEntry | None) -> None:
        if threading.get_ident() == self._thread:
            self._put(entry)
        else:
            # print() from a worker thread (asyncio.to_thread keeps the invocation context).
            self._loop.call_soon_threadsafe(self._put, entry)

    def _put(self, entry: LogEntry | None) -> None:
        if entry is not None and self._queue.qsize() >= self._maxsize:
            self.dropped += 1
            return
        self._queue.put_nowait(entry)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub.unsubscribe(self)
            self.deliver(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> LogEntry:
        if self.closed and self._queue.empty():
            raise StopAsyncIteration
        entry = await self._queue.get()
        if entry is None:
            raise StopAsyncIteration
        return entry

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class LogHub:
    """A bounded ring buffer of entries per site, with live subscribers."""

    def __init__(
        self, capacity: int = 1000, subscriber_backlog: int = 1000, max_message: int = 16 * 1024
    ) -> None:
        self.capacity = capacity
        self.subscriber_backlog = subscriber_backlog
        self.max_message = max_message
        self._entries: dict[str, deque[_Row]] = {}
        self._subscribers: dict[str, list[Subscription]] = {}

    def append(
        self, site: str, request_id: str, handler: str, level: str, message: str | Line
    ) -> None:
        """Record one entry and hand it to the site's subscribers. Any thread may call it.
        A `Line` (an invocation report) is formatted when read; it is short, not truncated."""
        if isinstance(message, str) and len(message) > self.max_message:
            message = f"{message[: self.max_message]}... ({len(message)} characters, truncated)"
        row: _Row = (time.time(), site, request_id, handler, level, message)
        ring = self._entries.get(site)
        if ring is None:
            ring = self._entries.setdefault(site, deque(maxlen=self.capacity))
        ring.append(row)
        subscribers = self._subscribers.get(site)
        if subscribers:
            entry = LogEntry(*row)
            for subscriber in subscribers:
                subscriber.deliver(entry)

    def entries(self, site: str, since: float | None = None) -> list[LogEntry]:
        """The site's retained entries, oldest first; only those after `since` if given."""
        rows = list(self._entries.get(site, ()))
        return [LogEntry(*row) for row in rows if since is None or row[0] > since]

    def sites(self) -> list[str]:
        return sorted(self._entries)

    def subscribe(self, site: str) -> Subscription:
        """A live feed of the site's new entries; call from the event loop."""
        subscription = Subscription(self, site, self.subscriber_backlog)
        self._subscribers[site] = [*self._subscribers.get(site, ()), subscription]
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        remaining = [
            s for s in self._subscribers.get(subscription.site, ()) if s is not subscription
        ]
        if remaining:
            self._subscribers[subscription.site] = remaining
        else:
            self._subscribers.pop(subscription.site, None)
