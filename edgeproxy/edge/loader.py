"""Loading handler code: a module's `on_request*` functions, or `module.py:function`.

Everything is imported when it is loaded (a config load or a deploy), so a syntax or import
error fails that load with the file and its traceback instead of failing the first request.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import traceback
from pathlib import Path
from types import ModuleType

from edgeproxy.edge.handlers import (
    ANY_METHOD,
    HANDLER_NAMES,
    METHOD_VARIANTS,
    HandlerFunction,
    HandlerModule,
)
from edgeproxy.edge.modules import HandlerPackage
from edgeproxy.exceptions import HandlerLoadError

logger = logging.getLogger("edgeproxy.edge")

_OWN_FILES = str(Path(__file__).resolve().parent)
_IMPORTLIB = str(Path(importlib.__file__).resolve().parent)


def _user_frame(filename: str) -> bool:
    return not filename.startswith(("<frozen", _OWN_FILES, _IMPORTLIB))


def format_load_error(exc: BaseException) -> str:
    """The traceback of `exc` without the import machinery's frames (and ours)."""
    error = traceback.TracebackException.from_exception(exc)
    error.stack = traceback.StackSummary.from_list(
        [frame for frame in error.stack if _user_frame(frame.filename)]
    )
    return "".join(error.format()).rstrip("\n")


def import_handler_file(package: HandlerPackage, path: Path) -> ModuleType:
    """Import `path` in `package`, turning any failure into a HandlerLoadError."""
    try:
        return package.import_file(path)
    except (Exception, SystemExit) as exc:
        raise HandlerLoadError(
            package.display(path), f"could not be loaded:\n{format_load_error(exc)}"
        ) from exc


def _checked(module: ModuleType, file: str, name: str) -> HandlerFunction:
    func = getattr(module, name)
    if not inspect.iscoroutinefunction(func):
        kind = "a non-async function" if callable(func) else type(func).__name__
        raise HandlerLoadError(
            file, f"{name} must be an `async def` function taking (request, env, ctx), not {kind}"
        )
    try:
        inspect.signature(func).bind(None, None, None)
    except TypeError:
        raise HandlerLoadError(
            file, f"{name}{inspect.signature(func)} must accept (request, env, ctx)"
        ) from None
    except ValueError:
        pass  # no signature to check (a C function); the call itself will tell
    return HandlerFunction(f"{file}:{name}", func)


def handler_module(
    module: ModuleType, file: str, package: HandlerPackage, *, function: str | None = None
) -> HandlerModule:
    """The handlers `module` offers: one named `function` for every method, or else its
    `on_request` plus method variants (`on_request_get`, ...). `file` names it in labels."""
    if function is not None:
        if not hasattr(module, function):
            defined = sorted(
                name
                for name, value in vars(module).items()
                if callable(value) and not name.startswith("_") and not inspect.isclass(value)
            )
            raise HandlerLoadError(
                file, f"has no function {function!r} (defines: {', '.join(defined) or 'none'})"
            )
        handler = _checked(module, file, function)
        package.register_entry(handler.func, handler.label)
        return HandlerModule(file, {}, handler)
    by_method: dict[str, HandlerFunction] = {}
    fallback = None
    for name in HANDLER_NAMES:
        if not hasattr(module, name):
            continue
        handler = _checked(module, file, name)
        package.register_entry(handler.func, handler.label)
        if name == ANY_METHOD:
            fallback = handler
        else:
            by_method[next(m for m, n in METHOD_VARIANTS.items() if n == name)] = handler
    return HandlerModule(file, by_method, fallback)


def split_spec(spec: str) -> tuple[str, str | None]:
    """`path/to/module.py:function` into its path and function (None when absent)."""
    path, sep, function = spec.rpartition(":")
    if sep and path.endswith(".py") and function.isidentifier():
        return path, function
    return spec, None


class RouteHandlers:
    """The route handlers (`handler:` in rules.yaml) of one config load.

    Files are resolved against `config_dir` and must lie under `base_dir` (default: the
    config directory). All files loaded through one instance share a synthetic package
    rooted at `base_dir`, so they may import each other relatively. Build a new instance
    for each config load and `close()` the old one once the new config serves: code
    changed on disk is picked up only by a new instance.
    """

    def __init__(self, config_dir: Path, *, base_dir: Path | None = None) -> None:
        self.config_dir = config_dir.resolve()
        self.base_dir = (base_dir or config_dir).resolve()
        self.package = HandlerPackage(self.base_dir, "routes", display_root=self.config_dir)

    def load(self, spec: str) -> HandlerModule:
        """Load `path/to/module.py[:function]`; raises HandlerLoadError."""
        relative, function = split_spec(spec)
        path = (self.config_dir / relative).resolve()
        if not path.is_relative_to(self.base_dir):
            raise HandlerLoadError(
                relative, f"is outside the handler directory {self.base_dir}; refusing to load it"
            )
        if path.suffix != ".py" or not path.is_file():
            raise HandlerLoadError(relative, f"no such Python file ({path})")
        module = import_handler_file(self.package, path)
        loaded = handler_module(module, self.package.display(path), self.package, function=function)
        if loaded.empty:
            names = ", ".join(HANDLER_NAMES)
            raise HandlerLoadError(
                relative,
                f"defines no handler: name a function (module.py:function) or define "
                f"one of {names}",
            )
        return loaded

    def close(self) -> None:
        """Unload the modules (idempotent); in-flight requests keep the code they hold."""
        self.package.unload()
