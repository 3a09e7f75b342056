"""Reading `rules.yaml` into plain data with the line of every YAML path, filling `${VAR}`.

Problems met while reading (duplicate keys, bad merge keys, unset variables) are collected on
the `Reader` rather than raised, so the loader can report them together with validation errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from edgeproxy.exceptions import ConfigError, ConfigIssue

__all__ = ["Reader", "YAMLPath", "format_path", "read_source"]

YAMLPath = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)(?P<end>\}?)")
_REFERENCE_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def read_source(text: str, filename: str, environ: Mapping[str, str]) -> tuple[Any, Reader]:
    """Compose `text` and read it into plain data; the `Reader` holds lines and issues found."""
    root = _compose(text, filename)
    reader = Reader(filename, environ)
    # A file of only comments, or only `---`, is an empty config.
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag.endswith(":null")):
        data: Any = {}
        reader.lines[()] = 1
    elif isinstance(root, yaml.MappingNode):
        data = reader.read(root, (), root.start_mark.line + 1)
    else:
        kind = "a list" if isinstance(root, yaml.SequenceNode) else f"{root.value!r}"
        message = f"the top level must be a mapping of server, origins and routes, got {kind}"
        raise ConfigError([ConfigIssue("", message, filename, root.start_mark.line + 1)])
    return data, reader


def _compose(text: str, filename: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        # PyYAML's own text names "<unicode string>" and repeats the line; say it once.
        message = "invalid YAML: "
        if exc.context and exc.context_mark is not None:
            message += f"{exc.context} on line {exc.context_mark.line + 1}: "
        message += exc.problem or exc.context or "not readable"
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            message += f" (column {mark.column + 1})"
        line = None if mark is None else mark.line + 1
        raise ConfigError([ConfigIssue("", message, filename, line)]) from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        message = f"invalid YAML: {exc.reason}: {chr(exc.character)!r}"
        raise ConfigError([ConfigIssue("", message, filename, line)]) from exc


class Reader:
    """Turns composed YAML nodes into plain data, noting the line of every path on the way."""

    def __init__(self, filename: str, environ: Mapping[str, str]) -> None:
        self.filename = filename
        self.environ = environ
        self.lines: dict[YAMLPath, int] = {}
        self.issues: list[ConfigIssue] = []
        # Values whose `${VAR}` could not be filled; validating them again would only echo that.
        self.unresolved: set[YAMLPath] = set()
        self._constructor = SafeConstructor()
        self._open: set[int] = set()

    def read(self, node: yaml.Node, path: YAMLPath, line: int) -> Any:
        self.lines[path] = line
        if id(node) in self._open:
            self._problem(path, line, "an alias refers to a node that contains it")
            self.unresolved.add(path)
            return None
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            self._fill(result, node, path)
            return result
        if isinstance(node, yaml.SequenceNode):
            self._open.add(id(node))
            items = [
                self.read(item, (*path, index), item.start_mark.line + 1)
                for index, item in enumerate(node.value)
            ]
            self._open.discard(id(node))
            return items
        return self._scalar(node, path, line)

    def _fill(self, result: dict[str, Any], node: yaml.MappingNode, path: YAMLPath) -> None:
        """Add `node`'s entries to `result`, skipping keys it already has (YAML merge order)."""
        self._open.add(id(node))
        seen: dict[str, int] = {}
        merges: list[tuple[yaml.Node, int]] = []
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                merges.append((value_node, line))
                continue
            key = self._key(key_node, path, line)
            if key is None:
                continue
            if key in seen:
                message = f"duplicate key {key!r} (first on line {seen[key]})"
                self._problem((*path, key), line, message)
                continue
            seen[key] = line
            if key not in result:
                result[key] = self.read(value_node, (*path, key), line)
        for value_node, line in merges:
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    self._problem(path, line, "a merge key (<<) takes a mapping or a list of them")
                elif id(source) in self._open:
                    self._problem(path, line, "a merge key (<<) refers to a mapping containing it")
                else:
                    self._fill(result, source, path)
        self._open.discard(id(node))

    def _key(self, node: yaml.Node, path: YAMLPath, line: int) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self._problem(path, line, "a key must be a string, not a list or mapping")
            return None
        key = self._construct(node, path, line)
        if isinstance(key, str):
            return key
        message = (
            f"key {node.value!r} is read as {type(key).__name__}; quote it to use it as a name"
        )
        self._problem(path, line, message)
        return None

    def _scalar(self, node: yaml.Node, path: YAMLPath, line: int) -> Any:
        value = self._construct(node, path, line)
        if not isinstance(value, str):
            return value
        text, problems = _interpolate(value, self.environ)
        for problem in problems:
            self._problem(path, line, problem)
        if problems:
            self.unresolved.add(path)
        return text

    def _construct(self, node: yaml.Node, path: YAMLPath, line: int) -> Any:
        try:
            return self._constructor.construct_object(node)
        except ConstructorError as exc:
            self._problem(path, line, f"invalid YAML: {exc.problem}")
            self.unresolved.add(path)
            return None

    def _problem(self, path: YAMLPath, line: int, message: str) -> None:
        self.issues.append(ConfigIssue(format_path(path), message, self.filename, line))


def _interpolate(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Fill `${VAR}` and `${VAR:-default}` from `environ`; `$${` stands for a literal `${`."""
    problems: list[str] = []

    def fill(found: re.Match[str]) -> str:
        whole = found.group(0)
        if whole == "$${":
            return "${"
        body = found.group("body")
        parsed = _REFERENCE_BODY.fullmatch(body) if found.group("end") else None
        if parsed is None or "${" in body:
            problems.append(
                f"malformed reference {whole!r}: write ${{NAME}} or ${{NAME:-default}},"
                " or $${ for a literal '${'"
            )
            return whole
        name, default = parsed.group("name"), parsed.group("default")
        value = environ.get(name)
        # As in the shell, `:-` also replaces a variable that is set but empty.
        if default is not None and not value:
            return default
        if value is None:
            problems.append(
                f"environment variable {name!r} is not set (give a default with ${{{name}:-value}})"
            )
            return whole
        return value

    return _REFERENCE.sub(fill, text), problems


def format_path(path: YAMLPath) -> str:
    """`("routes", 3, "proxy")` as `routes[3].proxy`; odd keys as `origins['api.v1']`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(part):
            text += f"[{part!r}]"
        else:
            text += f".{part}" if text else part
    return text
