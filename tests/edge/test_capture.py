from __future__ import annotations

import asyncio
import logging
import sys

import httpx
import pytest

from edgeproxy.edge.capture import OutputCapture
from edgeproxy.edge.functions import SiteFunctions
from tests.edge.conftest import LoadSite, client
from tests.edge.harness import SITE, Harness

TALKATIVE = """
import asyncio
import logging

from starlette.responses import PlainTextResponse

logger = logging.getLogger(__name__)
STARTED = []


async def on_request(request, env, ctx):
    name = request.query_params["name"]
    print("start", name)
    logger.info("log %s", name)
    STARTED.append(name)
    while len(STARTED) < int(request.query_params.get("wait_for", "1")):
        await asyncio.sleep(0)  # both invocations are now in flight
    print("end", name, end="")
    print(" unfinished", name, end="")
    return PlainTextResponse(name)
"""


def talkative(load_site: LoadSite) -> SiteFunctions:
    return load_site({"functions/talk.py": TALKATIVE})


def test_install_and_uninstall_restore_the_streams() -> None:
    stdout, stderr = sys.stdout, sys.stderr
    capture = OutputCapture()
    capture.install()
    capture.install()  # idempotent
    assert sys.stdout is not stdout
    assert capture.installed
    capture.uninstall()
    capture.uninstall()
    assert (sys.stdout, sys.stderr) == (stdout, stderr)


# pytest swaps sys.stdout between test phases: capture is installed inside each test body.


def test_print_outside_an_invocation_passes_through(capsys: pytest.CaptureFixture[str]) -> None:
    with OutputCapture():
        print("plain server output")
    assert "plain server output" in capsys.readouterr().out


def test_print_and_logging_are_captured_per_invocation(
    load_site: LoadSite, capsys: pytest.CaptureFixture[str]
) -> None:
    site = talkative(load_site)
    chain = site.match("/talk", "GET")
    assert chain is not None
    harness = Harness()

    async def scenario() -> list[str]:
        async with client(harness.app(chain)) as http:
            responses = await asyncio.gather(
                *(
                    http.get(f"/talk?name={name}&wait_for=2", headers={"x-test-id": f"id-{name}"})
                    for name in ("ann", "bob")
                )
            )
        return [r.text for r in responses]

    with OutputCapture():
        assert asyncio.run(asyncio.wait_for(scenario(), 10)) == ["ann", "bob"]
    entries = [e for e in harness.logs.entries(SITE) if e.level != "REPORT"]
    by_request: dict[str, list[tuple[str, str]]] = {}
    for entry in entries:
        assert entry.handler == "functions/talk.py:on_request"
        by_request.setdefault(entry.request_id, []).append((entry.level, entry.message))
    for name in ("ann", "bob"):
        assert sorted(by_request[f"id-{name}"]) == sorted(
            [
                ("STDOUT", f"start {name}"),
                ("INFO", f"log {name}"),
                ("STDOUT", f"end {name} unfinished {name}"),
            ]
        )
    assert "start ann" not in capsys.readouterr().out


def test_output_without_site_goes_to_the_output_logger(
    load_site: LoadSite, caplog: pytest.LogCaptureFixture
) -> None:
    chain = talkative(load_site).match("/talk", "GET")
    assert chain is not None
    harness = Harness()

    async def scenario() -> httpx.Response:
        async with client(harness.app(chain, site=None)) as http:
            return await http.get("/talk?name=cy")

    with OutputCapture(), caplog.at_level(logging.INFO, "edgeproxy.edge.output"):
        assert asyncio.run(scenario()).text == "cy"
    assert "request_id=req-0001 handler=functions/talk.py:on_request start cy" in caplog.text
    assert harness.logs.entries(SITE) == []


def test_downstream_output_is_not_captured(capsys: pytest.CaptureFixture[str]) -> None:
    from starlette.requests import Request
    from starlette.responses import Response

    from edgeproxy.edge.context import EdgeContext
    from edgeproxy.edge.env import Env
    from edgeproxy.types import Receive, Scope, Send
    from tests.edge.harness import Origin, chain

    origin = Origin()

    async def noisy_origin(scope: Scope, receive: Receive, send: Send) -> None:
        print("origin speaking")
        await origin(scope, receive, send)

    async def passthrough(request: Request, env: Env, ctx: EdgeContext) -> Response:
        return await ctx.next()

    harness = Harness()

    async def scenario() -> int:
        async with client(harness.app(chain(passthrough), noisy_origin)) as http:
            return (await http.get("/")).status_code

    with OutputCapture():
        assert asyncio.run(scenario()) == 200
    assert "origin speaking" in capsys.readouterr().out
    assert [e.level for e in harness.logs.entries(SITE)] == ["REPORT"]
