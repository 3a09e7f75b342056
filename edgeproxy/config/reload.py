"""Watching the config file so an edit is picked up while the server runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import watchfiles

logger = logging.getLogger("edgeproxy.config")


async def watch_config(path: Path, on_change: Callable[[], object], stop: asyncio.Event) -> None:
    """Call `on_change` after each settled change to `path` (absolute), until `stop` is set.

    The directory is watched rather than the file, so editors that save by writing a new
    file and renaming it over the old one (vim, Kubernetes ConfigMaps) are seen too.
    """
    target = path

    def concerns_config(change: watchfiles.Change, changed: str) -> bool:
        return Path(changed).resolve() == target

    async for _ in watchfiles.awatch(
        target.parent,
        watch_filter=concerns_config,
        stop_event=stop,
        step=100,
        recursive=False,
        rust_timeout=500,
        yield_on_timeout=False,
    ):
        logger.info("%s changed; reloading", path)
        on_change()
