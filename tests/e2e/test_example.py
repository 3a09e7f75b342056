"""End to end: the shipped rules.yaml does what README.md says it does."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Edge, free_port

pytestmark = pytest.mark.e2e


def test_shipped_rules_serve_the_documented_urls(
    edge_factory: Callable[..., Edge], tmp_path: Path
) -> None:
    # The config's relative paths (sites/demo) resolve next to it, as in the repo.
    shutil.copytree(ROOT / "sites", tmp_path / "sites")
    port = free_port()
    edge = edge_factory(
        (ROOT / "rules.yaml").read_text(),
        env={"EDGEPROXY_LISTEN": f"127.0.0.1:{port}"},
        port=port,
    )
    client = edge.client()
    home = client.get("/")
    assert home.status_code == 200
    assert "edgeproxy demo site" in home.text
    assert home.headers["x-served-by"] == "edgeproxy"
    assert home.headers["x-frame-options"] == "DENY"  # from the site's _headers file
    production = client.get("/about", headers={"Host": f"demo.localhost:{port}"})
    assert "Clean URLs" in production.text
    assert "x-robots-tag" not in production.headers
    branch = client.get("/", headers={"Host": f"main.demo.localhost:{port}"})
    assert "edgeproxy demo site" in branch.text
    assert branch.headers["x-robots-tag"] == "noindex"
    proxied = client.get("/edge/health")
    assert proxied.json() == {"status": "ok"}
    assert proxied.headers["via"] == "1.1 edgeproxy"
    redirect = client.get("/old-docs/routing")
    assert redirect.status_code == 301
    assert redirect.headers["location"] == "/docs/routing"
    assert client.get("/docs/routing").status_code == 200

    # An edge function, at production and at the branch alias of the same deployment.
    demo = {"Host": f"demo.localhost:{port}"}
    hello = client.get("/api/hello", headers=demo)
    assert hello.json()["greeting"] == "Hello from production"
    assert hello.headers["x-edge-middleware"] == "demo"
    at_branch = client.get("/api/hello", headers={"Host": f"main.demo.localhost:{port}"})
    assert at_branch.json()["environment"] == "production"
    # A durable object, in the default storage and pinned to eu.
    counts = [client.post("/api/counter?name=a", headers=demo).json()["count"] for _ in "ab"]
    assert counts == [1, 2]
    eu = client.post("/api/counter?name=a&jurisdiction=eu", headers=demo).json()
    assert eu["count"] == 1
    assert list((edge.state_dir / "objects" / "eu").glob("shard-*.sqlite3"))
    # A route handler guarding a proxied service.
    assert client.get("/private/status").status_code == 401
    status = client.get("/private/status", headers={"Authorization": "Bearer demo-token"})
    assert status.json()["routes"] == 5


def test_port_option_keeps_the_self_proxy_working(
    edge_factory: Callable[..., Edge], tmp_path: Path
) -> None:
    shutil.copytree(ROOT / "sites", tmp_path / "sites")
    # No EDGEPROXY_LISTEN in the environment: --port alone must be enough.
    edge = edge_factory((ROOT / "rules.yaml").read_text(), env={"EDGEPROXY_LISTEN": ""})
    assert edge.client().get("/edge/health").json() == {"status": "ok"}
