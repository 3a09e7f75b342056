"""End to end: static sites, deployments, preview aliases, rollback, the admin API and CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ROOT, Edge
from tests.e2e.test_proxy import parse_response, raw_request

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-admin-token"


def site_rules(source: Path, extra_site: str = "", dialect: str = "cloudflare") -> str:
    return f"""
admin:
  token: {TOKEN}
sites:
  demo:
    hosts: [www.demo.test]
    source: {source}
    redirects_dialect: {dialect}
{extra_site}
routes:
  - name: docs
    match: {{path: /docs}}
    site: demo
  - match: {{path: /}}
    respond: {{body: "not a site"}}
"""


@pytest.fixture
def source(tmp_path: Path) -> Path:
    target = tmp_path / "demo-src"
    shutil.copytree(ROOT / "sites" / "demo", target)
    return target


@pytest.fixture
def edge(source: Path, edge_factory: Callable[..., Edge]) -> Edge:
    return edge_factory(site_rules(source))


def host(edge: Edge, name: str) -> dict[str, str]:
    return {"Host": f"{name}:{edge.port}"}


def cli(edge: Edge, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edgeproxy", *args, "--server", edge.url, "--token", TOKEN]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)


def make_site(root: Path, title: str, extra: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(f"<h1>{title}</h1>")
    for name, content in (extra or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


def test_source_is_published_as_production(edge: Edge) -> None:
    client = edge.client()
    for name in ("demo.localhost", "www.demo.test"):
        response = client.get("/", headers=host(edge, name))
        assert response.status_code == 200
        assert "edgeproxy demo site" in response.text
        assert "x-robots-tag" not in response.headers
    assert client.get("/").text == "not a site"


def test_access_log_counts_the_bytes_of_static_and_function_responses(edge: Edge) -> None:
    client = edge.client()
    page = client.get("/about", headers=host(edge, "demo.localhost"))
    api = client.get("/api/missing", headers=host(edge, "demo.localhost"))
    assert (page.status_code, api.status_code) == (200, 404)
    logged = {entry["path"]: entry["bytes"] for entry in edge.access_log(2)}
    assert logged["/about"] == len(page.content) > 0
    assert logged["/api/missing"] == len(api.content) > 0


def test_deploy_branches_preview_production_and_rollback(edge: Edge, tmp_path: Path) -> None:
    client = edge.client()
    feature = cli(
        edge,
        "deploy",
        str(make_site(tmp_path / "f", "feature")),
        "--site",
        "demo",
        "--branch",
        "feature/X",
        "--commit",
        "abc123",
    )
    assert feature.returncode == 0, feature.stderr
    assert "feature-x.demo.localhost" in feature.stdout
    preview = client.get("/", headers=host(edge, "feature-x.demo.localhost"))
    assert preview.text == "<h1>feature</h1>"
    assert preview.headers["x-robots-tag"] == "noindex"
    assert "edgeproxy demo site" in client.get("/", headers=host(edge, "demo.localhost")).text

    first = cli(edge, "deploy", str(make_site(tmp_path / "v1", "v1")), "--site", "demo")
    assert first.returncode == 0, first.stderr
    first_id = first.stdout.split()[1]
    assert client.get("/", headers=host(edge, "www.demo.test")).text == "<h1>v1</h1>"
    second = cli(edge, "deploy", str(make_site(tmp_path / "v2", "v2")), "--site", "demo")
    assert second.returncode == 0, second.stderr
    assert client.get("/", headers=host(edge, "www.demo.test")).text == "<h1>v2</h1>"
    # The earlier deployment still answers at its own ID, forever.
    assert client.get("/", headers=host(edge, f"{first_id}.demo.localhost")).text == "<h1>v1</h1>"

    rolled = cli(edge, "rollback", first_id, "--site", "demo")
    assert rolled.returncode == 0, rolled.stderr
    assert client.get("/", headers=host(edge, "www.demo.test")).text == "<h1>v1</h1>"
    listing = cli(edge, "deployments", "--site", "demo")
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["ID", "BRANCH", "COMMIT", "CREATED", "FILES", "ALIASES"]
    assert any(line.startswith(first_id) and "production" in line for line in lines)
    assert any("feature/X" in line and "abc123" in line for line in lines)

    # The full 32-hex ID works wherever the short one does.
    auth = {"Authorization": f"Bearer {TOKEN}"}
    deploys = client.get("/_edge/api/sites/demo/deploys", headers=auth).json()["deployments"]
    newest = deploys[0]["id"]
    assert len(newest) == 32
    full = client.post("/_edge/api/sites/demo/rollback", json={"deploy_id": newest}, headers=auth)
    assert full.status_code == 200, full.text
    assert full.json()["aliases"]["production"] == newest
    assert client.get("/", headers=host(edge, "www.demo.test")).text == "<h1>v2</h1>"


def test_deploy_uploads_only_what_the_server_lacks(edge: Edge, tmp_path: Path) -> None:
    site = make_site(tmp_path / "s", "same", {"big.txt": "x" * 10000})
    first = cli(edge, "deploy", str(site), "--site", "demo", "--branch", "a")
    assert "2 to upload" in first.stderr
    again = cli(edge, "deploy", str(site), "--site", "demo", "--branch", "b")
    assert "0 to upload" in again.stderr


def test_alias_commands(edge: Edge, tmp_path: Path) -> None:
    result = cli(
        edge, "deploy", str(make_site(tmp_path / "s", "pinned")), "--site", "demo", "--branch", "x"
    )
    deploy_id = result.stdout.split()[1]
    assert cli(edge, "alias", "stable", deploy_id, "--site", "demo").returncode == 0
    client = edge.client()
    assert client.get("/", headers=host(edge, "stable.demo.localhost")).text == "<h1>pinned</h1>"
    assert cli(edge, "alias", "stable", "--delete", "--site", "demo").returncode == 0
    assert client.get("/", headers=host(edge, "stable.demo.localhost")).status_code == 404
    refused = cli(edge, "alias", "production", "--delete", "--site", "demo")
    assert refused.returncode == 1
    assert "cannot be removed" in refused.stderr


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, "unauthorized", id="no-token"),
        pytest.param({"Authorization": "Bearer wrong"}, "unauthorized", id="wrong-token"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, "unauthorized", id="wrong-scheme"),
    ],
)
def test_admin_api_refuses_without_the_token(
    edge: Edge, headers: dict[str, str], code: str
) -> None:
    client = edge.client()
    before = client.get("/_edge/api/sites", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    response = client.post(
        "/_edge/api/sites/demo/rollback", json={"deploy_id": "00000000"}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"] == code
    after = client.get("/_edge/api/sites", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert before == after
    described = client.get("/_edge/api/openapi.json").json()
    assert described["info"]["title"] == "edgeproxy admin API"
    assert {"/_edge/api/logs", "/_edge/api/objects", "/_edge/api/objects/{id}"} <= set(
        described["paths"]
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "detail"),
    [
        pytest.param(
            "POST",
            "/sites/nope/deploys",
            {"files": {"a": "0" * 64}},
            404,
            "no site 'nope'",
            id="unknown-site",
        ),
        pytest.param(
            "POST",
            "/sites/demo/deploys",
            {"files": {"../x": "0" * 64}},
            400,
            "invalid file path",
            id="traversal-in-upload",
        ),
        pytest.param(
            "POST",
            "/sites/demo/deploys",
            {"files": {"a": "zz"}},
            400,
            "not a sha256",
            id="bad-digest",
        ),
        pytest.param("POST", "/sites/demo/deploys", {"files": {}}, 400, "non-empty", id="no-files"),
        pytest.param(
            "POST",
            "/sites/demo/rollback",
            {"deploy_id": "deadbeef"},
            404,
            "no deployment",
            id="rollback-unknown",
        ),
        pytest.param(
            "PUT",
            "/sites/demo/aliases/Bad_Alias",
            {"deploy_id": "x"},
            404,
            "no deployment",
            id="alias-unknown-deploy",
        ),
    ],
)
def test_admin_api_bad_input(
    edge: Edge, method: str, path: str, body: object, status: int, detail: str
) -> None:
    response = edge.client().request(
        method, f"/_edge/api{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


def test_upload_with_wrong_content_is_refused(edge: Edge) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    client = edge.client()
    digest = "a" * 64
    started = client.post(
        "/_edge/api/sites/demo/deploys", json={"files": {"x.txt": digest}}, headers=auth
    ).json()
    put = client.put(
        f"/_edge/api/sites/demo/uploads/{started['upload']}/files/{digest}",
        content=b"other",
        headers=auth,
    )
    assert put.status_code == 400
    assert "does not match" in put.json()["detail"]
    final = client.post(f"/_edge/api/sites/demo/uploads/{started['upload']}/finalize", headers=auth)
    assert final.status_code == 409
    assert "not uploaded" in final.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/../../etc/passwd", id="dotdot"),
        pytest.param("/%2e%2e/%2e%2e/etc/passwd", id="encoded-dots"),
        pytest.param("/_redirects", id="redirects-file"),
        pytest.param("/_headers", id="headers-file"),
        pytest.param("/..%2fetc/passwd", id="encoded-slash"),
    ],
)
def test_site_paths_never_escape_the_deployment(edge: Edge, path: str) -> None:
    raw = raw_request(
        edge, f"GET {path} HTTP/1.1\r\nHost: demo.localhost\r\nConnection: close\r\n\r\n".encode()
    )
    status, _, body = parse_response(raw)
    assert status in (400, 404)
    assert b"root:" not in body
    assert b"/old-about" not in body


def test_site_mounted_under_a_route(edge: Edge) -> None:
    client = edge.client()
    assert client.get("/docs/about").status_code == 200
    moved = client.get("/docs/about.html")
    assert moved.status_code == 308
    assert moved.headers["location"] == "/docs/about"


def test_redirects_and_headers_files_apply(edge: Edge) -> None:
    client = edge.client()
    moved = client.get("/old-about?x=1", headers=host(edge, "demo.localhost"))
    assert moved.status_code == 301
    assert moved.headers["location"].startswith("/about")
    page = client.get("/about", headers=host(edge, "demo.localhost"))
    assert page.headers["x-frame-options"] == "DENY"
    asset = client.get("/assets/site.css", headers=host(edge, "demo.localhost"))
    assert asset.headers["x-asset"] == "yes"
    assert "immutable" in asset.headers["cache-control"]
    missing = client.get("/nowhere", headers=host(edge, "demo.localhost"))
    assert missing.status_code == 404
    assert "Not found" in missing.text


@pytest.mark.parametrize(
    ("protection", "good", "bad"),
    [
        pytest.param(
            "preview_protection: {basic_auth: {username: team, password: pw}}",
            {"Authorization": "Basic dGVhbTpwdw=="},
            {"Authorization": "Basic dGVhbTp3cm9uZw=="},
            id="basic-auth",
        ),
        pytest.param(
            "preview_protection: {token: preview-token}",
            {"Authorization": "Bearer preview-token"},
            {"Authorization": "Bearer nope"},
            id="token",
        ),
    ],
)
def test_preview_protection(
    source: Path,
    edge_factory: Callable[..., Edge],
    tmp_path: Path,
    protection: str,
    good: dict[str, str],
    bad: dict[str, str],
) -> None:
    edge = edge_factory(site_rules(source, f"    {protection}"))
    result = cli(
        edge,
        "deploy",
        str(make_site(tmp_path / "p", "secret preview")),
        "--site",
        "demo",
        "--branch",
        "wip",
    )
    assert result.returncode == 0, result.stderr
    client = edge.client()
    preview = host(edge, "wip.demo.localhost")
    assert client.get("/", headers=preview).status_code == 401
    assert client.get("/", headers={**preview, **bad}).status_code == 401
    allowed = client.get("/", headers={**preview, **good})
    assert allowed.text == "<h1>secret preview</h1>"
    # Production is public.
    assert client.get("/", headers=host(edge, "www.demo.test")).status_code == 200


def test_preview_token_in_url_becomes_a_cookie(
    source: Path, edge_factory: Callable[..., Edge], tmp_path: Path
) -> None:
    edge = edge_factory(site_rules(source, "    preview_protection: {token: tok}"))
    cli(edge, "deploy", str(make_site(tmp_path / "p", "t")), "--site", "demo", "--branch", "wip")
    client = edge.client()
    preview = host(edge, "wip.demo.localhost")
    first = client.get("/?edge_token=tok&x=1", headers=preview)
    assert first.status_code == 303
    assert first.headers["location"] == "/?x=1"
    cookie = first.headers["set-cookie"].split(";")[0]
    assert client.get("/", headers={**preview, "Cookie": cookie}).text == "<h1>t</h1>"


def test_kill_mid_publish_leaves_every_alias_resolving(
    source: Path, edge_factory: Callable[..., Edge], tmp_path: Path
) -> None:
    edge = edge_factory(site_rules(source))
    sites = [
        make_site(tmp_path / f"s{i}", f"v{i}", {f"f{j}.txt": f"{i}-{j}" for j in range(20)})
        for i in range(6)
    ]
    env = {**os.environ, "EDGEPROXY_TOKEN": TOKEN}
    deployers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgeproxy",
                "deploy",
                str(site),
                "--site",
                "demo",
                "--branch",
                f"b{i % 2}",
                "--server",
                edge.url,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, site in enumerate(sites)
    ]
    time.sleep(1.0)
    edge.process.send_signal(signal.SIGKILL)
    edge.process.wait()
    for deployer in deployers:
        deployer.wait(timeout=60)
    state = edge.state_dir / "sites" / "demo"
    aliases = json.loads((state / "aliases.json").read_text())
    for alias, deploy_id in aliases.items():
        assert (state / "deploys" / f"{deploy_id}.json").is_file(), alias
        assert (state / "deploys" / deploy_id / "index.html").is_file(), alias
    # A restarted server serves every alias.
    restarted = edge_factory(site_rules(source))
    client = restarted.client()
    for alias in aliases:
        name = "demo.localhost" if alias == "production" else f"{alias}.demo.localhost"
        response = client.get("/", headers={"Host": name})
        assert response.status_code == 200, (alias, response.text)


def test_bad_redirects_lines_are_reported_at_deploy(edge: Edge, tmp_path: Path) -> None:
    site = make_site(tmp_path / "r", "r", {"_redirects": "/a /b 301\n/broken\n/c /d 299\n"})
    result = cli(edge, "deploy", str(site), "--site", "demo", "--branch", "r")
    assert result.returncode == 0, result.stderr
    assert "_redirects:2" in result.stdout
    assert "_redirects:3" in result.stdout
    moved = edge.client().get("/a", headers=host(edge, "r.demo.localhost"))
    assert moved.status_code == 301
    assert httpx.URL(moved.headers["location"]).path == "/b"
