"""The edge runner: runs a handler chain for one request, as a pure-ASGI step.

The gateway matches a chain (a route's `handler:` or a deployment's functions) and calls
`EdgeRunner.run()` with the route's action as `downstream`; a function request resolved on
the direct path (`edgeproxy.direct`) is run by `EdgeRunner.handle`, bound to its `Call`, as
an eager task (`edgeproxy.eager`), and its plain Response written whole. The runner
answers the request itself: the handler's Response, or an error page when the handler
fails —

- it raises: 500, `X-Edge-Error: handler-exception`, logged with its traceback;
- it returns something that is not a Response, or a Response with a header no server may
  send: 500, the same header, logged;
- it runs past `HandlerLimits.wall_time` (awaiting `ctx.next()` included): it is
  cancelled, 504, `X-Edge-Error: handler-timeout`;
- an error the downstream app raised before answering (502 from an origin...) and the
  handler did not catch: that error's page.

When the client leaves before the response is complete, the invocation's outcome is
`canceled` and nothing more is sent: a chain still running is cancelled (under edgeproxy's
HTTP protocol, which reports the disconnect at once), and whatever it raises then (the
proxy behind `ctx.next()` giving up, a body read cut short) is not the handler's failure.

Once a response has started, nothing else can be sent: a failure then cuts the connection
(`ResponseAborted`, as the proxy does). Each invocation writes one report (see
`edgeproxy.edge.reports`), after its `ctx.wait_until()` work has finished.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from starlette.responses import Response

from edgeproxy.deadlines import Deadlines
from edgeproxy.direct import wire_fields
from edgeproxy.edge.capture import InvocationOutput
from edgeproxy.edge.client import ClientSend, ClientWatch, WholeResponse
from edgeproxy.edge.context import Invocation, NotAResponse
from edgeproxy.edge.continuation import Continuation
from edgeproxy.edge.env import Env
from edgeproxy.edge.handlers import Chain
from edgeproxy.edge.logs import LogHub
from edgeproxy.edge.reports import InvocationReports, make_report
from edgeproxy.edge.requests import RequestBody
from edgeproxy.edge.waits import WaitUntilWork
from edgeproxy.edge.walltime import WallTime
from edgeproxy.edge.watchdog import LoopWatchdog
from edgeproxy.exceptions import HandlerException, HandlerTimeout, RequestError, ResponseAborted
from edgeproxy.responses import send_error
from edgeproxy.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("edgeproxy.edge")

# The status an invocation whose client left is counted with (nginx's, as the proxy does).
CLIENT_GONE = 499

# How a Response whose body is all in memory sends itself (JSONResponse, HTMLResponse... too).
_PLAIN_CALL = Response.__call__


@dataclass(frozen=True, slots=True)
class HandlerLimits:
    """What one invocation may take.

    `wall_time`: seconds until the chain must have returned its Response (the body may
    stream on after); past it the handler is cancelled and the client gets a 504. Also how
    long `ctx.wait_until()` work may run on after the response.
    `cpu_time`: seconds a handler may block the event loop before the watchdog reports it.
    """

    wall_time: float = 30.0
    cpu_time: float = 0.05

    def __post_init__(self) -> None:
        if self.wall_time <= 0 or self.cpu_time <= 0:
            raise ValueError(f"handler limits must be positive: {self}")


class Call(NamedTuple):
    """What one invocation runs with (`EdgeRunner.handle`).

    `site` names the log hub the handler output goes to (None for a route handler outside
    any site). `done(status, body_bytes)` is called when the request is over (also when
    the runner raises). `whole`, when given, writes a plain Response (body in memory, no
    background task) at once instead of as messages to `send`.
    """

    chain: Chain
    env: Env
    environment: str
    request_id: str
    site: str | None
    downstream: ASGIApp
    limits: HandlerLimits
    done: Callable[[int, int], None]
    whole: WholeResponse | None = None


# A Call from a tuple of all its fields, by `tuple.__new__` itself: the NamedTuple's
# generated `__new__` is a Python function, one call more per request.
make_call: Callable[[tuple[Any, ...]], Call] = functools.partial(tuple.__new__, Call)


class EdgeRunner:
    """Runs handler chains; one per server process, shared by all sites and routes."""

    def __init__(
        self,
        reports: InvocationReports,
        logs: LogHub | None = None,
        watchdog: LoopWatchdog | None = None,
    ) -> None:
        self.reports = reports
        self.logs = logs
        self.watchdog = watchdog
        self._limits: Deadlines[WallTime] = Deadlines(WallTime.expire)
        # `ctx.wait_until()` work; `waits.drain()` at shutdown.
        self.waits = WaitUntilWork(self._write_report)

    async def run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        chain: Chain,
        *,
        env: Env,
        environment: str,
        request_id: str,
        site: str | None,
        downstream: ASGIApp,
        limits: HandlerLimits | None = None,
    ) -> int:
        """Answer one request with `chain`; returns the status sent (0 for a WebSocket,
        which handlers do not see: it goes straight to `downstream`).

        `site` names the log hub the handler output goes to (None for a route handler
        outside any site: its output goes to the `edgeproxy.edge.output` logger).
        Raises only `ResponseAborted` (a failure after the response started: cut the
        connection) and what the client's `send` raises.
        """
        ended: list[int] = []
        call = Call(
            chain, env, environment, request_id, site, downstream,
            limits or HandlerLimits(), lambda status, _: ended.append(status),
        )  # fmt: skip
        await self.handle(call, scope, receive, send)
        return ended[0]

    async def handle(self, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
        """`run` as an ASGI app, once bound to its `call` (`functools.partial`)."""
        chain, env, environment, request_id, site, downstream, limits, done, whole = call
        if scope["type"] != "http":
            try:
                await downstream(scope, receive, send)
            finally:
                done(0, 0)
            return
        if self.watchdog is not None:
            for step in chain.steps:
                self.watchdog.limits[step.label] = limits.cpu_time
        body = RequestBody(receive)
        output = InvocationOutput(self.logs, site, request_id)
        invocation = Invocation(
            chain,
            env=env,
            environment=environment,
            request_id=request_id,
            downstream=downstream,
            body=body,
            scope=scope,
            output=output,
        )
        sender = ClientSend(send)
        client = ClientWatch(scope, body)
        started = time.perf_counter()
        duration: float | None = None
        try:
            task: asyncio.Task[Any] | None = None
            limit: WallTime | None = None
            response: Response | None = None
            error: RequestError | None = None
            # The chain's first step is taken by hand, in this task as `await` would: a chain
            # that answers without waiting for anything (the usual function) needs no limit
            # and no watch, which cost a few percent of its request to arm and disarm.
            chain_call = invocation.call(0, None)
            try:
                try:
                    waiting = chain_call.send(None)
                except StopIteration as returned:
                    response = returned.value
                else:
                    # It waits: from here on it runs under its wall-time limit, and is
                    # cancelled if the client leaves. (Outside a task, as no server runs
                    # us, there is nothing to cancel and no limit.)
                    task = asyncio.current_task()
                    if task is not None:
                        client.watch(task)
                        limit = WallTime(task)
                        left = limits.wall_time - (time.perf_counter() - started)
                        self._limits.add(limit, task.get_loop(), left)
                    response = await Continuation(chain_call, waiting)
            except asyncio.CancelledError as exc:
                if limit is not None and limit.ours():
                    error = self._failed(invocation, exc, limits, client, timed_out=True)
                elif client.cancelled:
                    invocation.outcome = "canceled"
                else:
                    raise
            except Exception as exc:
                error = self._failed(invocation, exc, limits, client)
            else:
                invocation.outcome = "ok"
            finally:
                if limit is not None:
                    self._limits.discard(limit)
                    client.watch(None)
                if client.cancelled and task is not None and task.cancelling():
                    task.uncancel()
            duration = time.perf_counter() - started
            if response is not None:
                plain = (
                    self._respond_plain(invocation, response, sender, whole)
                    if type(response).__call__ is _PLAIN_CALL
                    else False
                )
                if isinstance(plain, RequestError):
                    error = plain
                elif not plain:
                    client.listen()
                    error = await self._respond(invocation, response, sender)
            if error is not None and not client.left(sender):
                client.listen()
                await send_error(scope, sender, error, request_id)
        finally:
            if duration is None:
                duration = time.perf_counter() - started
            left = client.left(sender)
            if left:
                invocation.outcome = "canceled"
            if invocation.opened:
                invocation.close()
            status = CLIENT_GONE if left and not sender.started else sender.status
            if invocation.waits:
                self.waits.report_after(invocation, site, status, duration, limits.wall_time)
            else:
                self._write_report(invocation, site, status, duration, 0.0)
            done(status, sender.sent)

    def _failed(
        self,
        invocation: Invocation,
        exc: BaseException,
        limits: HandlerLimits,
        client: ClientWatch,
        *,
        timed_out: bool = False,
    ) -> RequestError | None:
        """The error page for an exception out of the chain (or its wall-time limit
        expiring: `timed_out`), logged and counted; None once the client has left."""
        if client.gone:
            # What the chain raised once its client left (the proxy behind `ctx.next()`
            # giving up, a body read cut short) is not the handler's failure.
            invocation.outcome = "canceled"
            return None
        if timed_out:
            handler = invocation.failed_in(exc)
            invocation.outcome = "timeout"
            message = (
                f"edge handler {handler} exceeded its wall-time limit of "
                f"{limits.wall_time:g} s and was cancelled (request {invocation.request_id})"
            )
            logger.error("%s", message)
            invocation.output.emit(handler, "ERROR", message)
            return HandlerTimeout(f"edge handler {handler} timed out")
        if isinstance(exc, RequestError):
            # Raised downstream (an origin's 502...) and not caught by the handler: that
            # error's own page, as the gateway would send it without a handler.
            invocation.outcome = "ok"
            logger.warning(
                "%s: %s (through edge handler %s)", exc.code, exc.detail, invocation.handler
            )
            return exc
        invocation.outcome = "exception"
        if isinstance(exc, NotAResponse):
            logger.error("%s (request %s)", exc, invocation.request_id)
            invocation.output.emit(exc.handler, "ERROR", str(exc))
            return HandlerException(f"edge handler {exc.handler} failed")
        handler = invocation.failed_in(exc)
        self._log_exception(invocation, handler, exc, "raised")
        return HandlerException(f"edge handler {handler} failed")

    def _respond_plain(
        self,
        invocation: Invocation,
        response: Response,
        sender: ClientSend,
        whole: WholeResponse | None,
    ) -> RequestError | bool:
        """For a plain Response (its body in memory): True once written whole, else False
        (to be sent as messages); the error page to send instead for a header that cannot
        be sent, refused before anything was sent, rather than (as under uvicorn's own
        check) a connection closed without an answer."""
        try:
            if whole is not None and response.background is None and sender.whole(whole, response):
                return True
            if wire_fields(response.raw_headers) is None:
                raise ValueError("a response header no server may send")
        except ValueError as exc:
            invocation.outcome = "exception"
            handler = invocation.handler
            self._log_exception(invocation, handler, exc, "returned an unsendable response")
            return HandlerException(f"edge handler {handler} failed")
        return False

    async def _respond(
        self, invocation: Invocation, response: Response, sender: ClientSend
    ) -> RequestError | None:
        """Send the chain's response as messages; returns the error page to send instead,
        if any."""
        try:
            await response(invocation.scope, invocation.body.disconnect_only, sender)
        except ResponseAborted:
            raise
        except RequestError as exc:
            if sender.failed:
                raise
            if sender.started:
                # The origin failed midway through a body the handler passed on.
                raise ResponseAborted(f"downstream failed mid-response: {exc}") from exc
            return exc
        except Exception as exc:
            if sender.failed:
                raise
            invocation.outcome = "exception"
            handler = invocation.failed_in(exc)
            self._log_exception(invocation, handler, exc, "failed sending its response")
            if sender.started:
                raise ResponseAborted(f"edge handler {handler} failed mid-response") from exc
            return HandlerException(f"edge handler {handler} failed")
        return None

    @staticmethod
    def _log_exception(invocation: Invocation, handler: str, exc: BaseException, what: str) -> None:
        logger.error(
            "edge handler %s %s (request %s)", handler, what, invocation.request_id, exc_info=exc
        )
        invocation.output.emit(handler, "ERROR", f"{what}: {type(exc).__name__}: {exc}")

    def _write_report(
        self,
        invocation: Invocation,
        site: str | None,
        status: int,
        duration: float,
        wait_until: float,
    ) -> None:
        output = invocation.output
        if output.partial:
            output.flush()
        self.reports.write(
            make_report(
                (
                    invocation.request_id,
                    invocation.handler,
                    status,
                    duration,
                    wait_until,
                    invocation.outcome,
                    site,
                )
            )
        )
