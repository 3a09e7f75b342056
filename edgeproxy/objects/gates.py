"""The input gate of one object: when it is closed, no new event is delivered to it.

Storage operations on a live object never wait (its data is in memory), so events cannot
interleave across them at all; the gate is closed explicitly, by
`block_concurrency_while()` and by `storage.transaction()`, for work that must not see
other events even though it awaits.

Whoever closes a gate marks it in a context variable; an event sent to the object from
that context (an object awaiting an RPC to itself inside its own transaction) could never
be delivered, so it fails with ObjectDeadlockError instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from edgeproxy.exceptions import ObjectDeadlockError

_closed_here: contextvars.ContextVar[tuple[InputGate, ...]] = contextvars.ContextVar(
    "edgeproxy_closed_gates", default=()
)


class InputGate:
    """Counts who holds the gate closed and wakes waiting events when it opens."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._closers = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._failure: BaseException | None = None

    @property
    def is_open(self) -> bool:
        return self._closers == 0

    def close(self) -> None:
        self._closers += 1

    def open(self) -> None:
        self._closers -= 1
        if self._closers == 0:
            self._wake()

    def mark_closed_by(self, context: contextvars.Context) -> None:
        """Record in `context` that code running there holds this gate closed."""
        context.run(_closed_here.set, (*_closed_here.get(), self))

    @contextmanager
    def closed(self) -> Iterator[None]:
        """Hold the gate closed for the body, which runs in the current context."""
        self.close()
        token = _closed_here.set((*_closed_here.get(), self))
        try:
            yield
        finally:
            _closed_here.reset(token)
            self.open()

    def fail(self, error: BaseException) -> None:
        """The object was reset: every waiting and future event gets `error`."""
        self._failure = error
        self._wake()

    async def wait_open(self) -> None:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closers == 0:
                return
            if self in _closed_here.get():
                raise ObjectDeadlockError(
                    f"object {self.label} sent an event to itself while holding its own input "
                    "gate closed (in block_concurrency_while or a transaction); it would wait "
                    "forever"
                )
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _wake(self) -> None:
        # Waiters re-check the gate (and `_failure`) themselves when they run.
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
