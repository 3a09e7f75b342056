"""The exceptions edgeproxy raises, rooted in one tree.

    EdgeError
    ├── ConfigError                 rules.yaml could not be loaded (carries every issue found)
    └── RequestError                something a client will see; carries `status` and `code`
        ├── BadRequest              400  malformed or ambiguous request target
        ├── NotFound                404  no route matched
        ├── PayloadTooLarge         413  request body over the configured limit
        └── UpstreamError           an origin could not give an answer
            ├── UpstreamConnectError   502  refused, reset, DNS failure
            ├── UpstreamProtocolError  502  the origin broke HTTP
            ├── UpstreamTimeout        504  connect or read timed out
            └── NoHealthyUpstream      503  every target is ejected or down

`RequestError.code` is the machine-readable value of the `X-Edge-Error` response header.
"""

from __future__ import annotations

from dataclasses import dataclass


class EdgeError(Exception):
    """Root of every exception edgeproxy raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file: where it is and what is wrong."""

    path: str
    message: str
    file: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        location = f" {self.path}:" if self.path else ""
        return f"{where}:{location} {self.message}"


class ConfigError(EdgeError):
    """A config could not be loaded; `issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


class RequestError(EdgeError):
    """An error answered to the client with `status` and an `X-Edge-Error: code` header."""

    status = 500
    code = "internal"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class BadRequest(RequestError):
    status = 400
    code = "bad-request"


class NotFound(RequestError):
    status = 404
    code = "no-route"


class PayloadTooLarge(RequestError):
    status = 413
    code = "body-too-large"


class UpstreamError(RequestError):
    status = 502
    code = "upstream"


class UpstreamConnectError(UpstreamError):
    status = 502
    code = "upstream-connect"


class UpstreamProtocolError(UpstreamError):
    status = 502
    code = "upstream-protocol"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream-timeout"


class NoHealthyUpstream(UpstreamError):
    status = 503
    code = "no-healthy-upstream"
