"""The exceptions edgeproxy raises, rooted in one tree.

    EdgeError
    ├── ConfigError                 rules.yaml could not be loaded (carries every issue found)
    ├── HandlerLoadError            edge handler code failed to load (file and traceback)
    ├── StoreError                  a deployment operation was refused; carries the API status
    ├── BuildFailed                 a build produced no deployment (with the log's last lines)
    ├── ResponseAborted             the origin failed after the response started: cut it
    ├── RequestError                something a client will see; carries `status` and `code`
    │   ├── BadRequest              400  malformed or ambiguous request target
    │   ├── NotFound                404  no route matched
    │   ├── PayloadTooLarge         413  request body over the configured limit
    │   ├── UpstreamError           an origin could not give an answer
    │   │   ├── UpstreamConnectError   502  refused, reset, DNS failure
    │   │   ├── UpstreamProtocolError  502  the origin broke HTTP
    │   │   ├── UpstreamTimeout        504  connect or read timed out
    │   │   └── NoHealthyUpstream      503  every target is ejected or down
    │   ├── HandlerException        500  an edge handler raised or returned no Response
    │   ├── HandlerTimeout          504  an edge handler ran past its wall-time limit
    │   └── FunctionsUnavailable    500  a deployment's functions failed to load
    └── ObjectError                 durable objects (edgeproxy/objects/)
        ├── ObjectSettingsError     settings refused at start: names, tag collision, shard layout
        ├── UnknownJurisdiction     a jurisdiction name that is not configured
        ├── UnknownNamespace        a binding that is not configured
        ├── ObjectValueError        (also TypeError) not plain JSON, or an argument of wrong kind
        ├── StorageLimitError       (also ValueError) key, value or batch over its limit
        ├── RpcMethodError          (also AttributeError) not a public async method of the class
        ├── RemoteObjectError       the object raised; names the original type
        ├── ObjectResetError        503  a write failed to commit; the object was reset
        ├── ObjectDeadlockError     an object waited on itself while its input gate was closed
        ├── ObjectSystemClosed      503  the object system is not running
        ├── InvalidObjectId         400  malformed ID: length, hex, case, version
        ├── ForeignObjectId         404  the ID's MAC does not verify under this namespace
        ├── JurisdictionMismatch    400  an ID of another jurisdiction than the one required
        └── ObjectNotFound          404  no namespace recognizes the ID

`RequestError.code` is the machine-readable value of the `X-Edge-Error` response header.
Object errors that show a status are also `RequestError`s, so they reach clients as such.
"""

from __future__ import annotations

from collections.abc import Iterable
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


# -- durable objects ----------------------------------------------------------------------


class ObjectError(EdgeError):
    """Root of the durable-object errors (edgeproxy/objects/)."""


class ObjectSettingsError(ObjectError):
    """The object settings or the state on disk do not allow the system to start."""


class UnknownJurisdiction(ObjectError):
    """A jurisdiction name that is not configured."""


class UnknownNamespace(ObjectError):
    """A namespace binding that is not configured."""


class ObjectValueError(ObjectError, TypeError):
    """A value that is not plain JSON, or a storage argument of the wrong type or kind."""


class StorageLimitError(ObjectError, ValueError):
    """A key, value or batch over its storage limit; nothing was written."""


class RpcMethodError(ObjectError, AttributeError):
    """An RPC name that is not a public coroutine method of the object's class."""


class RemoteObjectError(ObjectError):
    """The object raised an exception that cannot be re-raised as its own type."""

    def __init__(self, remote_type: str, message: str) -> None:
        self.remote_type = remote_type
        self.remote_message = message
        super().__init__(f"{remote_type}: {message}")


class ObjectResetError(ObjectError, RequestError):
    """A write failed to commit: the object was reset and its held outputs became errors."""

    status = 503
    code = "object-reset"


class ObjectDeadlockError(ObjectError):
    """An object awaited an event to itself while its own input gate was closed."""


class ObjectSystemClosed(ObjectError, RequestError):
    """The object system is not started, or is stopping."""

    status = 503
    code = "objects-unavailable"


class InvalidObjectId(ObjectError, RequestError):
    """A malformed object ID string."""

    status = 400
    code = "object-id-invalid"


class ForeignObjectId(ObjectError, RequestError):
    """An object ID whose MAC does not verify under the namespace asked."""

    status = 404
    code = "object-id-foreign"


class JurisdictionMismatch(ObjectError, RequestError):
    """An object ID of another jurisdiction than the namespace or shard requires."""

    status = 400
    code = "object-jurisdiction-mismatch"


class ObjectNotFound(ObjectError, RequestError):
    """No configured or stored namespace recognizes the object ID."""

    status = 404
    code = "object-not-found"


class HandlerLoadError(EdgeError):
    """Edge handler code could not be loaded; the message names the file and has the traceback.

    Raised at load time (config load or deploy), never per request, so a broken handler
    fails the deploy instead of its first request.
    """

    def __init__(self, file: str, message: str) -> None:
        self.file = file
        super().__init__(f"{file}: {message}")


class HandlerException(RequestError):
    status = 500
    code = "handler-exception"


class HandlerTimeout(RequestError):
    status = 504
    code = "handler-timeout"


class FunctionsUnavailable(RequestError):
    """A deployment whose functions no longer load answers this, not its bare files."""

    status = 500
    code = "functions-unavailable"


class StoreError(EdgeError):
    """A deployment operation was refused; `status` is the HTTP status the API answers."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class BuildFailed(EdgeError):
    """A build did not produce a deployment; the message says why, `tail` its last lines."""

    def __init__(self, message: str, tail: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.tail = list(tail)


class ResponseAborted(EdgeError):
    """The origin failed after the response had started; the client connection is cut."""
