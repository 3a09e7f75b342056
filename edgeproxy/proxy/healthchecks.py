"""Active health checks: probe every target of a pool on an interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp

from edgeproxy.proxy.upstreams import Target, UpstreamPool

logger = logging.getLogger("edgeproxy.health")


async def probe(session: aiohttp.ClientSession, pool: UpstreamPool, target: Target) -> bool:
    """True when `target` answers the pool's health check as configured."""
    check = pool.config.health_check
    assert check is not None  # only called for pools that have one
    timeout = aiohttp.ClientTimeout(total=check.timeout)
    try:
        async with session.get(
            target.url + check.path, timeout=timeout, allow_redirects=False
        ) as resp:
            await resp.read()
            if check.expect_status is not None:
                return resp.status == check.expect_status
            return 200 <= resp.status < 400
    except (aiohttp.ClientError, TimeoutError):
        return False


async def run_health_checks(
    session: aiohttp.ClientSession, pool: UpstreamPool, stop: asyncio.Event
) -> None:
    """Probe every target each interval until `stop` is set."""
    check = pool.config.health_check
    if check is None:
        return
    while not stop.is_set():
        results = await asyncio.gather(*(probe(session, pool, target) for target in pool.targets))
        for target, healthy in zip(pool.targets, results, strict=True):
            if target.healthy != healthy:
                logger.warning(
                    "origin %s target %s is now %s",
                    pool.name,
                    target.url,
                    "healthy" if healthy else "down",
                )
            target.healthy = healthy
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), check.interval)
