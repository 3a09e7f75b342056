"""A shard: one SQLite file under a jurisdiction's root, owned by one thread.

The thread does all of the shard's SQLite work so the event loop never blocks on disk.
It takes every write batch queued since its last commit and commits them in one
transaction (group commit): with `synchronous=FULL` a commit costs an fsync, and many
objects share it. A batch's future resolves only after its transaction committed.

The shard refuses a batch for an ID whose jurisdiction tag is not its own, or that hashes
to another shard: placement already routes correctly, this is the second line of defence.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from edgeproxy.exceptions import (
    JurisdictionMismatch,
    ObjectError,
    ObjectSettingsError,
    ObjectSystemClosed,
)
from edgeproxy.objects import schema
from edgeproxy.objects.ids import shard_index, tag_of
from edgeproxy.objects.layout import shard_path
from edgeproxy.objects.schema import WriteBatch
from edgeproxy.objects.settings import Jurisdiction, display_name

T = TypeVar("T")


@dataclass
class _Write:
    batch: WriteBatch
    future: asyncio.Future[None]


@dataclass
class _Call(Generic[T]):
    function: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]


_Item = _Write | _Call[Any] | None  # None stops the thread


class Shard:
    """One shard file of `jurisdiction`, number `index`."""

    def __init__(self, jurisdiction: Jurisdiction, index: int) -> None:
        self.jurisdiction = jurisdiction
        self.index = index
        self.path = shard_path(jurisdiction.root, index)
        self.commits = 0  # transactions committed; tests read it to see group commit
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._open = False

    @property
    def name(self) -> str:
        return f"{self.jurisdiction.display}/{self.path.name}"

    async def start(self) -> None:
        """Open the file (creating its tables) on the shard's own thread."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        ready: asyncio.Future[None] = loop.create_future()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"edgeproxy-shard {self.name}", daemon=True
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            await self._join(grace=5.0)
            raise
        self._open = True

    def submit(self, batch: WriteBatch) -> asyncio.Future[None]:
        """Queue `batch`; the future resolves once it is committed, or fails with the reason."""
        future: asyncio.Future[None] = self._new_future()
        self._queue.put(_Write(batch, future))
        return future

    def call(self, function: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run `function(connection)` on the shard thread, after the writes queued before it."""
        future: asyncio.Future[T] = self._new_future()
        self._queue.put(_Call(function, future))
        return future

    async def stop(self, grace: float) -> None:
        """Commit what is queued, close the file and end the thread (within `grace` s)."""
        if not self._open:
            return
        self._open = False
        self._queue.put(None)
        await self._join(grace)

    async def _join(self, grace: float) -> None:
        assert self._stopped is not None
        assert self._thread is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._stopped), grace)
        except TimeoutError:
            raise ObjectError(f"shard {self.name} did not stop within {grace:g}s") from None
        self._thread.join()

    def _new_future(self) -> asyncio.Future[Any]:
        if not self._open or self._loop is None:
            raise ObjectSystemClosed(f"shard {self.name} is not open")
        return self._loop.create_future()

    # -- the shard thread ------------------------------------------------------------------

    def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._settle(ready, exc=exc)
            self._settle(self._stopped, None)
            return
        self._settle(ready, None)
        try:
            self._serve(conn)
        finally:
            conn.close()
            self._settle(self._stopped, None)

    def _connect(self) -> sqlite3.Connection:
        conn = schema.connect(self.path)
        try:
            expected = {
                "jurisdiction": self.jurisdiction.name,
                "tag": str(self.jurisdiction.tag),
                "shard": str(self.index),
                "shards": str(self.jurisdiction.shards),
                "schema": str(schema.SCHEMA_VERSION),
            }
            meta = schema.read_meta(conn)
            if not meta:
                schema.write_meta(conn, expected)
            elif meta.get("jurisdiction") != self.jurisdiction.name or meta.get("shard") != str(
                self.index
            ):
                raise ObjectSettingsError(
                    f"{self.path} was created as shard {meta.get('shard')} of jurisdiction "
                    f"{display_name(meta.get('jurisdiction', '?'))}, not as shard {self.index} "
                    f"of {self.jurisdiction.display}; it must not be moved"
                )
        except BaseException:
            conn.close()
            raise
        return conn

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            writes: list[_Write] = []
            stop = False
            for item in items:
                if item is None:
                    stop = True
                elif isinstance(item, _Write):
                    writes.append(item)
                else:
                    # A read must see every write queued before it.
                    self._commit(conn, writes)
                    writes = []
                    self._invoke(conn, item)
            self._commit(conn, writes)
            if stop:
                return

    def _commit(self, conn: sqlite3.Connection, writes: list[_Write]) -> None:
        accepted: list[_Write] = []
        for write in writes:
            refusal = self._refusal(write.batch)
            if refusal is None:
                accepted.append(write)
            else:
                self._settle(write.future, exc=refusal)
        if not accepted:
            return
        try:
            with schema.transaction(conn):
                for write in accepted:
                    schema.apply(conn, write.batch)
        except Exception as exc:  # handed to every waiting object, which resets
            for write in accepted:
                self._settle(write.future, exc=exc)
            return
        self.commits += 1
        for write in accepted:
            self._settle(write.future, None)

    def _refusal(self, batch: WriteBatch) -> ObjectError | None:
        tag = tag_of(batch.raw_id)
        if tag != self.jurisdiction.tag:
            return JurisdictionMismatch(
                f"shard {self.name} refuses a write for object {batch.raw_id.hex()[:12]}…: "
                f"its jurisdiction tag is 0x{tag:04x}, this shard holds only "
                f"{self.jurisdiction.display} (0x{self.jurisdiction.tag:04x})"
            )
        expected = shard_index(batch.raw_id, self.jurisdiction.shards)
        if expected != self.index:
            return ObjectError(
                f"shard {self.name} refuses a write for object {batch.raw_id.hex()[:12]}…: "
                f"it belongs in shard {expected:02d}"
            )
        return None

    def _invoke(self, conn: sqlite3.Connection, call: _Call[Any]) -> None:
        try:
            result = call.function(conn)
        except Exception as exc:  # handed to the caller
            self._settle(call.future, exc=exc)
        else:
            self._settle(call.future, result)

    def _settle(
        self,
        future: asyncio.Future[Any] | None,
        result: Any = None,
        exc: BaseException | None = None,
    ) -> None:
        if future is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            self._loop.call_soon_threadsafe(_resolve, future, result, exc)


def _resolve(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
