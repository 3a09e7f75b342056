"""The storage API over a fake commit host: cache, write buffer, transactions, sync."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest

from edgeproxy.exceptions import (
    ObjectError,
    ObjectResetError,
    ObjectValueError,
    StorageLimitError,
)
from edgeproxy.objects.gates import InputGate
from edgeproxy.objects.schema import StoredObject, WriteBatch
from edgeproxy.objects.storage import DurableObjectStorage


class FakeHost:
    """Commits when told to: `release()` resolves every submitted batch."""

    def __init__(self, auto: bool = True) -> None:
        self.auto = auto
        self.batches: list[WriteBatch] = []
        self.pending: list[asyncio.Future[None]] = []
        self.failures: list[ObjectError] = []
        self.fail_next: Exception | None = None

    def submit(self, batch: WriteBatch) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.batches.append(batch)
        if self.fail_next is not None:
            future.set_exception(self.fail_next)
            self.fail_next = None
        elif self.auto:
            future.set_result(None)
        else:
            self.pending.append(future)
        return future

    def release(self) -> None:
        for future in self.pending:
            future.set_result(None)
        self.pending = []

    def committed(self, batch: WriteBatch) -> None:
        pass

    def failed(self, error: ObjectError) -> None:
        self.failures.append(error)


def storage_for(
    host: FakeHost, rows: dict[str, str] | None = None, alarm_handler: bool = True
) -> DurableObjectStorage:
    return DurableObjectStorage(
        host,
        InputGate("test"),
        StoredObject(rows or {}, None, None),
        WriteBatch("B", "production", bytes(32)),
        label="B/test",
        alarm_handler=alarm_handler,
    )


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_get_put_delete() -> None:
    async def scenario() -> None:
        storage = storage_for(FakeHost(), {"old": '"x"'})
        assert await storage.get("old") == "x"
        assert await storage.get("missing") is None
        await storage.put("a", {"n": [1]})
        value = await storage.get("a")
        value["n"].append(2)  # a copy: the stored value does not change
        assert await storage.get("a") == {"n": [1]}
        await storage.put({"c": 3, "b": 2})
        assert await storage.get(["c", "missing", "a", "b"]) == {"a": {"n": [1]}, "b": 2, "c": 3}
        assert list(await storage.get(["c", "a", "b"])) == ["a", "b", "c"]
        assert await storage.delete("a") is True
        assert await storage.delete("a") is False
        assert await storage.delete(["b", "c", "zz"]) == 2
        await storage.delete_all()
        assert await storage.list() == {}

    run(scenario)


KEYS = ["a", "b", "ba", "bb", "c", "d\U0010ffff", "e"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({}, KEYS, id="all-in-order"),
        pytest.param({"start": "b"}, KEYS[1:], id="start-inclusive"),
        pytest.param({"start_after": "b"}, KEYS[2:], id="start-after-exclusive"),
        pytest.param({"end": "c"}, KEYS[:4], id="end-exclusive"),
        pytest.param({"prefix": "b"}, ["b", "ba", "bb"], id="prefix"),
        pytest.param({"prefix": "d\U0010ffff"}, ["d\U0010ffff"], id="prefix-max-code-point"),
        pytest.param({"prefix": "b", "reverse": True}, ["bb", "ba", "b"], id="prefix-reverse"),
        pytest.param({"limit": 2}, ["a", "b"], id="limit"),
        pytest.param({"reverse": True, "limit": 2}, ["e", "d\U0010ffff"], id="limit-reverse"),
        pytest.param({"start": "b", "end": "bb"}, ["b", "ba"], id="range"),
        pytest.param({"start": "x"}, [], id="empty-range"),
        pytest.param({"start": "c", "end": "b"}, [], id="inverted-range"),
    ],
)
def test_list(options: dict[str, Any], expected: list[str]) -> None:
    async def scenario() -> None:
        storage = storage_for(FakeHost())
        await storage.put({key: index for index, key in enumerate(reversed(KEYS))})
        listed = await storage.list(**options)
        assert list(listed) == expected

    run(scenario)


@pytest.mark.parametrize(
    ("operation", "error", "message"),
    [
        pytest.param(lambda s: s.put("k" * 2049, 1), StorageLimitError, "2048", id="long-key"),
        pytest.param(
            lambda s: s.put({"ok": 1, "bad": "x" * 200_000}),
            StorageLimitError,
            "value of 'bad'",
            id="big-value-in-batch",
        ),
        pytest.param(
            lambda s: s.put({f"k{i}": i for i in range(129)}),
            StorageLimitError,
            "129 keys",
            id="batch-too-big",
        ),
        pytest.param(lambda s: s.put({"ok": 1, "bad": {1}}), ObjectValueError, "set", id="set"),
        pytest.param(lambda s: s.put("k"), ObjectValueError, "needs a value", id="no-value"),
        pytest.param(
            lambda s: s.get([str(i) for i in range(129)]), StorageLimitError, "129", id="get-batch"
        ),
        pytest.param(lambda s: s.delete(list("x" * 129)), StorageLimitError, "129", id="delete"),
        pytest.param(
            lambda s: s.list(start="a", start_after="b"), ObjectValueError, "not both", id="list"
        ),
        pytest.param(lambda s: s.list(limit=0), ObjectValueError, "positive", id="limit-zero"),
    ],
)
def test_violations_are_refused_before_anything_is_written(
    operation: Callable[[DurableObjectStorage], Awaitable[Any]], error: type, message: str
) -> None:
    async def scenario() -> None:
        host = FakeHost()
        storage = storage_for(host)
        with pytest.raises(error, match=message):
            await operation(storage)
        await storage.sync()
        assert await storage.list() == {}
        assert host.batches == []

    run(scenario)


def test_writes_without_an_await_between_commit_as_one_batch() -> None:
    async def scenario() -> None:
        host = FakeHost()
        storage = storage_for(host, {"gone": "1"})
        # Storage awaits never yield to the loop, so these run in one step of the task.
        await storage.put("a", 1)
        await storage.put("b", 2)
        await storage.delete("gone")
        await storage.sync()
        assert len(host.batches) == 1
        assert host.batches[0].writes == {"a": "1", "b": "2", "gone": None}

    run(scenario)


def test_sync_waits_for_the_commit() -> None:
    async def scenario() -> None:
        host = FakeHost(auto=False)
        storage = storage_for(host)
        await storage.put("a", 1)
        waiting = asyncio.ensure_future(storage.sync())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        # Writes made while a batch is in flight collect into the next one.
        await storage.put("b", 2)
        host.release()
        await asyncio.sleep(0)
        host.release()
        await waiting
        await storage.sync()
        assert [batch.writes for batch in host.batches] == [{"a": "1"}, {"b": "2"}]

    run(scenario)


def test_a_failed_commit_breaks_the_storage_and_fails_waiters() -> None:
    async def scenario() -> None:
        host = FakeHost()
        host.fail_next = OSError("disk full")
        storage = storage_for(host)
        await storage.put("a", 1)
        with pytest.raises(ObjectResetError, match="disk full") as caught:
            await storage.sync()
        assert caught.value.status == 503
        assert host.failures
        assert host.failures[0] is caught.value
        with pytest.raises(ObjectResetError):
            await storage.get("a")

    run(scenario)


def test_transaction_rolls_back_memory_and_buffer_on_error() -> None:
    async def scenario() -> None:
        host = FakeHost()
        storage = storage_for(host, {"kept": "1"})

        async def aborted() -> None:
            async with storage.transaction() as txn:
                await txn.put("new", 2)
                await txn.delete("kept")
                await asyncio.sleep(0)  # a flush opportunity: nothing may leave mid-transaction
                raise RuntimeError("abort")

        with pytest.raises(RuntimeError, match="abort"):
            await aborted()
        assert await storage.list() == {"kept": 1}
        await storage.sync()
        assert host.batches == []
        async with storage.transaction():
            await storage.put("x", 1)
            await asyncio.sleep(0)
            async with storage.transaction():  # nested in the same task
                await storage.put("y", 2)
        await storage.sync()
        assert [batch.writes for batch in host.batches] == [{"x": "1", "y": "2"}]

    run(scenario)


def test_alarm_setting() -> None:
    async def scenario() -> None:
        host = FakeHost()
        storage = storage_for(host)
        assert await storage.get_alarm() is None
        await storage.set_alarm(datetime(2030, 1, 1, tzinfo=UTC))
        assert await storage.get_alarm() == datetime(2030, 1, 1, tzinfo=UTC).timestamp()
        await storage.set_alarm(1_900_000_000)
        assert await storage.get_alarm() == 1_900_000_000.0
        with pytest.raises(ObjectValueError, match="aware datetime"):
            await storage.set_alarm(datetime(2030, 1, 1))
        with pytest.raises(ObjectValueError, match="epoch seconds"):
            await storage.set_alarm("soon")  # type: ignore[arg-type]
        await storage.delete_alarm()
        await storage.sync()
        assert host.batches[-1].alarm_changed
        assert host.batches[-1].alarm is None
        assert await storage.get_alarm() is None
        without = storage_for(FakeHost(), alarm_handler=False)
        with pytest.raises(ObjectError, match="no alarm"):
            await without.set_alarm(1.0)

    run(scenario)
