"""What the gateway learns about one request while handling it (for logs and metrics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RequestContext:
    host: str
    client_ip: str
    scheme: str
    route: str = "-"
    upstream: str = ""
    upstream_seconds: float = 0.0
    status: int = 0
    bytes_sent: int = 0
    error: str = ""
    request_id: str = ""
