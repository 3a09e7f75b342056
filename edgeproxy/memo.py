"""Bounded memos for hot-path lookups whose answer depends on their key alone."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

# Popular keys (paths, hosts, URLs) repeat; a flood of one-off ones must not grow memory.
MEMO_LIMIT = 4096


class Memo(dict[K, V]):
    """A dict that forgets everything once it holds `limit` entries: cheaper per lookup
    than an LRU, and popular keys are back after a handful of requests."""

    __slots__ = ("limit",)

    def __init__(self, limit: int = MEMO_LIMIT) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: K, value: V) -> V:
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value
