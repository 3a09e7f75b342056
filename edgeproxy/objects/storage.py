"""`ctx.storage`: one object's transactional key-value storage, as Cloudflare shapes it.

A live object holds all of its keys in memory (loaded when it activates), so reads never
wait and writes apply at once; this is what makes events unable to interleave across
storage operations. Objects are meant to be small: their whole storage is held while they
are live, and dropped when they go idle.

Writes also go to a write buffer. Writes made without an await in between are flushed
together as one batch and committed in one transaction; while one batch is being
committed the next one collects (one batch in flight per object, shared fsyncs across
objects in the shard). `sync()` and the output gate wait for every write made so far. If
a commit fails, the object is reset: this storage refuses further use, and every output
waiting for durability fails with ObjectResetError.

Values are JSON (see `values`); keys are ordered by code point, which is UTF-8 byte order.
Alarm times are seconds since the epoch (float), not Cloudflare's milliseconds.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol, overload

from edgeproxy.exceptions import ObjectError, ObjectResetError, ObjectValueError
from edgeproxy.objects import values
from edgeproxy.objects.gates import InputGate
from edgeproxy.objects.schema import DeadLetterRow, StoredObject, WriteBatch

_MISSING: Any = object()


class StorageHost(Protocol):
    """What storage needs from its actor: a shard to commit to, and news of the outcome."""

    def submit(self, batch: WriteBatch) -> asyncio.Future[None]: ...

    def committed(self, batch: WriteBatch) -> None: ...

    def failed(self, error: ObjectError) -> None: ...


class DurableObjectStorage:
    """The storage of one durable object; every method is async, as in Cloudflare's API."""

    def __init__(
        self,
        host: StorageHost,
        gate: InputGate,
        stored: StoredObject,
        identity: WriteBatch,
        *,
        label: str,
        alarm_handler: bool,
    ) -> None:
        self._host = host
        self._gate = gate
        self._label = label
        self._alarm_handler = alarm_handler
        self._identity = identity  # an empty batch naming the object, copied per flush
        self._rows = dict(stored.rows)
        self._keys = sorted(self._rows)
        self._alarm = stored.alarm
        self._alarm_version = 0
        self._pending = self._new_batch()
        self._seq = 0  # writes made so far
        self._durable = 0  # writes known committed (or rolled back)
        self._in_flight = False
        self._flush_scheduled = False
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._broken: ObjectError | None = None
        self._tx_lock = asyncio.Lock()
        self._tx_owner: asyncio.Task[Any] | None = None
        self._tx_depth = 0

    # -- reads -----------------------------------------------------------------------------

    @overload
    async def get(self, key: str) -> Any: ...

    @overload
    async def get(self, key: list[str] | tuple[str, ...]) -> dict[str, Any]: ...

    async def get(self, key: str | list[str] | tuple[str, ...]) -> Any:
        """The value of `key` (None if absent); for a list of keys, a dict of those found."""
        self._check_usable()
        if isinstance(key, str):
            text = self._rows.get(values.check_key(key))
            return None if text is None else values.decode(text)
        keys = self._key_list(key, "get")
        return {k: values.decode(self._rows[k]) for k in sorted(set(keys)) if k in self._rows}

    async def list(
        self,
        *,
        start: str | None = None,
        start_after: str | None = None,
        end: str | None = None,
        prefix: str | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """Keys and values in key order: from `start` (or after `start_after`) to `end`
        (exclusive), only those starting with `prefix`; descending if `reverse`; at most
        `limit` of them (counted from the end when reversed)."""
        self._check_usable()
        if start is not None and start_after is not None:
            raise ObjectValueError("list() takes start or start_after, not both")
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ObjectValueError(f"list() limit must be a positive int, got {limit!r}")
        keys = self._keys
        low, high = 0, len(keys)
        if start is not None:
            low = bisect.bisect_left(keys, start)
        if start_after is not None:
            low = bisect.bisect_right(keys, start_after)
        if end is not None:
            high = bisect.bisect_left(keys, end)
        if prefix:
            low = max(low, bisect.bisect_left(keys, prefix))
            upper = values.prefix_end(prefix)
            if upper is not None:
                high = min(high, bisect.bisect_left(keys, upper))
        selected = keys[low:high] if low < high else []
        if reverse:
            selected = selected[::-1]
        if limit is not None:
            selected = selected[:limit]
        return {key: values.decode(self._rows[key]) for key in selected}

    async def get_alarm(self) -> float | None:
        """When the alarm is set for, in seconds since the epoch; None if no alarm is set."""
        self._check_usable()
        return self._alarm

    # -- writes ----------------------------------------------------------------------------

    @overload
    async def put(self, key: str, value: Any) -> None: ...

    @overload
    async def put(self, key: Mapping[str, Any]) -> None: ...

    async def put(self, key: str | Mapping[str, Any], value: Any = _MISSING) -> None:
        """Store `value` under `key`, or every entry of a mapping (at most 128) at once."""
        self._check_usable()
        if isinstance(key, str):
            if value is _MISSING:
                raise ObjectValueError("put(key, value) needs a value; put(mapping) takes none")
            entries = {values.check_key(key): values.encode_value(key, value)}
        elif isinstance(key, Mapping):
            if value is not _MISSING:
                raise ObjectValueError("put(mapping) takes no separate value")
            values.check_batch(len(key), "put")
            entries = {
                values.check_key(name): values.encode_value(name, item)
                for name, item in key.items()
            }
        else:
            raise ObjectValueError(f"put() takes a str key or a mapping, got {type(key).__name__}")
        for name, text in entries.items():
            if name not in self._rows:
                bisect.insort(self._keys, name)
            self._rows[name] = text
            self._pending.writes[name] = text
        self._wrote()

    @overload
    async def delete(self, key: str) -> bool: ...

    @overload
    async def delete(self, key: builtins.list[str] | tuple[str, ...]) -> int: ...

    async def delete(self, key: str | builtins.list[str] | tuple[str, ...]) -> bool | int:
        """Delete `key` (True if it existed), or a list of keys (how many existed)."""
        self._check_usable()
        keys = [values.check_key(key)] if isinstance(key, str) else self._key_list(key, "delete")
        deleted = 0
        for name in dict.fromkeys(keys):
            if name in self._rows:
                del self._rows[name]
                del self._keys[bisect.bisect_left(self._keys, name)]
                self._pending.writes[name] = None
                deleted += 1
        if deleted:
            self._wrote()
        return bool(deleted) if isinstance(key, str) else deleted

    async def delete_all(self) -> None:
        """Delete every key (the alarm stays; delete it with delete_alarm())."""
        self._check_usable()
        self._rows.clear()
        self._keys.clear()
        self._pending.cleared = True
        self._pending.writes.clear()
        self._wrote()

    async def set_alarm(self, when: datetime | float) -> None:
        """Set the object's one alarm to `when`: an aware datetime or epoch seconds."""
        self._check_usable()
        if not self._alarm_handler:
            raise ObjectError(f"object {self._label} has no alarm() handler; set_alarm() needs one")
        self._set_alarm(values.alarm_time(when))

    async def delete_alarm(self) -> None:
        """Cancel the alarm, if one is set."""
        self._check_usable()
        self._set_alarm(None)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[DurableObjectStorage]:
        """Run the body as one atomic unit: its writes commit together, or, if it raises,
        the in-memory view and the write buffer roll back and the exception propagates.

        The input gate stays closed for the body, so no other event starts meanwhile;
        transactions of one object run one at a time (nesting in one task is allowed).
        """
        self._check_usable()
        task = asyncio.current_task()
        nested = task is not None and self._tx_owner is task
        if not nested:
            await self._tx_lock.acquire()
            self._tx_owner = task
        snapshot = (dict(self._rows), list(self._keys), _copy(self._pending), self._alarm)
        self._tx_depth += 1
        try:
            with self._gate.closed():
                yield self
        except BaseException:
            self._rows, self._keys, self._pending, self._alarm = snapshot
            raise
        finally:
            self._tx_depth -= 1
            if not nested:
                self._tx_owner = None
                self._tx_lock.release()
            self._schedule_flush()

    async def sync(self) -> None:
        """Resolve once every write made so far is durable."""
        await self.barrier(self._seq)

    # -- for the actor and the alarm scheduler ---------------------------------------------

    @property
    def write_count(self) -> int:
        return self._seq

    @property
    def idle(self) -> bool:
        """Nothing buffered, nothing being committed, no transaction open."""
        return self._durable == self._seq and not self._in_flight and not self._tx_depth

    @property
    def alarm_version(self) -> int:
        return self._alarm_version

    async def barrier(self, seq: int) -> None:
        """The output gate: wait until the first `seq` writes are durable."""
        self._check_usable()
        if self._durable >= seq:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, waiter))
        self._schedule_flush()
        await waiter

    def consume_alarm(self, version: int) -> None:
        """The alarm ran: clear it unless the handler set or deleted it meanwhile."""
        if version == self._alarm_version and self._alarm is not None:
            self._set_alarm(None)

    def dead_letter(self, letter: DeadLetterRow) -> None:
        """The alarm exhausted its retries: record it and clear it, in one batch (unless
        it was set to another time meanwhile)."""
        self._pending.dead_letters.append(letter)
        if self._alarm == letter.scheduled:
            self._set_alarm(None)
        self._wrote()

    def resolve_letter(self, scheduled: float) -> None:
        self._pending.resolved_letters.append(scheduled)
        self._wrote()

    def close(self, error: ObjectError) -> None:
        """Refuse every further use with `error` (the instance is no longer live)."""
        self._break(error, notify=False)

    # -- internals -------------------------------------------------------------------------

    def _key_list(self, keys: Sequence[str], operation: str) -> builtins.list[str]:
        if not isinstance(keys, list | tuple):
            raise ObjectValueError(
                f"{operation}() takes a str key or a list of them, got {type(keys).__name__}"
            )
        values.check_batch(len(keys), operation)
        return [values.check_key(key) for key in keys]

    def _set_alarm(self, when: float | None) -> None:
        self._alarm = when
        self._alarm_version += 1
        self._pending.alarm_changed = True
        self._pending.alarm = when
        self._wrote()

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise self._broken

    def _new_batch(self) -> WriteBatch:
        return replace(self._identity, writes={}, dead_letters=[], resolved_letters=[])

    def _wrote(self) -> None:
        self._seq += 1
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_scheduled or self._broken is not None:
            return
        self._flush_scheduled = True
        # call_soon runs after the current task step: writes made without an await in
        # between are in the buffer by then, and go into one batch.
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._broken is not None or self._in_flight or self._tx_depth:
            return
        if self._pending.empty:
            self._durable = self._seq
            self._wake_waiters()
            return
        batch, self._pending = self._pending, self._new_batch()
        covered = self._seq
        self._in_flight = True
        try:
            future = self._host.submit(batch)
        except ObjectError as exc:
            self._in_flight = False
            self._break(exc)
            return
        future.add_done_callback(lambda done: self._committed(batch, covered, done))

    def _committed(self, batch: WriteBatch, covered: int, future: asyncio.Future[None]) -> None:
        self._in_flight = False
        if self._broken is not None:
            return
        error = (
            ObjectError("the commit was cancelled") if future.cancelled() else future.exception()
        )
        if error is not None:
            self._break(error)
            return
        if batch.name is not None:
            self._identity.name = None  # recorded once is enough
        self._durable = max(self._durable, covered)
        self._host.committed(batch)
        self._flush()

    def _wake_waiters(self) -> None:
        ready = [waiter for seq, waiter in self._waiters if seq <= self._durable]
        self._waiters = [(seq, waiter) for seq, waiter in self._waiters if seq > self._durable]
        for waiter in ready:
            if not waiter.done():
                waiter.set_result(None)

    def _break(self, cause: BaseException, notify: bool = True) -> None:
        if self._broken is not None:
            return
        if isinstance(cause, ObjectError) and not notify:
            error: ObjectError = cause
        else:
            error = ObjectResetError(
                f"object {self._label} was reset: a write failed to commit ({cause})"
            )
            error.__cause__ = cause
        self._broken = error
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
        if notify:
            self._host.failed(error)


def _copy(batch: WriteBatch) -> WriteBatch:
    return replace(
        batch,
        writes=dict(batch.writes),
        dead_letters=list(batch.dead_letters),
        resolved_letters=list(batch.resolved_letters),
    )
