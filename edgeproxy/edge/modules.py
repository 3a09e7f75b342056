"""Handler code as synthetic packages: one per deployment or config load, never on sys.path.

Each `HandlerPackage` is a package named `_edgeproxy_handlers.<kind>_<n>` whose `__path__`
is its root directory, so files under one root import each other relatively
(`from .lib import x`, `from ..shared import y`) while two roots — two deployments of a
site — never share a module or its state. A finder placed first on `sys.meta_path` answers
every name under `_edgeproxy_handlers`: it compiles sources without writing `__pycache__`
into the (immutable) deployment, and refuses names that resolve outside their root.

The module also keeps the index the loop watchdog reads from its own thread: which files
are handler code and which code objects are handler entry points.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import re
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import CodeType, ModuleType

from edgeproxy.edge.handlers import HandlerCallable

ROOT_PACKAGE = "_edgeproxy_handlers"
"""Every handler module lives under this name; `logging.getLogger(__name__)` in handler code
gives a logger below it, which is where log capture listens."""

_counter = itertools.count(1)
_lock = threading.Lock()

# Read by the watchdog thread while the loop thread is blocked: plain dict lookups only.
_handler_files: dict[str, str] = {}
_file_users: dict[str, int] = {}  # packages that loaded each file (a deployment reloaded)
_entry_points: dict[CodeType, str] = {}


def handler_file(filename: str) -> str | None:
    """The display name of a loaded handler module's file, or None if it is not one."""
    return _handler_files.get(filename)


def entry_point(code: CodeType) -> str | None:
    """The handler label of an entry-point function's code object, or None."""
    return _entry_points.get(code)


def _part_to_name(part: str) -> str:
    # A file name may hold dots (`sitemap.xml.py` routes /sitemap.xml) but a module name
    # may not; escape them the way URLs do.
    return part.replace("%", "%25").replace(".", "%2E")


def _name_to_part(name: str) -> str:
    return name.replace("%2E", ".").replace("%25", "%")


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles from source every time: no bytecode is read from or written to the root."""

    def __init__(self, fullname: str, path: str, package: HandlerPackage) -> None:
        super().__init__(fullname, path)
        self._package = package

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)

    def exec_module(self, module: ModuleType) -> None:
        self._package.track_file(self.path)
        super().exec_module(module)


class _DirectoryLoader(importlib.abc.Loader):
    """A sub-directory without `__init__.py`: an empty package module."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        return None


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.packages: dict[str, HandlerPackage] = {}

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(ROOT_PACKAGE + "."):
            return None
        parts = fullname.split(".")
        package = self.packages.get(".".join(parts[:2]))
        spec = None if package is None else package.spec_for(fullname, parts[2:])
        if spec is None:
            # Raising (not returning None) keeps the path finder from looking in `__path__`
            # and loading the file with bytecode caching, or from outside the root.
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return spec


_finder = _Finder()


def _install_finder() -> None:
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    if ROOT_PACKAGE not in sys.modules:
        root = ModuleType(ROOT_PACKAGE, "Synthetic parent of edgeproxy's handler packages.")
        root.__path__ = []
        root.__spec__ = importlib.machinery.ModuleSpec(ROOT_PACKAGE, None, is_package=True)
        sys.modules[ROOT_PACKAGE] = root


class HandlerPackage:
    """The handler code under one directory, importable only through this object.

    `kind` becomes part of the package name (`site_<deploy_id>`, `routes`), which shows up
    in tracebacks and logger names. `display_root` is what file names in labels and errors
    are relative to (a deployment root, or the config directory).
    """

    def __init__(self, root: Path, kind: str, *, display_root: Path | None = None) -> None:
        self.root = root.resolve()
        self.display_root = (display_root or root).resolve()
        safe = re.sub(r"\W", "_", kind)
        self.name = f"{ROOT_PACKAGE}.{safe}_{next(_counter)}"
        self._files: list[str] = []
        self._entries: list[CodeType] = []
        with _lock:
            _install_finder()
            module = ModuleType(self.name, f"Handler code under {self.root}.")
            module.__path__ = [str(self.root)]
            module.__spec__ = importlib.machinery.ModuleSpec(self.name, None, is_package=True)
            module.__spec__.submodule_search_locations = [str(self.root)]
            module.__package__ = self.name
            sys.modules[self.name] = module
            _finder.packages[self.name] = self

    def display(self, path: Path) -> str:
        """`path` as labels show it: relative to the display root, with `/`."""
        resolved = path.resolve()
        if resolved.is_relative_to(self.display_root):
            return resolved.relative_to(self.display_root).as_posix()
        return str(resolved)

    def module_name(self, path: Path) -> str:
        """The module name of a `.py` file under the root."""
        relative = path.resolve().relative_to(self.root)
        parts = [*relative.parent.parts, relative.stem]
        if parts[-1] == "__init__":
            parts.pop()
        elif path.with_suffix("").is_dir():
            # `users.py` next to `users/`: Python gives the name to the package, so the
            # file (a route all the same) is imported by its full file name.
            parts[-1] = relative.name
        return ".".join([self.name, *(_part_to_name(part) for part in parts)])

    def import_file(self, path: Path) -> ModuleType:
        """Import (once) the module of a `.py` file under the root."""
        return importlib.import_module(self.module_name(path))

    def spec_for(self, fullname: str, parts: list[str]) -> importlib.machinery.ModuleSpec | None:
        names = [_name_to_part(part) for part in parts]
        if not names or any(name in ("", ".", "..") or "/" in name for name in names):
            return None
        base = self.root.joinpath(*names)
        if base.is_dir() and self._inside(base):
            init = base / "__init__.py"
            if init.is_file() and self._inside(init):
                return importlib.util.spec_from_file_location(
                    fullname,
                    init,
                    loader=_SourceLoader(fullname, str(init), self),
                    submodule_search_locations=[str(base)],
                )
            spec = importlib.machinery.ModuleSpec(fullname, _DirectoryLoader(), is_package=True)
            spec.submodule_search_locations = [str(base)]
            return spec
        source = base if base.suffix == ".py" else base.with_name(base.name + ".py")
        if source.is_file() and self._inside(source):
            return importlib.util.spec_from_file_location(
                fullname, source, loader=_SourceLoader(fullname, str(source), self)
            )
        return None

    def _inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.root)

    def track_file(self, filename: str) -> None:
        self._files.append(filename)
        _handler_files[filename] = self.display(Path(filename))
        _file_users[filename] = _file_users.get(filename, 0) + 1

    def register_entry(self, func: HandlerCallable, label: str) -> None:
        """Remember `func` as the entry point known as `label` (for the watchdog)."""
        code = getattr(func, "__code__", None)
        if isinstance(code, CodeType):
            self._entries.append(code)
            _entry_points[code] = label

    @property
    def loaded(self) -> bool:
        return self.name in _finder.packages

    def unload(self) -> None:
        """Forget every module of this package; code already running keeps its references.

        Idempotent. Later imports of its names fail with ModuleNotFoundError.
        """
        with _lock:
            _finder.packages.pop(self.name, None)
            prefix = self.name + "."
            for name in [n for n in sys.modules if n == self.name or n.startswith(prefix)]:
                del sys.modules[name]
            root = str(self.root)
            stale = [k for k in sys.path_importer_cache if k == root or k.startswith(root + "/")]
            for key in stale:
                del sys.path_importer_cache[key]
            for filename in self._files:
                _file_users[filename] -= 1
                if not _file_users[filename]:
                    del _file_users[filename], _handler_files[filename]
            for code in self._entries:
                _entry_points.pop(code, None)
            self._files.clear()
            self._entries.clear()
