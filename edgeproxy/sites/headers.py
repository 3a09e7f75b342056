"""`_headers` files (Cloudflare Pages' format, which Netlify shares), compiled once.

A block is a URL pattern line followed by `Name: value` lines (indented by convention) and
`! Name` lines that detach a header. Every block whose pattern matches a request applies,
in file order; the same header from several blocks is joined with ", ".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgeproxy.sites.patterns import PatternError, PlaceholderTemplate, UrlPattern, compile_pattern

# Cloudflare Pages' limits.
MAX_RULES = 100
MAX_LINE_LENGTH = 2000

_PATTERN_LINE = re.compile(r"/|[^\s]+://")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 field values: no control characters other than a tab.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Cookies can't be comma-joined (`Expires` holds a comma), so each value keeps its own line.
_SEPARATE_LINES = "set-cookie"


@dataclass(frozen=True, slots=True)
class HeaderChanges:
    """What `_headers` does to one response: headers to set (replacing) and to remove.

    `set` holds lowercase names in file order, one entry per name except `set-cookie`;
    `remove` the lowercase names of `! Name` lines.
    """

    set: tuple[tuple[str, str], ...] = ()
    remove: frozenset[str] = field(default_factory=frozenset)

    def apply(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """A new ASGI header list: `remove` and `set` names dropped, then `set` appended."""
        if not self.set and not self.remove:
            return list(headers)
        drop = {name.encode("latin-1") for name in self.remove}
        drop.update(name.encode("latin-1") for name, _ in self.set)
        kept = [(name, value) for name, value in headers if name.lower() not in drop]
        kept.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in self.set)
        return kept


NO_CHANGES = HeaderChanges()


@dataclass(frozen=True, slots=True)
class _Block:
    pattern: UrlPattern
    set: tuple[tuple[str, PlaceholderTemplate], ...]
    remove: tuple[str, ...]


class HeaderRules:
    """The blocks of one `_headers` file, compiled; `for_path` does no parsing."""

    __slots__ = ("_blocks",)

    def __init__(self, blocks: list[_Block]) -> None:
        self._blocks = blocks

    @classmethod
    def parse(cls, text: str) -> tuple[HeaderRules, list[str]]:
        """Compile a `_headers` file; lines that can't be used are skipped with a warning.

        Warnings read `_headers:4: skipped: <why>`.
        """
        parser = _Parser()
        for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if _PATTERN_LINE.match(line) is None:
                parser.header(number, line)
            elif not parser.pattern(number, line):
                break
        return cls(parser.finish()), parser.warnings

    def __len__(self) -> int:
        return len(self._blocks)

    def for_path(self, path: str, host: str = "") -> HeaderChanges:
        """The changes for a response to `path` (gateway-normalised, percent-encoded).

        Blocks with a host in their pattern apply only when `host` matches it.
        """
        values: dict[str, list[str]] = {}
        removed: set[str] = set()
        for block in self._blocks:
            captures = block.pattern.match(host, path)
            if captures is None:
                continue
            for name in block.remove:
                values.pop(name, None)
                removed.add(name)
            for name, template in block.set:
                value = template.render(captures)
                # Parsing vetted the text; only a capture from the host could spoil it.
                if not template.tail or _sendable(value):
                    values.setdefault(name, []).append(value)
        if not values and not removed:
            return NO_CHANGES
        changes: list[tuple[str, str]] = []
        for name, found in values.items():
            if name == _SEPARATE_LINES:
                changes.extend((name, value) for value in found)
            else:
                changes.append((name, ", ".join(found)))
        return HeaderChanges(tuple(changes), frozenset(removed))


class _Parser:
    # One pass over the lines; a block is kept when its pattern compiled and it has headers.

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.blocks: list[_Block] = []
        self._pattern: UrlPattern | None = None
        self._line = 0
        self._set: list[tuple[str, PlaceholderTemplate]] = []
        self._remove: list[str] = []
        # True while reading the header lines of a pattern that was skipped.
        self._skipping = False

    def pattern(self, number: int, line: str) -> bool:
        """Start a block; False once the rule limit is reached (the rest is ignored)."""
        self._close()
        if len(self.blocks) == MAX_RULES:
            self._warn(
                number,
                f"more than {MAX_RULES} rules (the Cloudflare Pages limit); this and the "
                "remaining lines are ignored",
            )
            return False
        self._skipping = True
        if len(line) > MAX_LINE_LENGTH:
            self._warn(number, f"{self._too_long(line)}, with the header lines under it")
            return True
        try:
            self._pattern = compile_pattern(line, "cloudflare", allow_host=True)
        except PatternError as exc:
            self._warn(number, f"{exc}, with the header lines under it")
            return True
        self._skipping = False
        self._line = number
        return True

    def header(self, number: int, line: str) -> None:
        if self._skipping:
            return
        if self._pattern is None:
            self._warn(number, "header line before any URL pattern")
            return
        if len(line) > MAX_LINE_LENGTH:
            self._warn(number, self._too_long(line))
            return
        if line.startswith("!"):
            name = line[1:].strip()
            if _TOKEN.fullmatch(name) is None:
                self._warn(number, f"{name!r} is not a valid header name to detach")
                return
            self._remove.append(name.lower())
            return
        raw_name, colon, raw_value = line.partition(":")
        name, value = raw_name.strip(), raw_value.strip()
        if not colon:
            self._warn(number, "expected 'Name: value' or '! Name'")
        elif _TOKEN.fullmatch(name) is None:
            self._warn(number, f"{name!r} is not a valid header name")
        elif not value:
            self._warn(number, f"header {name!r} has no value")
        elif not _sendable(value):
            self._warn(number, f"header {name!r} value has a control or non-Latin-1 character")
        else:
            template = PlaceholderTemplate.build(value, self._pattern.names)
            self._set.append((name.lower(), template))

    def finish(self) -> list[_Block]:
        self._close()
        return self.blocks

    def _close(self) -> None:
        if self._pattern is not None:
            if self._set or self._remove:
                block = _Block(self._pattern, tuple(self._set), tuple(self._remove))
                self.blocks.append(block)
            else:
                self._warn(self._line, "no headers under this URL pattern")
        self._pattern = None
        self._set = []
        self._remove = []

    def _warn(self, number: int, why: str) -> None:
        self.warnings.append(f"_headers:{number}: skipped: {why}")

    @staticmethod
    def _too_long(line: str) -> str:
        return f"line is {len(line):,} characters long (limit {MAX_LINE_LENGTH:,})"


def _sendable(value: str) -> bool:
    if _BAD_VALUE.search(value) is not None:
        return False
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
