"""Alarms: delivery, retries with backoff, dead letters, replay, persistence."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edgeproxy.objects import ObjectSettings, ObjectStore
from edgeproxy.objects.alarms import AlarmKey, AlarmScheduler
from edgeproxy.objects.api import AlarmInfo
from edgeproxy.objects.schema import DeadLetterRow
from tests.objects.sample import Flaky, eventually, make_settings, running


def test_alarm_fires_once_and_is_cleared(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        Flaky.done = asyncio.Event()
        async with running(settings) as system:
            ns = system.namespace("FLAKY")
            stub = ns.get(ns.id_from_name("a"))
            await stub.schedule(time.time())
            await asyncio.wait_for(Flaky.done.wait(), 5.0)
            await eventually(lambda: _cleared(stub))
            assert Flaky.attempts == [(0, False)]
            assert await stub.read("runs") == 1

    asyncio.run(scenario())


async def _cleared(stub: object) -> bool:
    return await stub.alarm_at() is None  # type: ignore[attr-defined]


def test_failing_alarm_is_retried_with_growing_retry_count(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        Flaky.failures = 2
        Flaky.done = asyncio.Event()
        async with running(settings) as system:
            ns = system.namespace("FLAKY")
            stub = ns.get(ns.id_from_name("retry"))
            await stub.schedule(time.time())
            await asyncio.wait_for(Flaky.done.wait(), 5.0)
            await eventually(lambda: _cleared(stub))
            assert Flaky.attempts == [(0, False), (1, True), (2, True)]
            assert await system.dead_letters() == []

    asyncio.run(scenario())


def test_exhausted_alarm_goes_to_dead_letters_and_can_be_replayed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # max 2 retries

    async def first() -> str:
        Flaky.failures = 3
        async with running(settings, env="dead") as system:
            ns = system.namespace("FLAKY").jurisdiction("eu")
            stub = ns.get(ns.id_from_name("dead"))
            await stub.schedule(time.time())

            async def lettered() -> bool:
                return len(await system.dead_letters("FLAKY")) == 1

            await eventually(lettered)
            assert Flaky.attempts == [(0, False), (1, True), (2, True)]
            [letter] = await system.dead_letters()
            assert letter.id == stub.id.hex
            assert letter.jurisdiction == "eu"
            assert letter.retries == 2
            assert "attempt 3 failed" in letter.error
            assert await stub.alarm_at() is None
            return stub.id.hex

    hex_id = asyncio.run(first())
    [offline] = ObjectStore(settings).dead_letters()
    assert offline.id == hex_id
    assert offline.binding == "FLAKY"

    async def second() -> None:
        async with running(settings) as system:
            Flaky.failures = 1
            with pytest.raises(RuntimeError, match="failed"):
                await system.replay_dead_letter(hex_id)
            assert len(await system.dead_letters()) == 1
            assert await system.replay_dead_letter(hex_id) == 1
            assert await system.dead_letters() == []
            assert Flaky.attempts[-1] == (2, True)

    asyncio.run(second())


def test_alarms_survive_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    async def first() -> None:
        async with running(settings) as system:
            ns = system.namespace("FLAKY")
            await ns.get(ns.id_from_name("later")).schedule(time.time() + 3600)
        assert Flaky.attempts == []

    async def second() -> None:
        Flaky.done = asyncio.Event()
        async with running(settings, clock=lambda: time.time() + 7200) as system:
            await asyncio.wait_for(Flaky.done.wait(), 5.0)
            ns = system.namespace("FLAKY")
            await eventually(lambda: _cleared(ns.get(ns.id_from_name("later"))))
        assert Flaky.attempts == [(0, False)]

    asyncio.run(first())
    asyncio.run(second())


def test_a_handler_that_sets_a_new_alarm_keeps_it(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        Flaky.done = asyncio.Event()
        later = time.time() + 3600
        Flaky.reschedule = later
        async with running(settings) as system:
            ns = system.namespace("FLAKY")
            stub = ns.get(ns.id_from_name("again"))
            await stub.schedule(time.time())
            await asyncio.wait_for(Flaky.done.wait(), 5.0)
            await eventually(lambda: _is(stub, later))

    async def _is(stub: object, at: float) -> bool:
        return await stub.alarm_at() == at  # type: ignore[attr-defined, no-any-return]

    asyncio.run(scenario())


def test_run_alarm_now_and_evict(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER", "preview")
            stub = ns.get(ns.id_from_name("now"))
            await stub.increment()
            await system.run_alarm_now(stub.id.hex)
            assert await stub.read("alarmed") == 0
            assert await system.evict(stub.id.hex) is True
            assert await system.evict(stub.id.hex) is False
            assert system.live_objects() == []
            assert await stub.read("alarmed") == 0

    asyncio.run(scenario())


def test_scheduler_backs_off_exponentially() -> None:
    now = 1000.0
    failed = asyncio.Event()

    async def fire(key: AlarmKey, info: AlarmInfo) -> None:
        failed.set()
        raise RuntimeError("nope")

    async def dead(key: AlarmKey, letter: DeadLetterRow) -> None:
        raise AssertionError("not yet")

    async def scenario() -> None:
        scheduler = AlarmScheduler(fire, dead, clock=lambda: now, retry_base=2.0, max_retries=6)
        scheduler.start()
        try:
            scheduler.set(("B", "s", "id"), 999.0)
            await asyncio.wait_for(failed.wait(), 5.0)
            await eventually(lambda: bool(scheduler.scheduled()))
            assert scheduler.scheduled() == {("B", "s", "id"): now + 2.0}
            scheduler.set(("B", "s", "id"), None)
            assert scheduler.scheduled() == {}
        finally:
            await scheduler.stop(grace=1.0)

    asyncio.run(scenario())
