"""Continuation: the rest of a coroutine stepped by hand behaves as if it were awaited."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edgeproxy.edge.continuation import Continuation


async def _steps(log: list[str], gate: asyncio.Future[str]) -> str:
    log.append("start")
    first = await gate
    await asyncio.sleep(0)  # a bare yield
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        log.append("cancelled, carrying on")
    return f"{first} done"


def _step_by_hand(coro: Any) -> Any:
    try:
        return coro.send(None)
    except StopIteration:
        raise AssertionError("finished without waiting") from None


def test_values_and_cancellation_reach_the_coroutine() -> None:
    async def scenario() -> tuple[str, list[str]]:
        log: list[str] = []
        gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        coro = _steps(log, gate)
        waiting = _step_by_hand(coro)
        assert waiting is gate
        task = asyncio.ensure_future(Continuation(coro, waiting))
        await asyncio.sleep(0)
        gate.set_result("value")
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()  # lands in the coroutine's sleep(10), which it catches
        return await task, log

    result, log = asyncio.run(scenario())
    assert result == "value done"
    assert log == ["start", "cancelled, carrying on"]


def test_an_exception_from_what_it_waits_for_is_raised_inside_it() -> None:
    async def catches(gate: asyncio.Future[None]) -> str:
        try:
            await gate
        except KeyError as exc:
            return f"caught {exc}"
        return "not raised"

    async def scenario() -> str:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        coro = catches(gate)
        waiting = _step_by_hand(coro)
        task = asyncio.ensure_future(Continuation(coro, waiting))
        gate.set_exception(KeyError("k"))
        return await task

    assert asyncio.run(scenario()) == "caught 'k'"


def test_an_uncaught_exception_propagates_to_the_awaiter() -> None:
    async def fails(gate: asyncio.Future[None]) -> None:
        await gate
        raise ValueError("after the wait")

    async def scenario() -> None:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        coro = fails(gate)
        waiting = _step_by_hand(coro)
        gate.set_result(None)
        await Continuation(coro, waiting)

    with pytest.raises(ValueError, match="after the wait"):
        asyncio.run(scenario())


def test_closing_it_closes_the_coroutine() -> None:
    closed: list[bool] = []

    async def waits(gate: asyncio.Future[None]) -> None:
        try:
            await gate
        finally:
            closed.append(True)

    async def scenario() -> None:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        coro = waits(gate)
        waiting = _step_by_hand(coro)
        pending = Continuation(coro, waiting).__await__()
        assert pending.send(None) is gate
        pending.close()

    asyncio.run(scenario())
    assert closed == [True]
