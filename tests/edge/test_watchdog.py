from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from edgeproxy.edge.metrics import HandlerStats
from edgeproxy.edge.watchdog import LoopWatchdog
from tests.edge.conftest import LoadSite

NAMES_ITSELF = """
import sys

from starlette.responses import PlainTextResponse

from edgeproxy.edge.watchdog import blocking_handler
from ._lib import where


async def on_request_get(request, env, ctx):
    return PlainTextResponse(blocking_handler(sys._getframe()) or "-")


async def on_request_post(request, env, ctx):
    return PlainTextResponse(where())
"""
LIB = """
import sys

from edgeproxy.edge.watchdog import blocking_handler


def where():
    return blocking_handler(sys._getframe()) or "-"
"""
BLOCKING = """
import time

from starlette.responses import PlainTextResponse

from ._lib import nap


async def on_request(request, env, ctx):
    nap(0.2)
    return PlainTextResponse("done")
"""
NAP = """
import time


def nap(seconds):
    time.sleep(seconds)
"""


def body(response: Any) -> str:
    return bytes(response.body).decode()


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        pytest.param("GET", "functions/api/where.py:on_request_get", id="entry-point"),
        pytest.param("POST", "functions/api/where.py:on_request_post", id="helper-names-entry"),
    ],
)
def test_stack_names_the_handler(load_site: LoadSite, method: str, expected: str) -> None:
    site = load_site({"functions/api/where.py": NAMES_ITSELF, "functions/api/_lib.py": LIB})
    chain = site.match("/api/where", method)
    assert chain is not None
    assert chain.handler is not None
    assert body(asyncio.run(chain.handler.func(None, None, None))) == expected


def test_stack_outside_handlers_names_nothing() -> None:
    import sys

    from edgeproxy.edge.watchdog import blocking_handler

    assert blocking_handler(sys._getframe()) is None


def test_blocking_handler_is_detected_and_named(
    load_site: LoadSite, caplog: pytest.LogCaptureFixture
) -> None:
    site = load_site({"functions/slow.py": BLOCKING, "functions/_lib.py": NAP})
    chain = site.match("/slow", "GET")
    assert chain is not None
    assert chain.handler is not None
    handler = chain.handler
    stats = HandlerStats()

    async def scenario() -> list[str]:
        watchdog = LoopWatchdog(stats, default_limit=0.05)
        await watchdog.start()
        try:
            await asyncio.sleep(0.02)  # the heartbeat has ticked
            await handler.func(None, None, None)
            await asyncio.sleep(0.02)
        finally:
            await watchdog.stop()
        assert not watchdog.running
        return watchdog.detected

    with caplog.at_level(logging.WARNING, "edgeproxy.edge"):
        detected = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert detected == ["functions/slow.py:on_request"]
    assert stats.blocked == {"functions/slow.py:on_request": 1}
    warning = next(r for r in caplog.records if "blocked the event loop" in r.getMessage())
    assert "functions/slow.py:on_request" in warning.getMessage()
    assert "time.sleep(seconds)" in warning.getMessage()  # the stack shows where


def test_await_is_not_blocking(load_site: LoadSite) -> None:
    async def scenario() -> list[str]:
        watchdog = LoopWatchdog(HandlerStats(), default_limit=0.05)
        await watchdog.start()
        await asyncio.sleep(0.1)
        await watchdog.stop()
        await watchdog.stop()  # idempotent
        return watchdog.detected

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == []
