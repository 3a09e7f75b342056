"""The bounded in-memory response store: LRU by bytes, variants per key for `Vary`.

One key (method-independent URL key, see policy.cache_key) holds the stored responses that
differ by their `Vary` request fields. Purge by URL, prefix or `Cache-Tag` is immediate.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from edgeproxy.types import Headers

# Bookkeeping per entry beyond its body and header bytes (object headers, dict slots).
_OVERHEAD = 600


@dataclass(slots=True)
class Entry:
    """One stored response."""

    status: int
    headers: Headers
    body: bytes
    request_time: float
    response_time: float
    vary: tuple[tuple[str, str], ...]
    tags: frozenset[str] = frozenset()
    # Facts about the stored response that do not change while it is stored, worked out
    # once by the cache layer so a hit does not re-parse headers: the Vary field names, the
    # freshness lifetime, the age it had on arrival, and whether a plain request may use it
    # while fresh without validation (no `no-cache`).
    vary_names: tuple[str, ...] | None = ()
    lifetime: float = 0.0
    initial_age: float = 0.0
    plain: bool = False
    # The headers a hit sends as they are (all but Age, Cache-Status and Content-Length) as
    # lines on the wire, checked once; None when one is not valid there.
    wire: bytes | None = None
    size: int = field(default=0)

    def __post_init__(self) -> None:
        header_bytes = sum(len(n) + len(v) for n, v in self.headers)
        self.size = len(self.body) + header_bytes + len(self.wire or b"") + _OVERHEAD


class CacheStore:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._entries: OrderedDict[str, list[Entry]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(variants) for variants in self._entries.values())

    def variants(self, key: str) -> list[Entry]:
        variants = self._entries.get(key)
        if variants is None:
            return []
        self._entries.move_to_end(key)
        return variants

    def put(self, key: str, entry: Entry) -> None:
        """Store `entry`, replacing the variant with the same Vary values; evict LRU."""
        if entry.size > self.max_bytes:
            return
        variants = self._entries.setdefault(key, [])
        for index, existing in enumerate(variants):
            if existing.vary == entry.vary:
                self.bytes -= existing.size
                variants[index] = entry
                break
        else:
            variants.append(entry)
        self.bytes += entry.size
        self._entries.move_to_end(key)
        while self.bytes > self.max_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= sum(e.size for e in evicted)
            self.evictions += len(evicted)

    def replace(self, key: str, old: Entry, new: Entry) -> None:
        variants = self._entries.get(key, [])
        if old in variants:
            variants[variants.index(old)] = new
            self.bytes += new.size - old.size

    def purge(self, key: str) -> int:
        evicted = self._entries.pop(key, [])
        self.bytes -= sum(e.size for e in evicted)
        return len(evicted)

    def purge_prefix(self, prefix: str) -> int:
        return sum(self.purge(key) for key in [k for k in self._entries if k.startswith(prefix)])

    def purge_tag(self, tag: str) -> int:
        removed = 0
        for key in list(self._entries):
            variants = self._entries[key]
            kept = [e for e in variants if tag not in e.tags]
            if len(kept) != len(variants):
                removed += len(variants) - len(kept)
                self.bytes -= sum(e.size for e in variants if tag in e.tags)
                if kept:
                    self._entries[key] = kept
                else:
                    del self._entries[key]
        return removed

    def clear(self) -> int:
        count = len(self)
        self._entries.clear()
        self.bytes = 0
        return count
