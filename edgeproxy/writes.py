"""Socket writes gathered over one event-loop iteration and made together at its end.

Writing to a loopback socket whose reader sleeps in epoll wakes that reader, and on a VM
a wakeup of a process on another CPU costs an inter-processor interrupt: measured at about
10 us, a fifth of a proxied request's whole cost. The requests and responses one
iteration produces are written back to back at its end instead, so the first write wakes
the peer and the others find it awake. Nothing waits longer than the iteration it was
written in; writes to one transport keep their order.
"""

from __future__ import annotations

import asyncio
import weakref


class WriteBatch:
    """The writes of one event loop, flushed by a callback at the end of the iteration."""

    __slots__ = ("_loop", "_pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: the batch is the value of a weak mapping keyed by the loop. Kept at all
        # because asyncio.get_running_loop() makes a getpid() system call before 3.12.
        self._loop = weakref.ref(loop)
        self._pending: list[tuple[asyncio.WriteTransport, bytes]] = []

    def write(self, transport: asyncio.WriteTransport, data: bytes) -> None:
        if not self._pending:
            loop = self._loop()
            if loop is None:
                return
            loop.call_soon(self.flush)
        self._pending.append((transport, data))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        index, count = 0, len(pending)
        while index < count:
            transport, data = pending[index]
            index += 1
            # A response's head and body, queued one after the other: one send, not two.
            while index < count and pending[index][0] is transport:
                data += pending[index][1]
                index += 1
            if not transport.is_closing():
                transport.write(data)


# Weak: the loops of finished asyncio.run() calls (tests) take their batches with them.
_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WriteBatch] = (
    weakref.WeakKeyDictionary()
)


def write_batch(loop: asyncio.AbstractEventLoop) -> WriteBatch:
    """The batch of `loop` (one per loop; a process normally runs one)."""
    batch = _batches.get(loop)
    if batch is None:
        batch = _batches[loop] = WriteBatch(loop)
    return batch
