"""Memory per stored 1 KiB response in the cache (target: under 3 KiB).

    python bench/cache_memory.py [--entries 10000]

Stores N responses the way the cache layer does (typical nginx headers, a 1 KiB body,
per-entry facts computed) and reports tracemalloc's growth per entry.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeproxy.cache import dates, policy
from edgeproxy.cache.layer import CacheSettings, CacheStats, CachingAction
from edgeproxy.cache.store import CacheStore

TARGET_BYTES = 3 * 1024


async def _never(*args: object) -> None:
    raise RuntimeError("the benchmark stores entries directly")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    count = parser.parse_args().entries
    store = CacheStore(1 << 40)
    settings = CacheSettings(None, None, 0.0, "keep", frozenset(), 1 << 20)
    layer = CachingAction(_never, settings, store, CacheStats(store))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(count):
        now = time.time()
        headers = [
            (b"server", b"nginx/1.22.1"),
            (b"date", dates.format_http_date(now)),
            (b"content-type", b"text/plain"),
            (b"content-length", b"1024"),
            (b"last-modified", b"Sat, 28 Nov 2026 17:00:00 GMT"),
            (b"etag", b'"6569a1e0-400"'),
            (b"cache-control", b"public, max-age=3600"),
            (b"accept-ranges", b"bytes"),
            (b"via", b"1.1 edgeproxy"),
        ]
        key = policy.cache_key("GET", "http", "127.0.0.1:8080", f"/item/{index}".encode())
        entry = layer._entry(
            status=200,
            headers=headers,
            body=bytes(1024),
            request_time=now,
            response_time=now,
            vary=(),
            tags=frozenset(),
        )
        store.put(key, entry)
    per_entry = (tracemalloc.get_traced_memory()[0] - before) / count
    verdict = "met" if per_entry < TARGET_BYTES else "MISSED"
    print(f"{count} entries: {per_entry:,.0f} bytes per stored 1 KiB response")
    print(f"target < {TARGET_BYTES} bytes: {verdict}")
    return 0 if per_entry < TARGET_BYTES else 1


if __name__ == "__main__":
    raise SystemExit(main())
