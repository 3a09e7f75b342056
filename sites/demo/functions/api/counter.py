"""/api/counter?name=N[&jurisdiction=eu]: a durable-object counter per name.

GET reads the count, POST adds one. Each name is one object; with a jurisdiction the object
is created and stored only in that jurisdiction's storage.
"""

from starlette.requests import Request
from starlette.responses import JSONResponse


def _stub(request: Request, env):
    namespace = env.COUNTER
    jurisdiction = request.query_params.get("jurisdiction")
    if jurisdiction:
        namespace = namespace.jurisdiction(jurisdiction)
    object_id = namespace.id_from_name(request.query_params.get("name", "default"))
    return object_id, namespace.get(object_id)


async def on_request_get(request: Request, env, ctx) -> JSONResponse:
    object_id, counter = _stub(request, env)
    return JSONResponse({"id": str(object_id), "count": await counter.value()})


async def on_request_post(request: Request, env, ctx) -> JSONResponse:
    object_id, counter = _stub(request, env)
    return JSONResponse({"id": str(object_id), "count": await counter.increment()})
