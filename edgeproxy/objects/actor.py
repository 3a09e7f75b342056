"""The live instance of one object, and the delivery of events to it.

An actor is created on the first event for its object. It loads the object's whole
storage from the shard (on the shard's thread, so after every write already queued),
runs the class's constructor, then delivers events:

    admit ─▶ wait for activation ─▶ input gate open? ─▶ run the event
          ─▶ output gate: wait until every write made so far is durable ─▶ answer

An actor ends in one of two ways: it is evicted (idle, nothing unwritten), or it is reset
(a write failed to commit, the constructor or a block_concurrency_while callback raised).
Either way the registry forgets it at once, so the next event builds a fresh instance
from storage, and the dropped instance's storage refuses further use.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from edgeproxy.exceptions import ObjectError, ObjectResetError
from edgeproxy.objects import rpc, schema
from edgeproxy.objects.api import AlarmInfo, DurableObject, DurableObjectState
from edgeproxy.objects.gates import InputGate
from edgeproxy.objects.ids import ObjectId
from edgeproxy.objects.schema import DeadLetterRow, WriteBatch
from edgeproxy.objects.shards import Shard
from edgeproxy.objects.storage import DurableObjectStorage

T = TypeVar("T")


class ActorListener(Protocol):
    """What an actor tells the system: it ended, or its alarm changed durably."""

    def actor_closed(self, actor: Actor) -> None: ...

    def alarm_committed(self, actor: Actor, at: float | None) -> None: ...


class Actor:
    """One object's live instance: activation, gates, events, alarms."""

    def __init__(
        self,
        *,
        binding: str,
        scope: str,
        cls: type[DurableObject],
        env: Any,
        object_id: ObjectId,
        shard: Shard,
        listener: ActorListener,
    ) -> None:
        self.binding = binding
        self.scope = scope
        self.cls = cls
        self.env = env
        self.object_id = object_id
        self.shard = shard
        self.label = f"{binding}/{object_id.hex[:12]}…" + (f" ({scope})" if scope else "")
        self.gate = InputGate(self.label)
        self.storage: DurableObjectStorage | None = None
        self.instance: DurableObject | None = None
        self.closed: ObjectError | None = None
        self.last_active = time.monotonic()
        self._listener = listener
        self._activation: asyncio.Task[None] | None = None
        self._events = 0
        self._blockers: set[asyncio.Task[Any]] = set()

    @property
    def key(self) -> tuple[str, str, bytes]:
        return (self.binding, self.scope, self.object_id.raw)

    # -- events ----------------------------------------------------------------------------

    async def deliver(self, event: Callable[[DurableObject], Awaitable[T]]) -> T:
        """Run `event` on the instance behind both gates; its outcome leaves after the
        writes made before it are durable."""
        self._events += 1  # admitted synchronously: eviction never drops an admitted event
        try:
            if self.closed is not None:
                raise self.closed
            await self._activated()
            await self.gate.wait_open()
            assert self.instance is not None
            assert self.storage is not None
            storage = self.storage
            try:
                result = await event(self.instance)
            except Exception:
                await storage.barrier(storage.write_count)
                raise
            await storage.barrier(storage.write_count)
            return result
        finally:
            self._events -= 1
            self.last_active = time.monotonic()

    async def run_alarm(self, info: AlarmInfo) -> None:
        """Deliver the alarm; on success clear it, unless the handler set a new one."""

        async def event(instance: DurableObject) -> None:
            assert self.storage is not None
            storage = self.storage
            version = storage.alarm_version
            await self._alarm_handler(instance)(info)
            storage.consume_alarm(version)

        await self.deliver(event)

    async def dead_letter(self, letter: DeadLetterRow) -> None:
        """Record an alarm that exhausted its retries, and clear it (in one commit)."""

        async def event(instance: DurableObject) -> None:
            assert self.storage is not None
            self.storage.dead_letter(letter)

        await self.deliver(event)

    async def replay(self, letter: DeadLetterRow) -> None:
        """Run a dead-lettered alarm once more; forget the letter if it succeeds."""

        async def event(instance: DurableObject) -> None:
            assert self.storage is not None
            await self._alarm_handler(instance)(AlarmInfo(retry_count=letter.retries))
            self.storage.resolve_letter(letter.scheduled)

        await self.deliver(event)

    def _alarm_handler(self, instance: DurableObject) -> Callable[[AlarmInfo], Awaitable[None]]:
        handler = getattr(instance, "alarm", None)
        if handler is None:
            raise ObjectError(f"object {self.label} ({self.cls.__name__}) has no alarm() handler")

        async def call(info: AlarmInfo) -> None:
            try:
                await handler(info)
            except Exception as exc:
                raise rpc.remote_error(exc) from exc

        return call

    # -- gates -----------------------------------------------------------------------------

    def block_concurrency_while(self, awaitable: Awaitable[T]) -> asyncio.Task[T]:
        self.gate.close()
        context = contextvars.copy_context()
        self.gate.mark_closed_by(context)
        task = asyncio.get_running_loop().create_task(_run(awaitable), context=context)
        self._blockers.add(task)
        task.add_done_callback(self._unblocked)
        return task

    def _unblocked(self, task: asyncio.Task[Any]) -> None:
        self._blockers.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            reset = ObjectResetError(
                f"object {self.label} was reset: its block_concurrency_while() callback "
                f"raised {type(error).__name__}: {error}"
            )
            reset.__cause__ = error
            self.reset(reset)
        self.gate.open()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether dropping it now could lose an event or a write."""
        if self._events or self._blockers:
            return True
        if self._activation is not None and not self._activation.done():
            return True
        return self.storage is not None and not self.storage.idle

    def reset(self, error: ObjectError) -> None:
        """Drop this instance: everything waiting on it, and any later use, gets `error`."""
        if self.closed is not None:
            return
        self.closed = error
        self.gate.fail(error)
        if self.storage is not None:
            self.storage.close(error)
        self._listener.actor_closed(self)

    def evict(self) -> None:
        self.reset(ObjectError(f"object {self.label} was evicted; this instance is not live"))

    async def _activated(self) -> None:
        if self._activation is None:
            # Its own task: a first caller that is cancelled must not cancel the activation
            # that later events wait for too.
            self._activation = asyncio.get_running_loop().create_task(self._activate())
            self._activation.add_done_callback(self._activation_done)
        await asyncio.shield(self._activation)

    async def _activate(self) -> None:
        binding, scope, hex_id = self.binding, self.scope, self.object_id.hex
        stored = await self.shard.call(lambda conn: schema.load(conn, binding, scope, hex_id))
        if self.closed is not None:
            raise self.closed
        name = self.object_id.name
        identity = WriteBatch(
            binding, scope, self.object_id.raw, name=name if stored.name is None else None
        )
        self.object_id = self.object_id.with_name(stored.name or name)
        self.storage = DurableObjectStorage(
            self,
            self.gate,
            stored,
            identity,
            label=self.label,
            alarm_handler=callable(getattr(self.cls, "alarm", None)),
        )
        state = DurableObjectState(self.object_id, self.storage, self)
        try:
            self.instance = self.cls(state, self.env)
        except Exception as exc:
            raise rpc.remote_error(exc) from exc

    def _activation_done(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if task.cancelled():
            self.reset(ObjectError(f"object {self.label}: activation was cancelled"))
        elif error is not None:
            # Forget this actor so the next event tries again; waiters see `error` itself.
            self.reset(ObjectError(f"object {self.label} failed to start: {error}"))

    # -- StorageHost -----------------------------------------------------------------------

    def submit(self, batch: WriteBatch) -> asyncio.Future[None]:
        return self.shard.submit(batch)

    def committed(self, batch: WriteBatch) -> None:
        if batch.alarm_changed:
            self._listener.alarm_committed(self, batch.alarm)

    def failed(self, error: ObjectError) -> None:
        self.reset(error)


async def _run(awaitable: Awaitable[T]) -> T:
    return await awaitable
