"""Helpers for edge tests: handler trees written into tmp_path, loaded and unloaded."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from edgeproxy.edge.functions import SiteFunctions
from edgeproxy.types import ASGIApp


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative path -> dedented source) under `root`; returns `root`."""
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"))
    return root


LoadSite = Callable[..., SiteFunctions]


@pytest.fixture
def load_site(tmp_path: Path) -> Iterator[LoadSite]:
    """Write a deployment (`functions/...` files, optional `_routes.json`) and load it."""
    loaded: list[SiteFunctions] = []
    count = 0

    def load(files: dict[str, str], deploy_id: str = "") -> SiteFunctions:
        nonlocal count
        count += 1
        root = write_files(tmp_path / f"deploy{count}", files)
        routes_json = root / "_routes.json"
        site = SiteFunctions.load(root / "functions", deploy_id or f"d{count}", routes_json)
        loaded.append(site)
        return site

    yield load
    for site in loaded:
        site.close()


def client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
