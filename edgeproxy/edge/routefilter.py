"""`_routes.json`: which paths of a deployment invoke its functions at all.

The format and matching are Cloudflare Pages' (`{"version": 1, "include": [...],
"exclude": [...]}`): `*` matches any characters including `/`, a rule ending in `/*` also
matches the bare prefix (`/api/*` matches `/api`), a trailing slash is optional, and
exclude rules are checked first. Paths outside the filter go straight to the static assets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeproxy.exceptions import HandlerLoadError

ROUTES_FILE = "_routes.json"
MAX_RULES = 100
MAX_RULE_LENGTH = 100
_KEYS = ("version", "description", "include", "exclude")


def _rule_pattern(rule: str) -> str:
    """The regex of one rule, as Cloudflare's asset server builds it."""
    if rule in ("/", "/*"):
        body, tail = rule, ""
    elif rule.endswith("/*"):
        body, tail = rule[:-2], "(?:/.*)?"
    elif rule.endswith("/"):
        body, tail = rule[:-1], "/?"
    elif rule.endswith("*"):
        body, tail = rule, ""
    else:
        body, tail = rule, "/?"
    return "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", body)) + (
        tail
    )


def _compile(rules: Sequence[str]) -> re.Pattern[str] | None:
    if not rules:
        return None
    return re.compile("|".join(f"(?:{_rule_pattern(rule)})" for rule in rules), re.DOTALL)


class RouteFilter:
    """Include and exclude rules, compiled once into one regex each."""

    def __init__(self, include: Sequence[str], exclude: Sequence[str] = ()) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self._include = _compile(self.include)
        self._exclude = _compile(self.exclude)

    def allows(self, path: str) -> bool:
        """Whether `path` invokes functions: not excluded, and included."""
        if self._exclude is not None and self._exclude.fullmatch(path):
            return False
        return self._include is not None and self._include.fullmatch(path) is not None

    @classmethod
    def load(cls, path: Path) -> RouteFilter:
        """Read and validate a `_routes.json`; raises HandlerLoadError naming the problem."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise HandlerLoadError(ROUTES_FILE, f"cannot be read: {exc}") from exc
        return cls.parse(text)

    @classmethod
    def parse(cls, text: str) -> RouteFilter:
        """Validate the text of a `_routes.json`; raises HandlerLoadError naming the problem."""
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HandlerLoadError(
                ROUTES_FILE, f"line {exc.lineno}: not valid JSON: {exc.msg}"
            ) from exc
        if not isinstance(data, dict):
            raise HandlerLoadError(ROUTES_FILE, f"must be a JSON object, not {_kind(data)}")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise HandlerLoadError(
                ROUTES_FILE, f"unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})"
            )
        if data.get("version") != 1:
            raise HandlerLoadError(
                ROUTES_FILE, f"version must be 1 (got {json.dumps(data.get('version'))})"
            )
        if "include" not in data:
            raise HandlerLoadError(ROUTES_FILE, "include is missing (a list of path rules)")
        include = _rules(data, "include")
        exclude = _rules(data, "exclude") if "exclude" in data else []
        if not include:
            raise HandlerLoadError(ROUTES_FILE, "include must have at least one rule")
        if len(include) + len(exclude) > MAX_RULES:
            raise HandlerLoadError(
                ROUTES_FILE,
                f"{len(include) + len(exclude)} rules; at most {MAX_RULES} are allowed",
            )
        return cls(include, exclude)


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else json.dumps(value)


def _rules(data: dict[str, Any], key: str) -> list[str]:
    rules = data[key]
    if not isinstance(rules, list):
        raise HandlerLoadError(ROUTES_FILE, f"{key} must be a list of strings, not {_kind(rules)}")
    for index, rule in enumerate(rules):
        where = f"{key}[{index}]"
        if not isinstance(rule, str):
            raise HandlerLoadError(ROUTES_FILE, f"{where} must be a string, not {_kind(rule)}")
        if not rule.startswith("/"):
            raise HandlerLoadError(ROUTES_FILE, f"{where} {rule!r} must start with '/'")
        if len(rule) > MAX_RULE_LENGTH:
            raise HandlerLoadError(
                ROUTES_FILE, f"{where} is {len(rule)} characters; at most {MAX_RULE_LENGTH}"
            )
    return rules
