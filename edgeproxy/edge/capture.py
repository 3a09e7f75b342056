"""Capturing what handler code prints and logs, per invocation, into the log hub.

A context variable holds the invocation (and handler) the current task works for. While
`OutputCapture` is installed, `sys.stdout`/`sys.stderr` are wrappers that send writes made
inside an invocation to its site's `LogHub` (one entry per line) and pass every other write
through; a `logging.Handler` on the `_edgeproxy_handlers` logger does the same for records.
Handler code should log with `logging.getLogger(__name__)`: its module names live under
that package, and records still propagate to the server's own log handlers.

Work started with `ctx.wait_until()` or `asyncio.to_thread()` inherits the context, so its
output is captured too; the downstream app runs outside it.
"""

from __future__ import annotations

import contextvars
import io
import logging
import sys
from contextvars import ContextVar
from typing import TextIO, cast

from edgeproxy.edge.logs import LogHub
from edgeproxy.edge.modules import ROOT_PACKAGE

output_logger = logging.getLogger("edgeproxy.edge.output")

# A print without a newline is kept until its line ends, but not forever.
MAX_PARTIAL_LINE = 64 * 1024


class InvocationOutput:
    """Where one invocation's output goes: its site's hub, else the `edgeproxy.edge.output`
    logger (route handlers of no site)."""

    __slots__ = ("logs", "partial", "request_id", "site")

    def __init__(self, logs: LogHub | None, site: str | None, request_id: str) -> None:
        self.logs = logs if site is not None else None
        self.site = site or ""
        self.request_id = request_id
        # Lines not finished yet, by (handler, level): `flush()` emits them.
        self.partial: dict[tuple[str, str], str] = {}

    def emit(self, handler: str, level: str, message: str) -> None:
        """One entry, as is."""
        if self.logs is not None:
            self.logs.append(self.site, self.request_id, handler, level, message)
        else:
            levelno = logging.getLevelName(level)
            output_logger.log(
                levelno if isinstance(levelno, int) else logging.INFO,
                "request_id=%s handler=%s %s",
                self.request_id,
                handler,
                message,
            )

    def write(self, handler: str, level: str, text: str) -> None:
        """Stream text: each complete line becomes an entry, the rest waits for more."""
        key = (handler, level)
        buffered = self.partial.pop(key, "") + text
        *lines, rest = buffered.split("\n")
        for line in lines:
            self.emit(handler, level, line)
        if len(rest) > MAX_PARTIAL_LINE:
            self.emit(handler, level, rest)
        elif rest:
            self.partial[key] = rest

    def flush(self) -> None:
        """Emit the unfinished lines (at the end of the invocation)."""
        partial, self.partial = self.partial, {}
        for (handler, level), text in partial.items():
            self.emit(handler, level, text)


# The invocation (its output) and the handler the current context runs: set around each
# step of a chain (`Invocation.call`, directly: a function call more per step measured).
RUNNING: ContextVar[tuple[InvocationOutput, str] | None] = ContextVar(
    "edgeproxy_edge_invocation", default=None
)


def outside_invocation() -> contextvars.Context:
    """A copy of the current context in which no invocation is active."""
    context = contextvars.copy_context()
    context.run(RUNNING.set, None)
    return context


class _StreamRouter(io.TextIOBase):
    """A stand-in for sys.stdout/sys.stderr that routes invocation writes to the hub."""

    def __init__(self, original: TextIO, level: str) -> None:
        self.original = original
        self.level = level
        self.active = True

    def write(self, text: str) -> int:
        invocation = RUNNING.get() if self.active else None
        if invocation is None:
            return self.original.write(text)
        output, handler = invocation
        output.write(handler, self.level, text)
        return len(text)

    def flush(self) -> None:
        self.original.flush()

    def isatty(self) -> bool:
        return self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.original.encoding


class _HubHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        invocation = RUNNING.get()
        if invocation is None:
            return
        output, handler = invocation
        if output.logs is not None:  # else the record reaches the server log by propagation
            output.emit(handler, record.levelname, self.format(record))


class OutputCapture:
    """Installs (and uninstalls) the stdout/stderr wrappers and the logging handler.

    Explicit, so the server and each test decide when the process-wide streams change.
    Install it after logging is configured: a log handler created later that writes to
    `sys.stderr` would have its lines captured twice. Usable as a context manager.
    `level` is set on the handler logger when it has none (INFO: `logger.info` in handler
    code is captured without configuring anything).
    """

    def __init__(self, level: int = logging.INFO) -> None:
        self.level = level
        self._handler = _HubHandler()
        self._routers: list[_StreamRouter] = []
        self._set_level = False

    @property
    def installed(self) -> bool:
        return bool(self._routers)

    def __enter__(self) -> OutputCapture:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()

    def install(self) -> None:
        if self.installed:
            return
        stdout = _StreamRouter(sys.stdout, "STDOUT")
        stderr = _StreamRouter(sys.stderr, "STDERR")
        self._routers = [stdout, stderr]
        sys.stdout = cast(TextIO, stdout)
        sys.stderr = cast(TextIO, stderr)
        logger = logging.getLogger(ROOT_PACKAGE)
        logger.addHandler(self._handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(self.level)
            self._set_level = True

    def uninstall(self) -> None:
        if not self.installed:
            return
        stdout, stderr = self._routers
        self._routers = []
        # Someone may have wrapped our wrapper since; then only switch ours to pass-through.
        for router in (stdout, stderr):
            router.active = False
        if sys.stdout is stdout:
            sys.stdout = stdout.original
        if sys.stderr is stderr:
            sys.stderr = stderr.original
        logger = logging.getLogger(ROOT_PACKAGE)
        logger.removeHandler(self._handler)
        if self._set_level:
            logger.setLevel(logging.NOTSET)
            self._set_level = False
