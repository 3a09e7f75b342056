"""Deadlines checked by one periodic sweep (edgeproxy.deadlines), and the edge handlers'
wall-time limit built on them (edgeproxy.edge.walltime)."""

from __future__ import annotations

import asyncio

from edgeproxy.deadlines import SWEEP_SECONDS, Deadlines
from edgeproxy.edge.walltime import WallTime


async def _limited(limits: Deadlines[WallTime], seconds: float, work: float) -> str:
    task = asyncio.current_task()
    assert task is not None
    limit = WallTime(task)
    limits.add(limit, task.get_loop(), seconds)
    try:
        await asyncio.sleep(work)
    except asyncio.CancelledError:
        return "limit" if limit.ours() else "cancelled"
    finally:
        limits.discard(limit)
    return "done"


def test_an_invocation_past_its_limit_is_cancelled_and_told_apart() -> None:
    async def main() -> list[str]:
        limits = Deadlines(WallTime.expire)
        return list(await asyncio.gather(_limited(limits, 0.1, 5), _limited(limits, 5, 0.01)))

    assert asyncio.run(main()) == ["limit", "done"]


def test_a_cancellation_from_elsewhere_is_not_the_limits() -> None:
    async def main() -> tuple[str, bool]:
        limits = Deadlines(WallTime.expire)
        task = asyncio.ensure_future(_limited(limits, 5, 5))
        await asyncio.sleep(0.01)
        task.cancel()
        outcome = await task
        # Nothing pending: the sweep has stopped rescheduling itself.
        await asyncio.sleep(SWEEP_SECONDS * 3)
        return outcome, limits.sweeping

    assert asyncio.run(main()) == ("cancelled", False)


def test_limits_work_across_event_loops() -> None:
    limits = Deadlines(WallTime.expire)
    for _ in range(2):
        assert asyncio.run(_limited(limits, 0.05, 5)) == "limit"


def test_expiry_gets_the_seconds_each_item_was_given() -> None:
    async def main() -> list[tuple[str, float]]:
        expired: list[tuple[str, float]] = []
        deadlines: Deadlines[str] = Deadlines(lambda item, seconds: expired.append((item, seconds)))
        loop = asyncio.get_running_loop()
        deadlines.add("soon", loop, 0.01)
        deadlines.add("kept", loop, 0.01)
        deadlines.add("later", loop, 5)
        deadlines.discard("kept")
        await asyncio.sleep(SWEEP_SECONDS * 3)
        return expired

    assert asyncio.run(main()) == [("soon", 0.01)]
