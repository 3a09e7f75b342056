"""Upstream failures mapped to client-facing errors, in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

from edgeproxy.exceptions import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
)


@contextmanager
def upstream_errors(where: str) -> Iterator[None]:
    """Translate aiohttp's exceptions for a request to `where` into edgeproxy's (502/504)."""
    try:
        yield
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or str(exc.os_error)
        raise UpstreamConnectError(f"cannot connect to {where}: {reason}") from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout(f"{where} did not answer in time") from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        raise UpstreamConnectError(f"connection to {where} was closed: {exc}") from exc
    except aiohttp.ClientConnectionError as exc:
        raise UpstreamConnectError(f"connection to {where} failed: {exc}") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamProtocolError(f"{where} sent an invalid response: {exc}") from exc
