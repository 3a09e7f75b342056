"""/api/fetch/?name=: the request, passed on to the COUNTER object's fetch()."""

from starlette.requests import Request
from starlette.responses import Response


async def on_request(request: Request, env, ctx) -> Response:
    namespace = env.COUNTER
    stub = namespace.get(namespace.id_from_name(request.query_params.get("name", "default")))
    return await stub.fetch(request)
