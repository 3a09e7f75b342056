"""The API a durable-object class is written against (modelled on Cloudflare's).

    class Counter(DurableObject):
        def __init__(self, ctx: DurableObjectState, env: Any) -> None:
            super().__init__(ctx, env)
            ctx.block_concurrency_while(self.migrate())   # runs before any event

        async def fetch(self, request: Request) -> Response:
            return PlainTextResponse(str(await self.increment()))

        async def increment(self, by: int = 1) -> int:    # callable as `await stub.increment(2)`
            value = (await self.ctx.storage.get("n") or 0) + by
            await self.ctx.storage.put("n", value)
            return value

        async def alarm(self, info: AlarmInfo) -> None:   # optional; see storage.set_alarm()
            ...

Exactly one instance of an object is live in the process. Events (fetch, RPC calls,
alarms) are delivered one after another at every storage operation; they interleave only
where the object awaits something else (another object, the network, a sleep). A fetch
response or RPC result leaves the object only once every write made before it is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from edgeproxy.objects.ids import ObjectId
    from edgeproxy.objects.storage import DurableObjectStorage

T = TypeVar("T")


@dataclass(frozen=True)
class AlarmInfo:
    """Passed to `alarm()`: how many times this alarm has already failed and been retried."""

    retry_count: int = 0

    @property
    def is_retry(self) -> bool:
        return self.retry_count > 0


class _Blocker(Protocol):
    def block_concurrency_while(self, awaitable: Awaitable[T]) -> asyncio.Task[T]: ...


class DurableObjectState:
    """`self.ctx` of an object: its ID, its storage, and control over its input gate."""

    def __init__(self, object_id: ObjectId, storage: DurableObjectStorage, actor: _Blocker):
        self.id = object_id
        self.storage = storage
        self._actor = actor

    def block_concurrency_while(self, awaitable: Awaitable[T]) -> asyncio.Task[T]:
        """Deliver no other event to this object until `awaitable` completes.

        It starts at once and may be called from `__init__` (the first event then waits
        for it) or awaited inside an event for its result. If it raises, the object is
        reset: events waiting for it fail, and the next event builds a new instance.
        """
        return self._actor.block_concurrency_while(awaitable)


class DurableObject:
    """Base class of durable objects; the constructor stores `ctx` and `env`."""

    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        self.ctx = ctx
        self.env = env

    async def fetch(self, request: Request) -> Response:
        """Answer a request sent with `stub.fetch()`; override it to accept requests."""
        raise NotImplementedError(f"{type(self).__name__} does not implement fetch()")
