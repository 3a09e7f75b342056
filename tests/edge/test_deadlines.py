"""Wall-time limits checked by a sweep (edgeproxy.edge.deadlines)."""

from __future__ import annotations

import asyncio

from edgeproxy.edge.deadlines import SWEEP_SECONDS, WallTimeLimits


async def _limited(limits: WallTimeLimits, seconds: float, work: float) -> str:
    task = asyncio.current_task()
    assert task is not None
    deadline = limits.start(task, seconds)
    try:
        await asyncio.sleep(work)
    except asyncio.CancelledError:
        return "limit" if deadline.ours() else "cancelled"
    finally:
        limits.end(deadline)
    return "done"


def test_an_invocation_past_its_limit_is_cancelled_and_told_apart() -> None:
    async def main() -> list[str]:
        limits = WallTimeLimits()
        return list(await asyncio.gather(_limited(limits, 0.1, 5), _limited(limits, 5, 0.01)))

    assert asyncio.run(main()) == ["limit", "done"]


def test_a_cancellation_from_elsewhere_is_not_the_limits() -> None:
    async def main() -> tuple[str, bool]:
        limits = WallTimeLimits()
        task = asyncio.ensure_future(_limited(limits, 5, 5))
        await asyncio.sleep(0.01)
        task.cancel()
        outcome = await task
        # Nothing pending: the sweep has stopped rescheduling itself.
        await asyncio.sleep(SWEEP_SECONDS * 3)
        return outcome, limits._scheduled

    assert asyncio.run(main()) == ("cancelled", False)


def test_limits_work_across_event_loops() -> None:
    limits = WallTimeLimits()
    for _ in range(2):
        assert asyncio.run(_limited(limits, 0.05, 5)) == "limit"
