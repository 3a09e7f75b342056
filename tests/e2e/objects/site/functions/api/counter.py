"""/api/counter: one COUNTER object, chosen by ?name=, ?id= or ?unique=1, in ?jurisdiction=.

GET reads it; POST adds one through ?mode= plain, transaction or blocking. Object errors
are not caught: the gateway answers them.
"""

from starlette.requests import Request
from starlette.responses import JSONResponse

METHODS = {
    "plain": "increment",
    "transaction": "increment_in_transaction",
    "blocking": "increment_blocking",
}


def _stub(request: Request, env):
    query = request.query_params
    namespace = env.COUNTER
    if query.get("jurisdiction"):
        namespace = namespace.jurisdiction(query["jurisdiction"])
    if "id" in query:
        object_id = namespace.id_from_string(query["id"])
    elif "unique" in query:
        object_id = namespace.new_unique_id()
    else:
        object_id = namespace.id_from_name(query.get("name", "default"))
    return namespace, object_id, namespace.get(object_id)


def _answer(namespace, object_id, count: int) -> JSONResponse:
    return JSONResponse(
        {
            "id": str(object_id),
            "name": object_id.name,
            "jurisdiction": object_id.jurisdiction,
            "scope": namespace.scope,
            "count": count,
        }
    )


async def on_request_get(request: Request, env, ctx) -> JSONResponse:
    namespace, object_id, stub = _stub(request, env)
    return _answer(namespace, object_id, await stub.value())


async def on_request_post(request: Request, env, ctx) -> JSONResponse:
    namespace, object_id, stub = _stub(request, env)
    method = METHODS[request.query_params.get("mode", "plain")]
    return _answer(namespace, object_id, await getattr(stub, method)())
