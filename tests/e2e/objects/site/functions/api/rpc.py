"""POST /api/rpc: {"binding", "name", "method", "args"} -> {"result"} or {"error", "detail"}.

Any exception from the call is reported, so tests see the type the caller got.
"""

from starlette.requests import Request
from starlette.responses import JSONResponse


async def on_request_post(request: Request, env, ctx) -> JSONResponse:
    call = await request.json()
    namespace = env[call.get("binding", "COUNTER")]
    stub = namespace.get(namespace.id_from_name(call["name"]))
    try:
        result = await getattr(stub, call["method"])(*call.get("args", []))
    except Exception as exc:
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)})
    return JSONResponse({"id": str(stub.id), "result": result})
