"""Object classes and helpers shared by the object-system tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgeproxy.objects import (
    AlarmInfo,
    DurableObject,
    DurableObjectState,
    JurisdictionSpec,
    NamespaceSpec,
    ObjectSettings,
    ObjectSystem,
)


class Counter(DurableObject):
    """Counts; records constructions so tests can see rebuilds."""

    constructed: list[str] = []

    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        super().__init__(ctx, env)
        Counter.constructed.append(ctx.id.hex)

    async def fetch(self, request: Request) -> Response:
        body = (await request.body()).decode()
        value = await self.increment()
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "header": request.headers.get("x-test"),
                "body": body,
                "value": value,
            }
        )

    async def increment(self, by: int = 1) -> int:
        value: int = await self.ctx.storage.get("n") or 0
        await self.ctx.storage.put("n", value + by)
        return value + by

    async def read(self, key: str = "n") -> Any:
        return await self.ctx.storage.get(key)

    async def put(self, key: str, value: Any) -> None:
        await self.ctx.storage.put(key, value)

    async def everything(self) -> dict[str, Any]:
        return await self.ctx.storage.list()

    async def whoami(self) -> dict[str, Any]:
        return {"id": self.ctx.id.hex, "name": self.ctx.id.name, "env": self.env}

    async def echo(self, value: Any) -> Any:
        return value

    async def mutate(self, items: list[Any]) -> list[Any]:
        items.append("object")
        return items

    async def fail(self, kind: str, message: str) -> None:
        if kind == "value":
            raise ValueError(message)
        if kind == "key":
            raise KeyError(message)
        raise CustomError(message)

    async def bad_result(self) -> Any:
        return {1, 2}

    async def call_self_in_transaction(self) -> None:
        stub = self.env["COUNTER"].get(self.ctx.id)  # env holds the namespace itself
        async with self.ctx.storage.transaction():
            await stub.increment()

    async def call_self(self) -> int:
        result: int = await self.env["COUNTER"].get(self.ctx.id).increment()
        return result

    def not_async(self) -> int:
        return 1

    async def _private(self) -> int:
        return 1

    async def alarm(self, info: AlarmInfo) -> None:
        await self.ctx.storage.put("alarmed", info.retry_count)


class CustomError(Exception):
    pass


class Flaky(DurableObject):
    """An alarm handler that fails `failures` times (a class-level budget) first."""

    failures = 0
    attempts: list[tuple[int, bool]] = []
    reschedule: float | None = None
    done: asyncio.Event | None = None

    async def schedule(self, when: float) -> None:
        await self.ctx.storage.set_alarm(when)

    async def alarm_at(self) -> float | None:
        return await self.ctx.storage.get_alarm()

    async def read(self, key: str) -> Any:
        return await self.ctx.storage.get(key)

    async def alarm(self, info: AlarmInfo) -> None:
        Flaky.attempts.append((info.retry_count, info.is_retry))
        await self.ctx.storage.put("runs", len(Flaky.attempts))
        if Flaky.reschedule is not None:
            await self.ctx.storage.set_alarm(Flaky.reschedule)
            Flaky.reschedule = None
        if Flaky.failures > 0:
            Flaky.failures -= 1
            if Flaky.done is not None and Flaky.failures == 0 and self.env == "dead":
                Flaky.done.set()
            raise RuntimeError(f"attempt {len(Flaky.attempts)} failed")
        if Flaky.done is not None:
            Flaky.done.set()


def make_settings(root: Path, **overrides: Any) -> ObjectSettings:
    options: dict[str, Any] = {
        "jurisdictions": [
            JurisdictionSpec("", root / "objects" / "default", 2),
            JurisdictionSpec("eu", root / "eu", 2),
        ],
        "idle_timeout": 60.0,
        "alarm_retry_base": 0.01,
        "alarm_max_retries": 2,
    }
    options.update(overrides)
    return ObjectSettings(root, **options)


SPECS = [NamespaceSpec("COUNTER", Counter), NamespaceSpec("FLAKY", Flaky)]


@contextlib.asynccontextmanager
async def running(
    settings: ObjectSettings, *, env: Any = None, clock: Callable[[], float] = time.time
) -> AsyncIterator[ObjectSystem]:
    system = ObjectSystem(settings, SPECS, env=env, clock=clock)
    await system.start()
    try:
        yield system
    finally:
        await system.stop(grace=5.0)


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until `check()` is true; fail after `within` seconds (never a timing assert)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
