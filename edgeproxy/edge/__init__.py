"""Edge handlers: Python functions that see a request before the cache and the origin.

Writing a handler
-----------------

A handler module defines `on_request` and/or a method variant (`on_request_get`,
`on_request_post`, `on_request_put`, `on_request_patch`, `on_request_delete`,
`on_request_head`, `on_request_options`); a variant wins over `on_request` for its method,
and a module with neither for the request's method does not handle it (as if it were not
there). Each is an `async def` taking three arguments and returning a Response::

    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    async def on_request_get(request: Request, env, ctx) -> Response:
        return JSONResponse({"hello": env.GREETING, "id": ctx.params["id"]})

- `request` is a `starlette.requests.Request`; the return value any
  `starlette.responses.Response` (JSONResponse, StreamingResponse...).
- `env` (`Env`) holds the site's variables of the request's environment and the bindings:
  `env.API_KEY` or `env["API_KEY"]`, `env.ASSETS` (`Assets`: the deployment's static
  files), durable-object namespaces.
- `ctx` (`EdgeContext`) has `params`, `data` (shared by the middlewares and the handler of
  one request), `environment` (`"production"` or `"preview"`), `request_id`, `env`,
  `wait_until(awaitable)` (work that may finish after the response) and
  `await ctx.next(request=None)` — the rest of the chain, ending at the route's action,
  whose response (`DownstreamResponse`) streams through when returned and can be read with
  `await response.read()` / `text()` / `json()`. `rewrite_request()` makes a changed copy
  of a request to pass to `ctx.next()`.

Output: `print()` and `logging.getLogger(__name__)` inside a handler are captured per
request into the site's log (`edgeproxy logs --site S --tail`). Imports between the files
of one `functions/` directory are relative (`from ._lib import x`); the directory is not on
`sys.path`.

Limits: a handler is cancelled after `wall_time` (504), and reported when it blocks the
event loop longer than `cpu_time` — use `await asyncio.to_thread(...)` for blocking calls.

Modules
-------

handlers     HandlerFunction, HandlerModule, Chain
modules      synthetic packages (isolation per deployment, unloading)
loader       importing handler files, `module.py:function`, RouteHandlers, load errors
functions    SiteFunctions: Pages-style routing of a deployment's functions/
routefilter  `_routes.json`
requests     replayable request body, rewrite_request
downstream   DownstreamResponse, running the next ASGI app
env          Env, Assets
context      EdgeContext (`ctx`), the invocation walking a chain
runner       EdgeRunner, HandlerLimits
reports      invocation reports
metrics      HandlerStats (Prometheus collector)
logs         LogHub
capture      print/logging capture
watchdog     LoopWatchdog
"""

from edgeproxy.edge.context import EdgeContext
from edgeproxy.edge.downstream import DownstreamResponse
from edgeproxy.edge.env import Assets, Env
from edgeproxy.edge.requests import rewrite_request

__all__ = ["Assets", "DownstreamResponse", "EdgeContext", "Env", "rewrite_request"]
