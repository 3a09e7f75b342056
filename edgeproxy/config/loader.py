"""Loading `rules.yaml`: validation of the data `source` reads, and cross-checks.

Every problem found is collected and raised at once as one `ConfigError`, sorted by line, so
an operator fixes a file in one pass rather than one error per restart.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from edgeproxy.config.models import RulesConfig
from edgeproxy.config.source import Reader, YAMLPath, format_path, read_source
from edgeproxy.exceptions import ConfigError, ConfigIssue
from edgeproxy.routing.table import RouteTable

__all__ = ["config_json_schema", "load_config", "parse_config"]

# Pydantic phrases these in Python terms ("valid dictionary or instance of Route").
_EXPECTED = {
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
}


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> RulesConfig:
    """Read and validate a rules file; raise `ConfigError` listing every problem in it."""
    filename = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        issue = ConfigIssue("", f"cannot read the file: {exc.strerror or exc}", filename)
        raise ConfigError([issue]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        issue = ConfigIssue("", f"not UTF-8 text: {exc.reason} (byte {exc.start})", filename, line)
        raise ConfigError([issue]) from exc
    return parse_config(text, filename, environ)


def parse_config(
    text: str, filename: str = "rules.yaml", environ: Mapping[str, str] | None = None
) -> RulesConfig:
    """Validate rules given as YAML text; `environ` (default `os.environ`) fills `${VAR}`."""
    data, reader = read_source(text, filename, os.environ if environ is None else environ)

    # Undefined origins are looked for in the raw data, so they are reported together with
    # any other error rather than only once the rest of the file is valid.
    issues = list(reader.issues) + _undefined_origins(data, reader.lines, filename)
    try:
        config = RulesConfig.model_validate(data)
    except ValidationError as exc:
        issues += _validation_issues(exc, data, reader, filename)
    else:
        issues += _undefined_sites(config, reader.lines, filename)
        issues += _binding_clashes(config, reader.lines, filename)
        issues += _route_ties(config, reader.lines, filename)
    if issues:
        raise ConfigError(sorted(issues, key=lambda issue: issue.line or 0))
    return config


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of `rules.yaml`, for editors and `edgeproxy schema`."""
    schema = RulesConfig.model_json_schema()
    schema["title"] = "edgeproxy rules.yaml"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _validation_issues(
    exc: ValidationError, data: Any, reader: Reader, filename: str
) -> list[ConfigIssue]:
    located = []
    for error in exc.errors(include_url=False):
        path, union_at, bad_key = _locate(error["loc"], data)
        if not any(path[: len(done)] == done for done in reader.unresolved):
            located.append((path, union_at, bad_key, error))

    # A value matching no arm of a union fails once per arm; keep the arm that got furthest.
    deepest: dict[YAMLPath, int] = {}
    for path, union_at, _, _ in located:
        if union_at is not None:
            base = path[:union_at]
            deepest[base] = max(deepest.get(base, 0), len(path))
    by_path: dict[tuple[YAMLPath, bool], list[ErrorDetails]] = {}
    for path, union_at, bad_key, error in located:
        if union_at is None or len(path) == deepest[path[:union_at]]:
            by_path.setdefault((path, bad_key), []).append(error)

    issues = []
    for (path, bad_key), errors in by_path.items():
        phrases = list(dict.fromkeys(_phrase(error, path) for error in errors))
        if all(phrase.startswith("expected ") for phrase in phrases):
            message = "expected " + " or ".join(
                phrase.removeprefix("expected ") for phrase in phrases
            )
        else:
            message = "; ".join(phrases)
        value = errors[0]["input"]
        kind = errors[0]["type"]
        if bad_key:
            message = f"invalid key {value!r}: {message}"
        elif _lacks_value(kind, value, message):
            message += f", got {_show(value)}"
        line = _line_of(path, reader.lines)
        issues.append(ConfigIssue(format_path(path), message, filename, line))
    return issues


def _lacks_value(kind: str, value: Any, message: str) -> bool:
    if kind in ("missing", "extra_forbidden") or repr(value) in message:
        return False
    # A model's own validator explains itself; its input is the whole mapping.
    return not (kind == "value_error" and isinstance(value, dict))


def _locate(loc: tuple[str | int, ...], data: Any) -> tuple[YAMLPath, int | None, bool]:
    """Follow a pydantic error location through `data`.

    Returns the YAML path, where a union member's tag was dropped from it (if anywhere), and
    whether the error is about a mapping key rather than its value.
    """
    path: list[str | int] = []
    union_at = None
    bad_key = False
    node = data
    for index, part in enumerate(loc):
        if part == "[key]":
            bad_key = True
        elif isinstance(part, int):
            # Kept even when `data` holds a scalar here: a before-validator made it a list.
            path.append(part)
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif isinstance(node, dict) and (part in node or index == len(loc) - 1):
            path.append(part)
            node = node.get(part)
        elif union_at is None:
            union_at = len(path)
    return tuple(path), union_at, bad_key


def _phrase(error: ErrorDetails, path: YAMLPath) -> str:
    kind = error["type"]
    if kind == "missing":
        return f"missing required key {path[-1]!r}"
    if kind == "extra_forbidden":
        return _unknown_key(path)
    if kind == "literal_error":
        return f"expected one of {error.get('ctx', {}).get('expected', '?')}"
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    return error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _unknown_key(path: YAMLPath) -> str:
    key = str(path[-1])
    model = _model_at(path[:-1])
    if model is None:
        return f"unknown key {key!r}"
    accepted = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(key, accepted, n=1)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r} (accepted: {', '.join(accepted)})"


