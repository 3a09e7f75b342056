"""`ctx`, the third argument of every handler, and the invocation walking a chain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from edgeproxy.edge.capture import RUNNING, InvocationOutput, outside_invocation
from edgeproxy.edge.downstream import DownstreamResponse, open_response
from edgeproxy.edge.env import Env
from edgeproxy.edge.handlers import Chain, Params
from edgeproxy.edge.requests import BodyReader, RequestBody, downstream_scope, receive_for
from edgeproxy.types import ASGIApp, Scope

logger = logging.getLogger("edgeproxy.edge")


class NotAResponse(TypeError):
    """A handler returned something other than a starlette Response."""

    def __init__(self, handler: str, value: object) -> None:
        self.handler = handler
        super().__init__(
            f"edge handler {handler} returned {type(value).__name__}, not a "
            "starlette.responses.Response"
        )


class EdgeContext:
    """What a handler knows about its invocation, and how it continues it.

    - `params`: route parameters (`users/[id].py` gives `{"id": "42"}`; a catch-all
      `[[path]].py` gives a list of segments).
    - `data`: a dict shared by the middlewares and the handler of one request.
    - `env`: the same object as the handler's `env` argument.
    - `environment`: `"production"` or `"preview"`.
    - `request_id`: the gateway's ID of this request (also in logs and reports).
    - `request`: the request this handler was called with.
    """

    __slots__ = ("_index", "_invocation", "request")

    def __init__(self, invocation: Invocation, index: int, request: Request) -> None:
        self._invocation = invocation
        self._index = index
        self.request = request

    @property
    def params(self) -> Params:
        return self._invocation.params

    @property
    def data(self) -> dict[str, Any]:
        return self._invocation.data

    @property
    def env(self) -> Env:
        return self._invocation.env

    @property
    def environment(self) -> str:
        return self._invocation.environment

    @property
    def request_id(self) -> str:
        return self._invocation.request_id

    def wait_until(self, awaitable: Awaitable[Any]) -> None:
        """Let `awaitable` finish after the response is sent (logging, cache warming...).

        It runs as a task now; its output is still captured, an exception it raises is
        logged, and the server waits for it when shutting down (up to its drain timeout).
        """
        self._invocation.track(asyncio.ensure_future(awaitable))

    async def next(self, request: Request | None = None) -> DownstreamResponse:
        """Run the rest of the chain — the next middleware, else the handler, else the
        route's action (static files or origin) — and return its response.

        Pass a modified request to forward it instead, e.g. one made with
        `edgeproxy.edge.rewrite_request(request, path=..., headers=..., body=...)` or
        `Request({**request.scope, "path": "/v2" + request.url.path}, request.receive)`.
        The body is forwarded even if the handler already read it. Forwarding one body
        twice (calling `next()` again) needs it read first: `await request.body()`.
        """
        return await self._invocation.call_next(self._index + 1, request or self.request)


class Invocation:
    """One request's walk through a chain, shared by the `ctx` of each step."""

    __slots__ = (
        "body",
        "data",
        "deepest",
        "downstream",
        "env",
        "environment",
        "failure",
        "opened",
        "outcome",
        "output",
        "params",
        "request_id",
        "scope",
        "steps",
        "waits",
    )

    def __init__(
        self,
        chain: Chain,
        *,
        env: Env,
        environment: str,
        request_id: str,
        downstream: ASGIApp,
        body: RequestBody,
        scope: Scope,
        output: InvocationOutput,
    ) -> None:
        self.steps = chain.steps
        # Its own copy: chains are shared between requests (SiteFunctions.match remembers
        # them), and a handler may change what it is given.
        self.params = (
            {
                name: list(value) if isinstance(value, list) else value
                for name, value in chain.params.items()
            }
            if chain.params
            else {}
        )
        self.env = env
        self.environment = environment
        self.request_id = request_id
        self.downstream = downstream
        self.body = body
        self.scope = scope
        self.output = output
        self.data: dict[str, Any] = {}
        self.waits: list[asyncio.Future[Any]] = []
        self.opened: list[DownstreamResponse] = []
        self.deepest = -1
        self.outcome = "canceled"  # until the runner knows better (see HandlerStats)
        # The innermost step an exception (or the wall-time cancellation) came out of.
        self.failure: tuple[BaseException, str] | None = None

    @property
    def handler(self) -> str:
        """The label reports use: the deepest step entered."""
        if self.deepest >= 0:
            return self.steps[self.deepest].label
        return self.steps[-1].label if self.steps else "-"

    def failed_in(self, exc: BaseException) -> str:
        if self.failure is not None and self.failure[0] is exc:
            return self.failure[1]
        return self.handler

    def track(self, task: asyncio.Future[Any]) -> None:
        self.waits.append(task)
        # Outside the invocation: the server's log line is not handler output.
        task.add_done_callback(self._waited, context=outside_invocation())

    def _waited(self, task: asyncio.Future[Any]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        logger.error(
            "wait_until work of %s failed (request %s)",
            self.handler,
            self.request_id,
            exc_info=exc,
        )
        self.output.emit(self.handler, "ERROR", f"wait_until work failed: {exc!r}")

    async def call(self, index: int, request: Request | None) -> Response:
        """Run step `index` with `request` (None: the client's, as it came); past the last
        step, the downstream app."""
        if index >= len(self.steps):
            assert request is not None  # a chain has at least one step
            return await self.call_downstream(request)
        if request is None:
            request = Request(self.scope, BodyReader(self.body, record=True))
        else:
            request = Request(request.scope, receive_for(request, self.body, record=True))
        step = self.steps[index]
        if index > self.deepest:
            self.deepest = index
        token = RUNNING.set((self.output, step.label))
        try:
            result = await step.func(request, self.env, EdgeContext(self, index, request))
        except BaseException as exc:
            if self.failure is None or self.failure[0] is not exc:
                self.failure = (exc, step.label)
            raise
        finally:
            RUNNING.reset(token)
        if not isinstance(result, Response):
            error = NotAResponse(step.label, result)
            self.failure = (error, step.label)
            raise error
        return result

    async def call_next(self, index: int, request: Request) -> DownstreamResponse:
        response = await self.call(index, request)
        if isinstance(response, DownstreamResponse):
            return response
        # A response another handler made: run it like an app, so every `ctx.next()`
        # offers the same read()/text()/json().
        response = await open_response(
            response, request.scope, receive_for(request, self.body, record=True)
        )
        self.opened.append(response)
        return response

    async def call_downstream(self, request: Request) -> DownstreamResponse:
        scope = downstream_scope(request.scope, self.scope)
        receive = receive_for(request, self.body, record=False)
        response = await open_response(self.downstream, scope, receive)
        self.opened.append(response)
        return response

    def close(self) -> None:
        """Stop downstream work whose response nobody reads any more."""
        for response in self.opened:
            response.close()
