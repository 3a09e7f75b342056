"""One JSON line per request on stdout."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from edgeproxy.context import RequestContext
from edgeproxy.types import Scope


class AccessLog:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def write(self, scope: Scope, ctx: RequestContext, seconds: float, request_id: str) -> None:
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        if query:
            path += b"?" + query
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "request_id": request_id,
            "client": ctx.client_ip,
            "method": scope.get("method", "GET"),
            "host": ctx.host,
            "path": path.decode("latin-1"),
            "status": ctx.status,
            "bytes": ctx.bytes_sent,
            "duration_ms": round(seconds * 1000, 3),
            "route": ctx.route,
            "upstream": ctx.upstream or None,
            "upstream_ms": round(ctx.upstream_seconds * 1000, 3) if ctx.upstream else None,
        }
        if ctx.error:
            entry["error"] = ctx.error
        self.stream.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self.stream.flush()
