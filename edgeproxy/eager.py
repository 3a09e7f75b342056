"""Tasks whose first step runs before they need a task of their own.

Most edge functions answer without waiting for anything: their whole run is one step of
their coroutine. An asyncio task per request still costs its creation, a loop callback to
start it, its registration and its done callbacks: measured at about a twentieth of such
a request. Python 3.12's eager tasks (`asyncio.eager_task_factory`) run a new task's first
step at once for the same reason; we run on 3.11, so `EagerTasks` does it by hand:

- One task is kept parked, waiting for work. `start(coro)` runs the coroutine's first step
  from a loop callback with that task entered as the current one, so that the step sees
  what any task's would: `asyncio.current_task()`, `asyncio.timeout()`, sniffio and anyio
  detecting asyncio, a context of its own (a copy of the caller's, as a task takes).
- A coroutine that finishes in that step never needs more: the parked task stays parked
  for the next one.
- A coroutine that waits is taken over by the parked task, which runs it to the end (its
  later steps in the same context), exactly as if it had been that task's from the start;
  another task is parked for the next. Cancelling the task then cancels the coroutine.

What differs from a task per coroutine: coroutines that finish in their first step, one
after the other, see the same `current_task()`, as handlers of a thread pool see the same
thread. State kept per task (rather than in a context variable) is shared by them.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from edgeproxy.edge.continuation import Continuation

# What a coroutine raises goes to its `failed` callback.
Failed = Callable[[BaseException], None]
Work = tuple[Coroutine[Any, Any, Any], Any, contextvars.Context, Failed]


class EagerTasks:
    """Starts coroutines on `loop`, their first steps run before they have tasks of their
    own (see the module docstring). A coroutine taken over by a task is added to `tasks`
    until it ends (the server waits for those at shutdown); the parked task is not."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tasks: set[asyncio.Task[Any]]) -> None:
        self._loop = loop
        self._tasks = tasks
        # The parked task and the future that brings it work, once it waits on it.
        self._parked: tuple[asyncio.Task[None], asyncio.Future[Work]] | None = None
        self._parking: asyncio.Task[None] | None = None

    def start(self, coro: Coroutine[Any, Any, Any], failed: Failed) -> None:
        """Run `coro` as a task would, its first step from a loop callback soon. What it
        raises (its cancellation included, not KeyboardInterrupt or SystemExit) goes to
        `failed`, as uvicorn's `run_asgi` deals with an app's exception.

        Soon rather than now: the loop then runs the first steps of the coroutines started
        in one iteration one after the other, after whatever started them (the requests'
        routing), which keeps each stage's code and data in the CPU's caches; run inside
        the routing's callback, the same work measured about a fifth slower."""
        context = contextvars.copy_context()
        self._loop.call_soon(self._first_step, coro, context, failed, context=context)

    def _first_step(
        self,
        coro: Coroutine[Any, Any, Any],
        context: contextvars.Context,
        failed: Failed,
    ) -> None:
        parked = self._parked
        if parked is None:
            # None ready (the last one took over a coroutine this loop iteration): a task
            # of its own, as without this class.
            self._track(self._loop.create_task(_guarded(coro, failed), context=context))
            self._park()
            return
        task, work = parked
        asyncio.tasks._enter_task(self._loop, task)
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            failed(exc)
            return
        finally:
            asyncio.tasks._leave_task(self._loop, task)
        self._parked = None
        self._park()
        if work.done():
            # The coroutine cancelled the parked task itself, in its first step: it goes on
            # in a task of its own and gets the cancellation at the wait it is in.
            waiting = self._cancelled(waiting)
            task = self._loop.create_task(_guarded(Continuation(coro, waiting, context), failed))
        else:
            work.set_result((coro, waiting, context, failed))
        self._track(task)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _park(self) -> None:
        if self._parking is None:
            self._parking = self._loop.create_task(self._wait_for_work())

    async def _wait_for_work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        work: asyncio.Future[Work] = self._loop.create_future()
        self._parking = None
        self._parked = (task, work)
        try:
            coro, waiting, context, failed = await work
        except asyncio.CancelledError:
            if self._parked is not None and self._parked[0] is task:
                self._parked = None
            if not work.done() or work.cancelled():
                raise  # cancelled while parked (shutdown, or by a coroutine's first step)
            # Cancelled after it took over a coroutine, before it could run it: the
            # coroutine gets the cancellation at the wait it is in, as a task's would.
            coro, waiting, context, failed = work.result()
            waiting = self._cancelled(waiting)
        await _guarded(Continuation(coro, waiting, context), failed)

    def _cancelled(self, waiting: Any) -> asyncio.Future[Any]:
        """What a coroutine waiting on `waiting` gets its cancellation from, as cancelling
        its task would: `waiting` itself, cancelled, if it is a future still pending."""
        if isinstance(waiting, asyncio.Future) and waiting.cancel():
            return waiting
        cancelled: asyncio.Future[Any] = self._loop.create_future()
        cancelled.cancel()
        return cancelled


async def _guarded(awaitable: Awaitable[Any], failed: Failed) -> None:
    try:
        await awaitable
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        failed(exc)
