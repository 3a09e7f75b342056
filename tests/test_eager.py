"""EagerTasks: a coroutine's first step runs from a loop callback, as a task's; one that
waits goes on in that task, cancellable; one that does not never gets a task of its own;
what either raises goes to its `failed` callback."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest

from edgeproxy.eager import EagerTasks

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("test_eager_var", default="unset")

# What the coroutines of a scenario raised (their `failed` callback); `_run` resets it.
RAISED: list[BaseException] = []


def start(tasks: EagerTasks, coro: Coroutine[Any, Any, Any]) -> None:
    tasks.start(coro, RAISED.append)


async def _settled(tasks: EagerTasks) -> None:
    """Let the loop run until a parked task is ready (it is made on first use)."""
    start(tasks, asyncio.sleep(0))
    for _ in range(5):
        await asyncio.sleep(0)


def _run(scenario: Callable[[EagerTasks, set[asyncio.Task[Any]]], Coroutine[Any, Any, Any]]) -> Any:
    async def main() -> Any:
        RAISED.clear()
        tracked: set[asyncio.Task[Any]] = set()
        tasks = EagerTasks(asyncio.get_running_loop(), tracked)
        await _settled(tasks)
        return await scenario(tasks, tracked)

    return asyncio.run(main())


def test_a_first_step_sees_a_task_and_needs_none_of_its_own() -> None:
    async def answers(seen: list[Any]) -> None:
        # Entered for its check that a task is current (anyio's too), not to time out.
        async with asyncio.timeout(5):  # noqa: ASYNC100
            seen.append((asyncio.current_task(), anyio.get_current_task().id))

    async def scenario(tasks: EagerTasks, tracked: set[asyncio.Task[Any]]) -> None:
        seen: list[Any] = []
        before = len(asyncio.all_tasks())
        for _ in range(3):
            start(tasks, answers(seen))
        await asyncio.sleep(0)
        assert len(seen) == 3
        assert all(task is not None and anyio_id == id(task) for task, anyio_id in seen)
        # One after the other, they ran as the same parked task: none was created or kept.
        assert len({task for task, _ in seen}) == 1
        assert len(asyncio.all_tasks()) == before
        assert not tracked

    _run(scenario)


def test_a_coroutine_that_waits_goes_on_in_the_task_it_started_in() -> None:
    async def waits(log: list[Any], gate: asyncio.Future[str]) -> None:
        VAR.set("first step")
        first = asyncio.current_task()
        value = await gate
        log.append((first is asyncio.current_task(), VAR.get(), value))

    async def scenario(tasks: EagerTasks, tracked: set[asyncio.Task[Any]]) -> list[Any]:
        log: list[Any] = []
        gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        start(tasks, waits(log, gate))
        await asyncio.sleep(0)
        assert len(tracked) == 1  # the server waits for it at shutdown
        gate.set_result("answer")
        for _ in range(3):
            await asyncio.sleep(0)
        assert not tracked
        assert VAR.get() == "unset"  # the coroutine's context was its own
        return log

    assert _run(scenario) == [(True, "first step", "answer")]


def test_coroutines_after_one_that_waits_get_another_task() -> None:
    async def record(seen: list[Any], gate: asyncio.Future[None] | None) -> None:
        seen.append(asyncio.current_task())
        if gate is not None:
            await gate

    async def scenario(tasks: EagerTasks, tracked: set[asyncio.Task[Any]]) -> None:
        seen: list[Any] = []
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        start(tasks, record(seen, gate))
        await asyncio.sleep(0)
        for _ in range(3):
            await asyncio.sleep(0)
        start(tasks, record(seen, None))
        await asyncio.sleep(0)
        assert seen[0] is not seen[1]
        assert not seen[0].done()
        gate.set_result(None)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert seen[0].done()
        assert not tracked

    _run(scenario)


def test_context_changes_stay_with_their_coroutine() -> None:
    async def sets() -> None:
        VAR.set("changed")

    async def reads(seen: list[str]) -> None:
        seen.append(VAR.get())

    async def scenario(tasks: EagerTasks, tracked: set[asyncio.Task[Any]]) -> list[str]:
        seen: list[str] = []
        VAR.set("caller's")
        start(tasks, sets())
        start(tasks, reads(seen))
        await asyncio.sleep(0)
        assert VAR.get() == "caller's"
        return seen

    assert _run(scenario) == ["caller's"]


async def _cancellable(log: list[str], seen: list[Any], wait_on: asyncio.Future[None]) -> None:
    seen.append(asyncio.current_task())
    try:
        await wait_on
    except asyncio.CancelledError:
        log.append("cancelled")
        raise


@pytest.mark.parametrize(
    "when",
    [
        pytest.param("while-waiting", id="cancelled-while-it-waits"),
        pytest.param("before-taken-over", id="cancelled-before-the-task-ran-it"),
    ],
)
def test_cancelling_the_task_cancels_the_coroutine(when: str) -> None:
    async def scenario(tasks: EagerTasks, tracked: set[asyncio.Task[Any]]) -> None:
        loop = asyncio.get_running_loop()
        log: list[str] = []
        seen: list[Any] = []
        gate: asyncio.Future[None] = loop.create_future()
        start(tasks, _cancellable(log, seen, gate))
        if when == "before-taken-over":
            # Runs right after the first step, before the parked task takes the coroutine.
            loop.call_soon(lambda: seen[0].cancel())
        else:
            await asyncio.sleep(0)
            seen[0].cancel()
        for _ in range(4):
            await asyncio.sleep(0)
        assert log == ["cancelled"]
        assert gate.cancelled()
        assert seen[0].done()
        assert [type(exc) for exc in RAISED] == [asyncio.CancelledError]
        assert not tracked

    _run(scenario)


def test_a_coroutine_cancelling_its_own_task_in_its_first_step_is_cancelled_at_its_wait() -> None:
    async def cancels_itself(log: list[str]) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            log.append("cancelled")

    async def record(seen: list[Any]) -> None:
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())

    async def scenario(tasks: EagerTasks, tracked: set[asyncio.Task[Any]]) -> None:
        log: list[str] = []
        start(tasks, cancels_itself(log))
        for _ in range(4):
            await asyncio.sleep(0)
        assert log == ["cancelled"]
        seen: list[Any] = []
        start(tasks, record(seen))  # still served, by a task not cancelled
        for _ in range(4):
            await asyncio.sleep(0)
        assert len(seen) == 2
        assert seen[0] is seen[1]
        assert seen[0].done()
        assert not seen[0].cancelled()
        assert not tracked

    _run(scenario)


@pytest.mark.parametrize(
    "waits", [pytest.param(False, id="in-the-first-step"), pytest.param(True, id="after-a-wait")]
)
def test_what_a_coroutine_raises_goes_to_its_failed_callback(waits: bool) -> None:
    async def fails(gate: asyncio.Future[None]) -> None:
        if waits:
            await gate
        raise ValueError("broken")

    async def answers(seen: list[str]) -> None:
        seen.append("answered")

    async def scenario(tasks: EagerTasks, tracked: set[asyncio.Task[Any]]) -> list[str]:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        seen: list[str] = []
        start(tasks, fails(gate))
        start(tasks, answers(seen))  # the next one is still served
        await asyncio.sleep(0)
        gate.set_result(None)
        for _ in range(3):
            await asyncio.sleep(0)
        assert seen == ["answered"]
        assert not tracked
        return [str(exc) for exc in RAISED]

    assert _run(scenario) == ["broken"]
