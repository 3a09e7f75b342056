"""Admin endpoints for durable objects: list, inspect, evict, run alarms, dead letters, audit."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgeproxy.exceptions import ObjectError, RequestError
from edgeproxy.objects import ObjectDetail, ObjectRecord, ObjectSystem, audit


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def record_json(record: ObjectRecord) -> dict[str, Any]:
    """An object's record as the API (and the CLI) shows it."""
    data = dataclasses.asdict(record)
    data["jurisdiction"] = record.jurisdiction_display
    return data


def detail_json(detail: ObjectDetail) -> dict[str, Any]:
    return {
        **record_json(detail.record),
        "values": detail.values,
        "alarm": detail.alarm,
        "verified": detail.verified,
    }


class ObjectsAdmin:
    """The `/_edge/api/objects` endpoints over the running server's object system."""

    def __init__(self, system: Callable[[], ObjectSystem | None]) -> None:
        self.system = system

    def routes(self, prefix: str) -> list[Route]:
        base = f"{prefix}/objects"
        return [
            Route(base, self._guard(self.list), methods=["GET"]),
            Route(f"{base}/audit", self._guard(self.audit), methods=["GET"]),
            Route(f"{base}/dead-letters", self._guard(self.dead_letters), methods=["GET"]),
            Route(f"{base}/{{id}}", self._guard(self.get), methods=["GET"]),
            Route(f"{base}/{{id}}/evict", self._guard(self.evict), methods=["POST"]),
            Route(f"{base}/{{id}}/alarm", self._guard(self.run_alarm), methods=["POST"]),
            Route(f"{base}/{{id}}/replay", self._guard(self.replay), methods=["POST"]),
        ]

    def _guard(self, endpoint: Callable[[Request, ObjectSystem], Any]) -> Callable[[Request], Any]:
        async def guarded(request: Request) -> Response:
            system = self.system()
            if system is None:
                return _error(404, "no-objects", "no durable objects are configured")
            try:
                response: Response = await endpoint(request, system)
            except RequestError as exc:
                return _error(exc.status, exc.code, exc.detail)
            except ObjectError as exc:
                return _error(400, "refused", str(exc))
            return response

        return guarded

    async def list(self, request: Request, system: ObjectSystem) -> Response:
        records = await system.list_objects(
            request.query_params.get("namespace") or None,
            request.query_params.get("jurisdiction") or None,
        )
        return JSONResponse({"objects": [record_json(record) for record in records]})

    async def get(self, request: Request, system: ObjectSystem) -> Response:
        return JSONResponse(detail_json(await system.get_object(request.path_params["id"])))

    async def evict(self, request: Request, system: ObjectSystem) -> Response:
        return JSONResponse({"evicted": await system.evict(request.path_params["id"])})

    async def run_alarm(self, request: Request, system: ObjectSystem) -> Response:
        try:
            await system.run_alarm_now(request.path_params["id"])
        except ObjectError:
            raise
        except Exception as exc:  # the object's own alarm code failed: report, don't crash
            return _error(500, "alarm-failed", f"{type(exc).__name__}: {exc}")
        return JSONResponse({"ran": True})

    async def dead_letters(self, request: Request, system: ObjectSystem) -> Response:
        letters = await system.dead_letters(request.query_params.get("namespace") or None)
        return JSONResponse({"dead_letters": [dataclasses.asdict(letter) for letter in letters]})

    async def replay(self, request: Request, system: ObjectSystem) -> Response:
        try:
            ran = await system.replay_dead_letter(request.path_params["id"])
        except ObjectError:
            raise
        except Exception as exc:
            return _error(500, "alarm-failed", f"{type(exc).__name__}: {exc}")
        return JSONResponse({"replayed": ran})

    async def audit(self, request: Request, system: ObjectSystem) -> Response:
        # Reads every shard file: off the event loop.
        report = await asyncio.to_thread(audit, system.settings)
        return JSONResponse(
            {
                "ok": report.ok,
                "shards": report.shards,
                "objects": report.objects,
                "macs_checked": report.macs_checked,
                "violations": [dataclasses.asdict(v) for v in report.violations],
                "summary": report.summary(),
            },
            status_code=200,
        )


OPENAPI_PATHS: dict[str, Any] = {
    "/_edge/api/objects": {
        "get": {"summary": "Stored durable objects (?namespace=, ?jurisdiction=)"}
    },
    "/_edge/api/objects/audit": {
        "get": {"summary": "Scan every shard: each object stored only in its jurisdiction"}
    },
    "/_edge/api/objects/dead-letters": {
        "get": {"summary": "Alarms that exhausted their retries (?namespace=)"}
    },
    "/_edge/api/objects/{id}": {"get": {"summary": "One object's keys, values and alarm"}},
    "/_edge/api/objects/{id}/evict": {"post": {"summary": "Drop the live instance from memory"}},
    "/_edge/api/objects/{id}/alarm": {"post": {"summary": "Run the object's alarm now, once"}},
    "/_edge/api/objects/{id}/replay": {
        "post": {"summary": "Re-run the object's dead-lettered alarms"}
    },
}
