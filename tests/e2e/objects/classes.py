"""Durable-object classes that tests/e2e/test_objects.py binds in its rules.yaml."""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgeproxy.exceptions import ObjectError
from edgeproxy.objects import AlarmInfo, DurableObject, DurableObjectState

# Per server process: how many instances each object ID has had, and the latest of them.
# The server loads this file once per binding, so only COUNTER objects share these.
BUILT: Tally[str] = Tally()
LATEST: dict[str, DurableObject] = {}


class Counter(DurableObject):
    """A counter that also counts, in its storage, how often it was constructed."""

    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        super().__init__(ctx, env)
        BUILT[ctx.id.hex] += 1
        LATEST[ctx.id.hex] = self
        ctx.block_concurrency_while(self._boot())

    async def _boot(self) -> None:
        built = await self.ctx.storage.get("constructions") or 0
        # An await inside the activation: no event may start before it ends.
        await asyncio.sleep(0.01)
        await self.ctx.storage.put("constructions", built + 1)

    async def fetch(self, request: Request) -> Response:
        if request.method == "POST":
            by = int((await request.body()).decode() or "1")
            return JSONResponse({"count": await self.increment(by), "via": "fetch"})
        return JSONResponse({"count": await self.value(), "path": request.url.path, "via": "fetch"})

    async def value(self) -> int:
        count: int = await self.ctx.storage.get("count") or 0
        return count

    async def constructions(self) -> int:
        built: int = await self.ctx.storage.get("constructions") or 0
        return built

    async def increment(self, by: int = 1) -> int:
        count = await self.value() + by
        await self.ctx.storage.put("count", count)
        return count

    async def increment_slowly(self, delay: float) -> int:
        count = await self.value() + 1
        await self.ctx.storage.put("phase", "sleeping")
        await asyncio.sleep(delay)  # an await on something else: other events may run
        await self.ctx.storage.put({"count": count, "phase": "done"})
        return count

    async def phase(self) -> str | None:
        phase: str | None = await self.ctx.storage.get("phase")
        return phase

    async def increment_in_transaction(self, by: int = 1) -> int:
        async with self.ctx.storage.transaction() as tx:
            count = (await tx.get("count") or 0) + by
            await asyncio.sleep(0.001)  # the transaction holds the input gate across this
            await tx.put("count", count)
        return count

    async def increment_blocking(self, by: int = 1) -> int:
        async def step() -> int:
            count = await self.value() + by
            await asyncio.sleep(0.001)
            await self.ctx.storage.put("count", count)
            return count

        return await self.ctx.block_concurrency_while(step())

    async def snapshot(self) -> dict[str, int]:
        """The count and the construction count, read in one event."""
        return {"count": await self.value(), "constructions": await self.constructions()}

    async def built(self, hex_id: str) -> int:
        """How many instances object `hex_id` has had (asked of another object)."""
        return BUILT[hex_id]

    async def live(self, hex_id: str) -> bool:
        """Whether object `hex_id` has a live instance, without sending it an event."""
        instance = LATEST.get(hex_id)
        if instance is None:
            return False
        try:
            await instance.ctx.storage.get("count")
        except ObjectError:  # an evicted instance's storage refuses use
            return False
        return True

    async def identity(self) -> dict[str, Any]:
        return {"id": self.ctx.id.hex, "name": self.ctx.id.name}

    async def explode(self, message: str) -> None:
        raise ValueError(message)

    def not_async(self) -> int:
        return 1

    async def _private(self) -> int:
        return 1


class Alarm(DurableObject):
    """An alarm that raises its first `fail_times` times, recording every attempt."""

    async def schedule(self, fail_times: int, delay: float) -> float:
        at = time.time() + delay
        await self.ctx.storage.put({"fail_times": fail_times, "attempts": [], "done": False})
        await self.ctx.storage.set_alarm(at)
        return at

    async def heal(self) -> None:
        await self.ctx.storage.put("fail_times", 0)

    async def status(self) -> dict[str, Any]:
        return {
            "attempts": await self.ctx.storage.get("attempts") or [],
            "done": bool(await self.ctx.storage.get("done")),
            "alarm": await self.ctx.storage.get_alarm(),
        }

    async def alarm(self, info: AlarmInfo) -> None:
        attempts = [*(await self.ctx.storage.get("attempts") or []), info.retry_count]
        await self.ctx.storage.put("attempts", attempts)
        if len(attempts) <= (await self.ctx.storage.get("fail_times") or 0):
            raise RuntimeError(f"planned failure {len(attempts)}")
        await self.ctx.storage.put("done", True)