def _model_at(path: YAMLPath) -> type[BaseModel] | None:
    """The model class that validates the mapping at `path`, found from RulesConfig's fields."""
    annotation: Any = RulesConfig
    for part in path:
        annotation = _step(annotation, part)
    for arm in _arms(annotation):
        if isinstance(arm, type) and issubclass(arm, BaseModel):
            return arm
    return None


def _step(annotation: Any, part: str | int) -> Any:
    for arm in _arms(annotation):
        origin = get_origin(arm)
        if isinstance(arm, type) and issubclass(arm, BaseModel) and isinstance(part, str):
            for name, field in arm.model_fields.items():
                if part in (name, field.alias):
                    return field.annotation
        elif origin is dict:
            return get_args(arm)[1]
        elif origin is list and isinstance(part, int):
            return get_args(arm)[0]
    return None


def _arms(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Annotated:
        return _arms(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [arm for member in get_args(annotation) for arm in _arms(member)]
    return [annotation]


def _undefined_origins(data: Any, lines: dict[YAMLPath, int], filename: str) -> list[ConfigIssue]:
    """Routes whose `proxy:` names an origin the file does not define."""
    if not isinstance(data, dict):
        return []
    origins = data.get("origins")
    routes = data.get("routes")
    if not isinstance(routes, list):
        return []
    defined = (
        [name for name in origins if isinstance(name, str)] if isinstance(origins, dict) else []
    )
    known = ", ".join(sorted(defined)) or "none are defined"
    issues = []
    for index, route in enumerate(routes):
        name = route.get("proxy") if isinstance(route, dict) else None
        if isinstance(name, str) and name not in defined:
            message = f"origin {name!r} is not defined (known: {known})"
            close = difflib.get_close_matches(name, defined, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
            path: YAMLPath = ("routes", index, "proxy")
            issues.append(ConfigIssue(format_path(path), message, filename, lines.get(path)))
    return issues


def _undefined_sites(
    config: RulesConfig, lines: dict[YAMLPath, int], filename: str
) -> list[ConfigIssue]:
    """Routes and object namespaces that name a site the file does not define."""
    defined = sorted(config.sites)
    known = ", ".join(defined) or "none are defined"
    references: list[tuple[YAMLPath, str]] = [
        (("routes", index, "site"), route.site)
        for index, route in enumerate(config.routes)
        if route.site is not None
    ]
    for binding, namespace in config.objects.namespaces.items():
        references += [
            (("objects", "namespaces", binding, "sites", index), site)
            for index, site in enumerate(namespace.sites or ())
        ]
    issues = []
    for path, name in references:
        if name in config.sites:
            continue
        message = f"site {name!r} is not defined (known: {known})"
        close = difflib.get_close_matches(name, defined, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        issues.append(ConfigIssue(format_path(path), message, filename, lines.get(path)))
    return issues


def _binding_clashes(
    config: RulesConfig, lines: dict[YAMLPath, int], filename: str
) -> list[ConfigIssue]:
    """Handler variables named like a binding (`ASSETS`, an object namespace) in the same
    `env`: one would hide the other."""
    namespaces = config.objects.namespaces
    issues = []

    def check(path: YAMLPath, names: Iterable[str], bindings: set[str]) -> None:
        for name in names:
            if name in bindings:
                issues.append(
                    ConfigIssue(
                        format_path((*path, name)),
                        f"variable {name!r} has the name of a binding handlers see in env "
                        f"({', '.join(sorted(bindings))}); rename the variable",
                        filename,
                        lines.get((*path, name)),
                    )
                )

    for site_name, site in config.sites.items():
        bindings = {"ASSETS"} | {
            binding
            for binding, namespace in namespaces.items()
            if namespace.sites is None or site_name in namespace.sites
        }
        for environment in ("production", "preview"):
            variables = getattr(site.env, environment)
            check(("sites", site_name, "env", environment), variables, bindings)
    site_less = {binding for binding, namespace in namespaces.items() if namespace.sites is None}
    for index, route in enumerate(config.routes):
        if route.handler is not None:
            check(("routes", index, "handler", "env"), route.handler.env, site_less)
    return issues


def _route_ties(
    config: RulesConfig, lines: dict[YAMLPath, int], filename: str
) -> list[ConfigIssue]:
    """Routes that could tie for one request (found by compiling the route table)."""
    issues: list[ConfigIssue] = []
    try:
        RouteTable(config.routes)
    except ConfigError as exc:
        by_name = {format_path(path): line for path, line in lines.items()}
        issues += [
            dataclasses.replace(
                issue, file=filename, line=issue.line or _line_of_name(issue.path, by_name)
            )
            for issue in exc.issues
        ]
    return issues


def _line_of(path: YAMLPath, lines: dict[YAMLPath, int]) -> int | None:
    """Line of the deepest part of `path` that the file has (a missing key has no line)."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


_LAST_PART = re.compile(r"(\[[^\]]*\]|\.[^.\[]*)$")


def _line_of_name(name: str, lines: dict[str, int]) -> int | None:
    """`_line_of` for a path already formatted as `routes[3].match`."""
    while name not in lines:
        shorter = _LAST_PART.sub("", name)
        if shorter == name:
            return lines.get("")
        name = shorter
    return lines[name]


def _show(value: Any) -> str:
    """A bad value as the file wrote it, cut short when long."""
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
