"""/api/id: what a namespace makes of an ID, with object errors caught and reported.

?binding= (default COUNTER), ?jurisdiction= a view, ?op=:
  parse   id_from_string(?id=)
  name    id_from_name(?name=)
  unique  new_unique_id(?in=)
  get     get() of the ID ?from_binding= makes for ?name= (an ObjectId, not a string)
"""

from starlette.requests import Request
from starlette.responses import JSONResponse

from edgeproxy.exceptions import ObjectError


def _namespace(env, binding: str, jurisdiction: str | None):
    namespace = env[binding]
    return namespace.jurisdiction(jurisdiction) if jurisdiction else namespace


async def on_request_get(request: Request, env, ctx) -> JSONResponse:
    query = request.query_params
    try:
        namespace = _namespace(env, query.get("binding", "COUNTER"), query.get("jurisdiction"))
        op = query["op"]
        if op == "parse":
            object_id = namespace.id_from_string(query["id"])
        elif op == "name":
            object_id = namespace.id_from_name(query["name"])
        elif op == "unique":
            object_id = namespace.new_unique_id(query.get("in"))
        else:
            source = _namespace(env, query["from_binding"], query.get("from_jurisdiction"))
            object_id = namespace.get(source.id_from_name(query["name"])).id
    except ObjectError as exc:
        return JSONResponse(
            {
                "error": type(exc).__name__,
                "status": getattr(exc, "status", None),
                "detail": str(exc),
            }
        )
    return JSONResponse(
        {"id": str(object_id), "jurisdiction": object_id.jurisdiction, "name": object_id.name}
    )
