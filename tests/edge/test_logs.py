from __future__ import annotations

import asyncio
import threading

from edgeproxy.edge.logs import LogEntry, LogHub


def test_ring_buffer_keeps_the_latest_per_site() -> None:
    hub = LogHub(capacity=3)
    for n in range(5):
        hub.append("a", f"r{n}", "h", "INFO", f"line {n}")
    hub.append("b", "rb", "h", "INFO", "other site")
    assert [e.message for e in hub.entries("a")] == ["line 2", "line 3", "line 4"]
    assert [e.message for e in hub.entries("b")] == ["other site"]
    assert hub.entries("nobody") == []
    assert hub.sites() == ["a", "b"]


def test_entries_since() -> None:
    hub = LogHub()
    hub.append("a", "r1", "h", "INFO", "one")
    hub.append("a", "r2", "h", "INFO", "two")
    first = hub.entries("a")[0]
    assert [e.message for e in hub.entries("a", since=first.time - 1)] == ["one", "two"]
    assert all(e.time > first.time for e in hub.entries("a", since=first.time))
    assert first.as_dict()["request_id"] == "r1"


def test_subscribe_gets_live_entries_of_its_site_until_closed() -> None:
    async def scenario() -> list[LogEntry]:
        hub = LogHub()
        hub.append("a", "r0", "h", "INFO", "before")
        got: list[LogEntry] = []
        async with hub.subscribe("a") as subscription:
            hub.append("b", "rb", "h", "INFO", "other site")
            hub.append("a", "r1", "h", "INFO", "live")
            thread = threading.Thread(target=hub.append, args=("a", "r2", "h", "STDOUT", "thread"))
            thread.start()
            thread.join(5)
            async for entry in subscription:
                got.append(entry)
                if len(got) == 2:
                    subscription.close()
        assert not hub._subscribers
        return got

    got = asyncio.run(asyncio.wait_for(scenario(), 5))
    assert [(e.request_id, e.message) for e in got] == [("r1", "live"), ("r2", "thread")]


def test_slow_subscriber_drops_newest() -> None:
    async def scenario() -> tuple[int, int]:
        hub = LogHub(subscriber_backlog=2)
        subscription = hub.subscribe("a")
        for n in range(5):
            hub.append("a", f"r{n}", "h", "INFO", "x")
        subscription.close()
        received = [entry async for entry in subscription]
        return len(received), subscription.dropped

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == (2, 3)


def test_long_messages_are_truncated() -> None:
    hub = LogHub(max_message=10)
    hub.append("a", "r", "h", "STDOUT", "x" * 25)
    [entry] = hub.entries("a")
    assert entry.message == "xxxxxxxxxx... (25 characters, truncated)"
