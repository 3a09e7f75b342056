"""The demo's durable object: one counter per object ID."""

from starlette.requests import Request
from starlette.responses import JSONResponse

from edgeproxy.objects import DurableObject


class Counter(DurableObject):
    async def fetch(self, request: Request) -> JSONResponse:
        if request.method == "POST":
            return JSONResponse({"count": await self.increment()})
        return JSONResponse({"count": await self.value()})

    async def value(self) -> int:
        return await self.ctx.storage.get("count") or 0

    async def increment(self) -> int:
        count = await self.ctx.storage.get("count") or 0
        await self.ctx.storage.put("count", count + 1)
        return count + 1
