"""Upstream pools: the targets of one origin, how one is chosen, and passive health.

A pool outlives config reloads as long as its origin's config is unchanged, so health state
and connection reuse carry over; see `UpstreamRegistry.update`.
"""

from __future__ import annotations

import itertools
import random
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit

from edgeproxy.config.models import Origin
from edgeproxy.exceptions import NoHealthyUpstream


class Target:
    """One base URL of an origin, with its live state."""

    __slots__ = (
        "active",
        "base_path",
        "base_path_bytes",
        "ejected_until",
        "fails",
        "healthy",
        "host",
        "netloc",
        "netloc_bytes",
        "origin",
        "port",
        "scheme",
        "url",
    )

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.netloc = parts.netloc
        self.netloc_bytes = parts.netloc.encode()
        # "scheme://netloc" as the origin would write it in an absolute Location.
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.base_path = parts.path.rstrip("/")
        self.base_path_bytes = self.base_path.encode()
        self.active = 0
        self.fails = 0
        self.ejected_until = 0.0
        self.healthy = True

    def available(self, now: float) -> bool:
        return self.healthy and now >= self.ejected_until

    def __repr__(self) -> str:
        return f"Target({self.url!r})"


Balancer = Callable[[list[Target], str], Target]


def _round_robin() -> Balancer:
    counter = itertools.count()

    def pick(targets: list[Target], client_ip: str) -> Target:
        return targets[next(counter) % len(targets)]

    return pick


def _least_conn() -> Balancer:
    counter = itertools.count()

    def pick(targets: list[Target], client_ip: str) -> Target:
        fewest = min(target.active for target in targets)
        tied = [target for target in targets if target.active == fewest]
        return tied[next(counter) % len(tied)]

    return pick


def _ip_hash() -> Balancer:
    def pick(targets: list[Target], client_ip: str) -> Target:
        return targets[zlib.crc32(client_ip.encode()) % len(targets)]

    return pick


def _random() -> Balancer:
    def pick(targets: list[Target], client_ip: str) -> Target:
        return random.choice(targets)

    return pick


# Looked up by the `balancing:` name in rules.yaml; each call makes a fresh policy state.
BALANCERS: Mapping[str, Callable[[], Balancer]] = {
    "round_robin": _round_robin,
    "least_conn": _least_conn,
    "ip_hash": _ip_hash,
    "random": _random,
}


class UpstreamPool:
    """The targets of one origin."""

    def __init__(self, name: str, config: Origin) -> None:
        self.name = name
        self.config = config
        self.targets = [Target(url) for url in config.targets]
        self._pick = BALANCERS[config.balancing]()

    def select(self, client_ip: str, exclude: Iterable[Target] = ()) -> Target:
        """A target for this request, skipping ejected, unhealthy and `exclude`d ones."""
        now = time.monotonic()
        if len(self.targets) == 1:
            only = self.targets[0]
            if only.available(now) and not exclude:
                return only
        candidates = [t for t in self.targets if t.available(now) and t not in exclude]
        if not candidates:
            raise NoHealthyUpstream(f"origin '{self.name}' has no healthy target")
        if len(candidates) == 1:
            return candidates[0]
        return self._pick(candidates, client_ip)

    def record_success(self, target: Target) -> None:
        target.fails = 0

    def record_failure(self, target: Target) -> None:
        """Count a connect failure or timeout; eject after `max_fails` in a row.

        The only target of an origin is never ejected (as nginx does with a single server):
        with nowhere else to send a request, ejecting it would turn a few failed requests
        into refusing every request for `fail_timeout`.
        """
        if len(self.targets) == 1:
            return
        target.fails += 1
        passive = self.config.passive_health
        if passive.max_fails and target.fails >= passive.max_fails:
            target.ejected_until = time.monotonic() + passive.fail_timeout
            target.fails = 0


class UpstreamRegistry:
    """Pools by origin name, kept across reloads while their config is unchanged."""

    def __init__(self) -> None:
        self.pools: dict[str, UpstreamPool] = {}

    def update(
        self, origins: Mapping[str, Origin]
    ) -> tuple[list[UpstreamPool], list[UpstreamPool]]:
        """Adopt a new set of origins; returns (pools added, pools dropped)."""
        pools: dict[str, UpstreamPool] = {}
        added: list[UpstreamPool] = []
        for name, config in origins.items():
            old = self.pools.get(name)
            if old is not None and old.config == config:
                pools[name] = old
            else:
                pools[name] = UpstreamPool(name, config)
                added.append(pools[name])
        dropped = [pool for name, pool in self.pools.items() if pools.get(name) is not pool]
        self.pools = pools
        return added, dropped
