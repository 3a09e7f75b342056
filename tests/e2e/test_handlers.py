"""End to end: edge handlers — a site's `functions/` and a route's `handler:` — in a real server.

One server (with one origin) serves most tests of this module: the shipped demo site, a
site of its own (tests/e2e/handlers/site), and route handlers from tests/e2e/handlers/.
Tests that must start, break or reload a server start their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tests.e2e.conftest import ROOT, Edge, Origin, free_port, start_edge, start_origin, stop
from tests.e2e.test_sites import TOKEN, cli

pytestmark = pytest.mark.e2e

HANDLERS = Path(__file__).resolve().parent / "handlers"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPORT = re.compile(
    r"REPORT request_id=(?P<request_id>\S+) handler=(?P<handler>\S+) status=(?P<status>\d+) "
    r"duration_ms=(?P<duration_ms>\d+\.\d\d) billed_ms=(?P<billed_ms>\d+) "
    r"wait_until_ms=(?P<wait_until_ms>\d+\.\d\d) outcome=(?P<outcome>\w+)$"
)

T = TypeVar("T")

RULES = """
admin:
  token: {token}
origins:
  app: {{targets: ["{origin}"]}}
sites:
  demo:
    source: {root}/demo-src
    env:
      production: {{GREETING: "Hello from production"}}
      preview: {{GREETING: "Hello from a preview"}}
    functions: {{wall_time: 30s, cpu_time: 50ms}}
  iso:
    source: {root}/iso-src
  strict:
    source: {root}/iso-src
objects:
  namespaces:
    COUNTER: {{class: sites/edge/counter.py:Counter}}
routes:
  - name: private
    match: {{path: /private, methods: [GET]}}
    proxy: app
    rewrite: {{to: /script/private}}
    handler:
      function: sites/edge/auth.py:require_token
      env: {{TOKEN: demo-token}}
  - name: decorated
    match: {{path: /script/decorated}}
    proxy: app
    handler: handlers/decorate.py
  - name: shout
    match: {{path: /script/shout}}
    proxy: app
    handler: handlers/decorate.py:shout
  - name: rewrite
    match: {{path: /rewrite}}
    proxy: app
    handler: handlers/rewrite.py
  - name: decorated-respond
    match: {{path: /decorated-respond}}
    respond: {{status: 202, body: "from respond"}}
    handler: handlers/decorate.py
  - name: decorated-redirect
    match: {{path: /decorated-redirect}}
    redirect: {{to: /elsewhere, status: 302}}
    handler: handlers/decorate.py
  - name: decorated-site
    match: {{path: /docs}}
    site: demo
    handler: handlers/decorate.py
  - name: boom
    match: {{path: /boom}}
    respond: {{body: "never sent"}}
    handler: handlers/faults.py:boom
  - name: not-a-response
    match: {{path: /not-a-response}}
    respond: {{body: "never sent"}}
    handler: handlers/faults.py:not_a_response
  - name: slow
    match: {{path: /slow}}
    respond: {{body: "never sent"}}
    handler: {{function: handlers/faults.py:too_slow, wall_time: 300ms}}
  - name: blocking
    match: {{path: /blocking}}
    respond: {{body: "unblocked"}}
    handler: {{function: handlers/faults.py:blocks_the_loop, cpu_time: 50ms}}
  - name: hang-next
    match: {{path: /hang}}
    proxy: app
    handler: handlers/decorate.py
  - name: hang-handler
    match: {{path: /sleeps}}
    respond: {{body: "never sent"}}
    handler: handlers/faults.py:too_slow
  - name: methods
    match: {{path: /methods}}
    respond: {{body: "from the route"}}
    handler: handlers/methods.py
  - name: get-only
    match: {{path: /get-only}}
    respond: {{body: "from the route"}}
    handler: handlers/get_only.py
  - name: later
    match: {{path: /later}}
    respond: {{body: "never sent"}}
    handler: {{function: handlers/later.py:on_request, env: {{MARKER_DIR: {root}/markers}}}}
  - name: release
    match: {{path: /release}}
    respond: {{body: "never sent"}}
    handler: handlers/later.py:release
  - name: chatty
    match: {{path: /chatty}}
    respond: {{body: "from the route"}}
    handler: handlers/chatty.py
  - name: quiet
    match: {{path: /quiet}}
    respond: {{body: "from the route"}}
    handler: handlers/get_only.py
  - name: plain
    match: {{path: /plain}}
    respond: {{body: "still answering"}}
"""


@dataclass
class World:
    edge: Edge
    origin: Origin
    root: Path

    @property
    def client(self) -> httpx.Client:
        return self.edge.client()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("handlers")
    shutil.copytree(ROOT / "sites" / "demo", root / "demo-src")
    shutil.copytree(ROOT / "sites" / "edge", root / "sites" / "edge")
    shutil.copytree(HANDLERS / "site", root / "iso-src")
    shutil.copytree(HANDLERS, root / "handlers", ignore=shutil.ignore_patterns("site"))
    (root / "markers").mkdir()
    origin = start_origin(root, "a")
    try:
        edge = start_edge(root, RULES.format(token=TOKEN, origin=origin.url, root=root))
    except BaseException:
        origin.stop()
        raise
    yield World(edge, origin, root)
    for client in edge.clients:
        client.close()
    stop(edge.process)
    origin.stop()


def host(name: str) -> dict[str, str]:
    return {"Host": name}


def eventually(condition: Callable[[], T | None], what: str, attempts: int = 200) -> T:
    """The first truthy value of `condition`, polled for at most ~10 s."""
    for _ in range(attempts):
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} never happened")


def reports(edge: Edge, request_id: str) -> list[dict[str, str]]:
    found = []
    for line in edge.logs().splitlines():
        match = REPORT.search(line)
        if match and match["request_id"] == request_id:
            found.append(match.groupdict())
    return found


def report_for(edge: Edge, request_id: str) -> dict[str, str]:
    found = eventually(lambda: reports(edge, request_id), f"a report of {request_id}")
    assert len(found) == 1, found
    return found[0]


def metric(edge: Edge, name: str, labels: str) -> float | None:
    text = edge.client().get("/_edge/metrics").text
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def origin_hits(origin: Origin, path: str) -> int:
    hits: int = httpx.get(f"{origin.url}/_hits", params={"path": path}).json()["hits"]
    return hits


def tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def upload(
    edge: Edge, site: str, files: dict[str, bytes], branch: str | None = None
) -> httpx.Response:
    """The admin API's three steps (start, upload what is missing, finalize); returns the
    finalize response."""
    client = edge.client()
    by_digest = {hashlib.sha256(content).hexdigest(): content for content in files.values()}
    body: dict[str, object] = {
        "files": {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    }
    if branch is not None:
        body["branch"] = branch
    started = client.post(f"/_edge/api/sites/{site}/deploys", json=body, headers=AUTH)
    assert started.status_code == 201, started.text
    upload_id = started.json()["upload"]
    for digest in started.json()["required"]:
        put = client.put(
            f"/_edge/api/sites/{site}/uploads/{upload_id}/files/{digest}",
            content=by_digest[digest],
            headers=AUTH,
        )
        assert put.status_code == 200, put.text
    return client.post(f"/_edge/api/sites/{site}/uploads/{upload_id}/finalize", headers=AUTH)


def deployment_ids(edge: Edge, site: str) -> list[str]:
    listing = edge.client().get(f"/_edge/api/sites/{site}/deploys", headers=AUTH).json()
    return [item["id"] for item in listing["deployments"]]


def with_version(files: dict[str, bytes], version: str) -> dict[str, bytes]:
    state = files["functions/api/state.py"].replace(
        b'VERSION = "v1"', f'VERSION = "{version}"'.encode()
    )
    assert state != files["functions/api/state.py"] or version == "v1"
    return {**files, "functions/api/state.py": state}


# The demo site's functions


@pytest.mark.parametrize(
    ("path", "status", "marker"),
    [
        pytest.param("/", 200, "edgeproxy demo site", id="static-index"),
        pytest.param("/about", 200, "<", id="static-page"),
        pytest.param("/assets/site.css", 200, "", id="static-asset"),
        pytest.param("/nowhere", 404, "Not found", id="static-404-page"),
        pytest.param("/old-about", 301, "", id="redirects-file"),
        pytest.param("/api/hello", 200, "greeting", id="function"),
        pytest.param("/api/nothing/here", 404, "no such API", id="catch-all-function"),
    ],
)
def test_demo_middleware_marks_every_response(
    world: World, path: str, status: int, marker: str
) -> None:
    response = world.client.get(path, headers=host("demo.localhost"))
    assert response.status_code == status, response.text
    assert response.headers["x-edge-middleware"] == "demo"
    assert marker in response.text


def test_demo_static_files_keep_their_own_headers_through_the_middleware(world: World) -> None:
    client = world.client
    page = client.get("/about", headers=host("demo.localhost"))
    assert page.headers["x-frame-options"] == "DENY"
    moved = client.get("/old-about", headers=host("demo.localhost"))
    assert moved.headers["location"].startswith("/about")


def test_demo_hello_answers_json(world: World) -> None:
    response = world.client.get(
        "/api/hello", params={"name": "edge"}, headers=host("demo.localhost")
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "greeting": "Hello from production",
        "environment": "production",
        "name": "edge",
        "middleware": "demo middleware",
    }


@pytest.mark.parametrize(
    ("method", "path", "segments"),
    [
        pytest.param("GET", "/api", [], id="bare-prefix"),
        pytest.param("GET", "/api/one", ["one"], id="one-segment"),
        pytest.param("GET", "/api/a/b/c", ["a", "b", "c"], id="several-segments"),
        pytest.param("GET", "/api/a/b/", ["a", "b"], id="trailing-slash"),
        # hello.py has only on_request_get: for POST it is as if absent.
        pytest.param("POST", "/api/hello", ["hello"], id="method-without-variant-falls-through"),
    ],
)
def test_demo_catch_all_gets_the_path_as_a_list(
    world: World, method: str, path: str, segments: list[str]
) -> None:
    response = world.client.request(method, path, headers=host("demo.localhost"))
    assert response.status_code == 404
    assert response.json() == {"error": "no such API", "path": segments}
    assert response.headers["x-edge-middleware"] == "demo"


@pytest.fixture(scope="module")
def demo_preview(world: World) -> str:
    """A deployment of the demo site on a branch: its preview host."""
    result = cli(
        world.edge,
        "deploy",
        str(world.root / "demo-src"),
        "--site",
        "demo",
        "--branch",
        "try-greeting",
    )
    assert result.returncode == 0, result.stderr
    return "try-greeting.demo.localhost"


@pytest.mark.parametrize(
    ("preview", "greeting", "environment"),
    [
        pytest.param(False, "Hello from production", "production", id="production"),
        pytest.param(True, "Hello from a preview", "preview", id="preview"),
    ],
)
def test_demo_greeting_follows_the_environment(
    world: World, demo_preview: str, preview: bool, greeting: str, environment: str
) -> None:
    name = demo_preview if preview else "demo.localhost"
    body = world.client.get("/api/hello", headers=host(name)).json()
    assert body["greeting"] == greeting
    assert body["environment"] == environment


def test_demo_counter_is_a_durable_object_per_name_and_environment(
    world: World, demo_preview: str
) -> None:
    client = world.client
    production, preview = host("demo.localhost"), host(demo_preview)
    params = {"name": "e2e-counter"}
    assert client.get("/api/counter", params=params, headers=production).json()["count"] == 0
    first = client.post("/api/counter", params=params, headers=production).json()
    second = client.post("/api/counter", params=params, headers=production).json()
    assert (first["count"], second["count"]) == (1, 2)
    assert first["id"] == second["id"]
    assert client.get("/api/counter", params=params, headers=production).json()["count"] == 2
    other = client.post("/api/counter", params={"name": "another"}, headers=production).json()
    assert other["count"] == 1
    assert other["id"] != first["id"]
    # A preview has its own objects: production's count is not there.
    assert client.post("/api/counter", params=params, headers=preview).json()["count"] == 1
    assert client.get("/api/counter", params=params, headers=production).json()["count"] == 2


# Pages Functions routing of a site of our own


@pytest.mark.parametrize(
    ("path", "body", "functions_involved"),
    [
        pytest.param("/", "iso static", False, id="not-included-goes-to-static"),
        pytest.param("/api/skip", "static skip", False, id="excluded-goes-to-static"),
        pytest.param("/api/state", '"version"', True, id="included-function"),
        pytest.param("/api/users/42", '{"id":"42"}', True, id="param-route"),
        pytest.param("/api/users/42/", '{"id":"42"}', True, id="param-route-trailing-slash"),
    ],
)
def test_routes_json_limits_which_paths_invoke_functions(
    world: World, path: str, body: str, functions_involved: bool
) -> None:
    response = world.client.get(path, headers=host("iso.localhost"))
    assert response.status_code == 200, response.text
    assert body in response.text
    assert ("x-site-middleware" in response.headers) is functions_involved


@pytest.mark.parametrize(
    ("name", "path", "source"),
    [
        pytest.param(
            "demo.localhost", "/functions/api/hello.py", "demo-src/functions/api/hello.py",
            id="function-source",
        ),
        pytest.param(
            "demo.localhost", "/functions/_middleware.py", "demo-src/functions/_middleware.py",
            id="middleware-source",
        ),
        pytest.param(
            "demo.localhost", "/%66unctions/api/hello.py", "demo-src/functions/api/hello.py",
            id="encoded-name",
        ),
        # iso has no 404.html: unknown paths get its index page (single-page-app fallback).
        pytest.param("iso.localhost", "/_routes.json", "iso-src/_routes.json", id="routes-json"),
        pytest.param(
            "iso.localhost", "/functions/_lib.py", "iso-src/functions/_lib.py", id="helper-source"
        ),
    ],
)  # fmt: skip
def test_function_sources_are_never_served(world: World, name: str, path: str, source: str) -> None:
    response = world.client.get(path, headers=host(name))
    assert (world.root / source).read_text().strip() not in response.text
    assert response.status_code == 404 or "iso static" in response.text


def test_each_deployment_runs_its_own_code_and_state(world: World) -> None:
    client = world.client
    production = host("iso.localhost")
    source = tree(world.root / "iso-src")

    def state(headers: dict[str, str]) -> tuple[str, int, str]:
        response = client.get("/api/state", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        return body["version"], body["calls"], body["environment"]

    version, before, environment = state(production)
    assert (version, environment) == ("v1", "production")

    deployed = upload(world.edge, "iso", with_version(source, "v2"), branch="next")
    assert deployed.status_code == 201, deployed.text
    preview = host("next.iso.localhost")
    assert state(preview) == ("v2", 1, "preview")
    assert state(preview) == ("v2", 2, "preview")
    assert state(host(f"{deployed.json()['id'][:8]}.iso.localhost"))[0] == "v2"
    # Production runs the old code, and its module state was neither reset nor shared.
    assert state(production) == ("v1", before + 1, "production")

    # The very same code in another deployment still gets modules of its own.
    twin = upload(world.edge, "iso", source, branch="twin")
    assert twin.status_code == 201, twin.text
    assert state(host("twin.iso.localhost")) == ("v1", 1, "preview")
    assert state(production) == ("v1", before + 2, "production")

    # A new production deployment runs its code; a rollback brings the old code back.
    sites = client.get("/_edge/api/sites", headers=AUTH).json()
    first = sites["iso"]["aliases"]["production"][:8]
    newer = upload(world.edge, "iso", with_version(source, "v3"))
    assert newer.status_code == 201, newer.text
    assert state(production)[0::2] == ("v3", "production")
    rolled = client.post("/_edge/api/sites/iso/rollback", json={"deploy_id": first}, headers=AUTH)
    assert rolled.status_code == 200, rolled.text
    assert state(production)[0::2] == ("v1", "production")


BROKEN_PY = "functions/api/broken.py"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        pytest.param(
            BROKEN_PY,
            b"async def on_request(request, env, ctx)\n    return None\n",
            [BROKEN_PY, "SyntaxError", "async def on_request(request, env, ctx)"],
            id="syntax-error",
        ),
        pytest.param(
            BROKEN_PY,
            b"import not_a_module_anywhere\n",
            [BROKEN_PY, "ModuleNotFoundError", "import not_a_module_anywhere"],
            id="import-error",
        ),
        pytest.param(
            BROKEN_PY,
            b"raise RuntimeError('refused at import time')\n",
            [BROKEN_PY, "RuntimeError: refused at import time", "line 1"],
            id="raises-at-import",
        ),
        pytest.param(
            BROKEN_PY,
            b"def on_request(request, env, ctx):\n    return None\n",
            [BROKEN_PY, "async def"],
            id="handler-not-async",
        ),
        pytest.param(
            "_routes.json",
            b"{not json",
            ["_routes.json", "not valid JSON"],
            id="routes-json-syntax",
        ),
        pytest.param(
            "_routes.json",
            b'{"version": 2, "include": ["/*"]}',
            ["_routes.json", "version must be 1"],
            id="routes-json-version",
        ),
        pytest.param(
            "_routes.json",
            b'{"version": 1, "include": ["api/*"]}',
            ["_routes.json", "must start with '/'"],
            id="routes-json-bad-rule",
        ),
    ],
)
def test_deploy_with_broken_functions_is_refused(
    world: World, name: str, content: bytes, expected: list[str]
) -> None:
    production = host("strict.localhost")
    client = world.client
    before = deployment_ids(world.edge, "strict")
    files = {**tree(world.root / "iso-src"), name: content}
    # On the production branch: the strongest case, it must not take over production.
    refused = upload(world.edge, "strict", with_version(files, "v-broken"))
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    for part in expected:
        assert part in detail
    assert deployment_ids(world.edge, "strict") == before
    response = client.get("/api/state", headers=production)
    assert response.status_code == 200
    assert response.json()["version"] == "v1"
    assert client.get("/", headers=production).text.strip() == "<h1>iso static</h1>"


# Route handlers


def test_route_handler_refuses_before_the_origin_is_asked(world: World) -> None:
    client = world.client
    before = origin_hits(world.origin, "/script/private")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "demo-token"}):
        refused = client.get("/private", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert origin_hits(world.origin, "/script/private") == before
    allowed = client.get("/private", headers={"Authorization": "Bearer demo-token"})
    assert allowed.status_code == 200
    assert allowed.text == f"/script/private #{before + 1}"
    assert origin_hits(world.origin, "/script/private") == before + 1


def test_ctx_next_response_headers_can_be_changed(world: World) -> None:
    response = world.client.get(
        "/script/decorated", params=[("h", "X-Remove-Me: 1"), ("h", "X-Kept: yes")]
    )
    assert response.status_code == 200
    assert response.text.startswith("/script/decorated #")
    assert response.headers["x-decorated"] == "by-handler"
    assert response.headers["x-kept"] == "yes"
    assert "x-remove-me" not in response.headers
    report = report_for(world.edge, response.headers["x-handler-request-id"])
    assert report["handler"] == "handlers/decorate.py:on_request"


def test_ctx_next_response_body_can_be_read(world: World) -> None:
    response = world.client.get("/script/shout", params={"status": "203"})
    assert response.status_code == 203
    assert response.text.startswith("/SCRIPT/SHOUT #")


@pytest.mark.parametrize(
    ("method", "body"),
    [
        pytest.param("GET", b"", id="path-query-and-headers"),
        pytest.param("POST", b"some body", id="and-a-new-body"),
    ],
)
def test_ctx_next_forwards_a_rewritten_request(world: World, method: str, body: bytes) -> None:
    response = world.client.request(method, "/rewrite/anything?x=1", content=body)
    assert response.status_code == 200, response.text
    echoed = response.json()
    assert echoed["method"] == method
    assert echoed["raw_path"] == "/rewritten/echo"
    assert echoed["query"] == "via=handler"
    assert echoed["headers"]["x-rewritten"] == ["yes"]
    assert echoed["body_size"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body.upper()).hexdigest()


@pytest.mark.parametrize(
    ("path", "status", "check"),
    [
        pytest.param("/script/decorated", 200, "/script/decorated #", id="proxy"),
        pytest.param("/decorated-respond", 202, "from respond", id="respond"),
        pytest.param("/decorated-redirect", 302, "", id="redirect"),
        pytest.param("/docs/about", 200, "<", id="site"),
    ],
)
def test_route_handler_wraps_every_kind_of_action(
    world: World, path: str, status: int, check: str
) -> None:
    response = world.client.get(path)
    assert response.status_code == status, response.text
    assert check in response.text
    assert response.headers["x-decorated"] == "by-handler"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/methods", "on_request_get", id="get-variant"),
        pytest.param("POST", "/methods", "on_request_post", id="post-variant"),
        pytest.param("PUT", "/methods", "on_request PUT", id="fallback-for-put"),
        pytest.param("DELETE", "/methods", "on_request DELETE", id="fallback-for-delete"),
        pytest.param("GET", "/get-only", "on_request_get", id="only-variant"),
        pytest.param("POST", "/get-only", "from the route", id="no-handler-for-method"),
    ],
)
def test_method_variants_win_over_on_request(
    world: World, method: str, path: str, body: str
) -> None:
    response = world.client.request(method, path)
    assert response.status_code == 200
    assert response.text == body


# Failures and limits


@pytest.mark.parametrize(
    ("path", "status", "code", "logged"),
    [
        pytest.param(
            "/boom",
            500,
            "handler-exception",
            [
                "edge handler handlers/faults.py:boom raised (request {id})",
                "Traceback (most recent call last)",
                "RuntimeError: kaboom from the handler",
            ],
            id="exception",
        ),
        pytest.param(
            "/not-a-response",
            500,
            "handler-exception",
            ["handlers/faults.py:not_a_response returned str, not a starlette"],
            id="not-a-response",
        ),
        pytest.param(
            "/slow",
            504,
            "handler-timeout",
            [
                "edge handler handlers/faults.py:too_slow exceeded its wall-time limit of 0.3 s "
                "and was cancelled (request {id})"
            ],
            id="wall-time-exceeded",
        ),
    ],
)
def test_handler_failure_is_contained(
    world: World, path: str, status: int, code: str, logged: list[str]
) -> None:
    client = world.client
    response = client.get(path)
    assert response.status_code == status
    assert response.headers["x-edge-error"] == code
    request_id = response.headers["x-request-id"]
    assert request_id in response.text
    assert "kaboom" not in response.text
    expected = [line.format(id=request_id) for line in logged]
    eventually(lambda: all(line in world.edge.logs() for line in expected), f"log {expected}")
    assert client.get("/plain").text == "still answering"
    assert client.get("/api/hello", headers=host("demo.localhost")).status_code == 200


@pytest.mark.parametrize(
    ("path", "handler"),
    [
        pytest.param("/hang/slow?delay=60", "handlers/decorate.py:on_request", id="in-ctx-next"),
        pytest.param("/sleeps", "handlers/faults.py:too_slow", id="in-handler-code"),
    ],
)
def test_client_leaving_cancels_the_invocation(world: World, path: str, handler: str) -> None:
    with pytest.raises(httpx.ReadTimeout):
        world.edge.client(timeout=0.5).get(path)

    def logged() -> dict[str, object] | None:
        mine = [e for e in world.edge.access_log() if e["path"] == path]
        return mine[-1] if mine else None

    entry = eventually(logged, "the access log line")
    request_id = str(entry["request_id"])
    report = report_for(world.edge, request_id)
    assert (report["handler"], report["outcome"]) == (handler, "canceled")
    assert int(report["status"]) == entry["status"] == 499
    assert f"request {request_id}" not in world.edge.logs()
    # The origin was let go too.
    eventually(
        lambda: httpx.get(f"{world.origin.url}/_count").json()["open_streams"] == 0,
        "the origin's request to end",
    )


def test_blocking_the_event_loop_is_logged_and_counted(world: World) -> None:
    label = "handlers/faults.py:blocks_the_loop"
    name, labels = "edgeproxy_handler_loop_blocked_total", f'handler="{label}"'
    before = metric(world.edge, name, labels) or 0.0
    response = world.client.get("/blocking")
    assert response.status_code == 200
    assert response.text == "unblocked"
    eventually(
        lambda: f"edge handler {label} has blocked the event loop" in world.edge.logs(),
        "the watchdog's log line",
    )
    eventually(lambda: (metric(world.edge, name, labels) or 0.0) > before, "the counter")
    assert world.client.get("/plain").text == "still answering"


# Reports, wait_until, logs


@pytest.mark.parametrize(
    ("path", "handler", "status", "outcome"),
    [
        pytest.param("/methods", "handlers/methods.py:on_request_get", 200, "ok", id="ok"),
        pytest.param("/boom", "handlers/faults.py:boom", 500, "exception", id="exception"),
        pytest.param("/slow", "handlers/faults.py:too_slow", 504, "timeout", id="timeout"),
    ],
)
def test_each_invocation_writes_a_report(
    world: World, path: str, handler: str, status: int, outcome: str
) -> None:
    response = world.client.get(path)
    request_id = response.headers.get("x-handler-request-id") or response.headers["x-request-id"]
    report = report_for(world.edge, request_id)
    assert report["handler"] == handler
    assert int(report["status"]) == status == response.status_code
    assert report["outcome"] == outcome
    hundredths = int(report["duration_ms"].replace(".", ""))
    assert int(report["billed_ms"]) == -(-hundredths // 100)
    assert report["wait_until_ms"] == "0.00"
    count = metric(world.edge, "edgeproxy_handler_duration_seconds_count", f'handler="{handler}"')
    assert count is not None
    assert count >= 1


def test_site_function_report_names_the_function(world: World) -> None:
    response = world.client.get("/api/state", headers=host("iso.localhost"))
    report = report_for(world.edge, response.headers["x-handler-request-id"])
    assert report["handler"] == "functions/api/state.py:on_request_get"
    assert report["outcome"] == "ok"


def test_wait_until_work_finishes_after_the_response(world: World) -> None:
    key = f"key-{os.getpid()}"
    done = world.root / "markers" / f"{key}.done"
    response = world.client.get("/later", params={"key": key})
    assert response.text == "answered"
    request_id = response.headers["x-handler-request-id"]
    # The work waits for /release: the response went out without it, and the report,
    # written once the work is over, is not there yet.
    assert not done.exists()
    assert reports(world.edge, request_id) == []
    assert world.client.get("/release", params={"key": key}).text == "released"
    eventually(done.exists, "the wait_until work's file")
    report = report_for(world.edge, request_id)
    assert report["outcome"] == "ok"
    assert float(report["wait_until_ms"]) > 0


def entries(edge: Edge, **params: str) -> list[dict[str, object]]:
    response = edge.client().get("/_edge/api/logs", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    found: list[dict[str, object]] = response.json()["entries"]
    return found


def test_route_handler_output_is_captured_per_request(world: World) -> None:
    response = world.client.get("/chatty", params={"key": "route-logs"})
    assert response.text == "from the route"
    request_id = response.headers["x-handler-request-id"]

    def captured() -> list[tuple[object, object]]:
        mine = [e for e in entries(world.edge, route="chatty") if e["request_id"] == request_id]
        return (
            [(e["level"], e["message"]) for e in mine]
            if any(e["level"] == "REPORT" for e in mine)
            else []
        )

    lines = eventually(captured, "the route handler's log entries")
    assert ("STDOUT", "printed route-logs") in lines
    assert ("INFO", "logged route-logs") in lines
    assert ("WARNING", "warned route-logs") in lines
    every = [e for e in entries(world.edge, route="chatty") if e["request_id"] == request_id]
    assert {e["handler"] for e in every} == {"handlers/chatty.py:on_request"}
    assert set(every[0]) == {"time", "site", "request_id", "handler", "level", "message"}
    # Captured output is not the server's own log.
    assert "printed route-logs" not in world.edge.logs()


def test_site_function_output_is_captured_per_request(world: World) -> None:
    response = world.client.get(
        "/api/state", params={"key": "site-logs"}, headers=host("iso.localhost")
    )
    request_id = response.headers["x-handler-request-id"]

    def captured() -> list[dict[str, object]]:
        return [
            e
            for e in entries(world.edge, site="iso")
            if e["request_id"] == request_id and e["level"] == "STDOUT"
        ]

    (entry,) = eventually(captured, "the function's print")
    assert str(entry["message"]).endswith("key=site-logs")
    assert entry["handler"] == "functions/api/state.py:on_request_get"
    assert entry["site"] == "iso"
    assert all(e["request_id"] != request_id for e in entries(world.edge, site="strict"))


def test_logs_follow_streams_new_entries(world: World) -> None:
    client = world.client
    client.get("/chatty", params={"key": "before-follow"})
    params = {"route": "chatty", "follow": "1"}
    with world.edge.client(timeout=10).stream(
        "GET", "/_edge/api/logs", params=params, headers=AUTH
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("application/x-ndjson")
        lines = stream.iter_lines()
        # Entries retained so far come first...
        while "printed before-follow" not in next(lines):
            pass
        # ...then each new one as it is written.
        client.get("/chatty", params={"key": "while-following"})
        seen = []
        while not any("warned while-following" in line for line in seen):
            seen.append(next(lines))
    messages = [json.loads(line)["message"] for line in seen if line]
    assert "printed while-following" in messages


def test_logs_follow_starts_before_any_entry(world: World) -> None:
    """A follower of a route with nothing logged yet gets its headers, then the entries."""
    got: list[str] = []

    def follow() -> None:
        with world.edge.client(timeout=10).stream(
            "GET", "/_edge/api/logs", params={"route": "quiet", "follow": "1"}, headers=AUTH
        ) as stream:
            got.append(f"status {stream.status_code}")
            for line in stream.iter_lines():
                got.append(line)
                if "REPORT" in line:
                    return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    eventually(lambda: got, "the follow response's headers", attempts=100)
    assert got == ["status 200"]
    assert world.client.get("/quiet").text == "on_request_get"
    follower.join(timeout=10)
    assert not follower.is_alive()
    assert "REPORT" in got[-1]


def test_logs_cli_prints_and_tails_a_routes_output(world: World) -> None:
    response = world.client.get("/chatty", params={"key": "cli-logs"})
    request_id = response.headers["x-handler-request-id"]
    eventually(lambda: reports(world.edge, request_id), "the report")
    printed = cli(world.edge, "logs", "--route", "chatty")
    assert printed.returncode == 0, printed.stderr
    mine = [line for line in printed.stdout.splitlines() if request_id in line]
    assert any(
        line.endswith(f"{request_id} handlers/chatty.py:on_request STDOUT: printed cli-logs")
        for line in mine
    ), mine
    assert any("WARNING: warned cli-logs" in line for line in mine), mine

    command = [sys.executable, "-m", "edgeproxy", "logs", "--route", "chatty", "--tail",
               "--server", world.edge.url, "--token", TOKEN]  # fmt: skip
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT) as tail:

        def read() -> None:
            assert tail.stdout is not None
            lines.extend(tail.stdout)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            # The retained entries come first: once they are printed, the tail is live.
            eventually(lambda: any("printed cli-logs" in line for line in lines), "the backlog")
            world.client.get("/chatty", params={"key": "cli-tail"})
            eventually(lambda: any("printed cli-tail" in line for line in lines), "a live line")
        finally:
            tail.terminate()
            reader.join(timeout=10)


@pytest.mark.parametrize(
    ("params", "headers", "status"),
    [
        pytest.param({"site": "iso"}, {}, 401, id="no-token"),
        pytest.param({"site": "iso"}, {"Authorization": "Bearer wrong"}, 401, id="wrong-token"),
        pytest.param({"site": "nope"}, AUTH, 404, id="unknown-site"),
        pytest.param({}, AUTH, 400, id="neither-site-nor-route"),
        pytest.param({"site": "iso", "route": "chatty"}, AUTH, 400, id="both-site-and-route"),
    ],
)
def test_logs_api_refuses(
    world: World, params: dict[str, str], headers: dict[str, str], status: int
) -> None:
    response = world.client.get("/_edge/api/logs", params=params, headers=headers)
    assert response.status_code == status, response.text


# Loading route handlers: at start and on reload


HOT = """
from starlette.responses import PlainTextResponse


async def on_request(request, env, ctx):
    return PlainTextResponse("{text}")
"""

HOT_RULES = """
routes:
  - name: hot
    match: {{path: /hot}}
    respond: {{body: "from the route"}}
    handler: {spec}
  - name: plain
    match: {{path: /plain}}
    respond: {{body: "still answering"}}
"""

LOAD_ERRORS = [
    pytest.param(
        "handlers/hot.py",
        "async def on_request(request, env, ctx)\n    return None\n",
        ["handlers/hot.py", "SyntaxError"],
        id="syntax-error",
    ),
    pytest.param(
        "handlers/hot.py",
        "import not_a_module_anywhere\n",
        ["handlers/hot.py", "ModuleNotFoundError", "import not_a_module_anywhere"],
        id="import-error",
    ),
    pytest.param(
        "handlers/hot.py:gone",
        HOT.format(text="v1"),
        ["has no function 'gone'", "defines: on_request"],
        id="missing-function",
    ),
    pytest.param(
        "handlers/hot.py",
        "def on_request(request, env, ctx):\n    return None\n",
        ["on_request must be an `async def` function"],
        id="not-async",
    ),
    pytest.param(
        "handlers/hot.py",
        "async def on_request(request):\n    return None\n",
        ["must accept (request, env, ctx)"],
        id="wrong-signature",
    ),
    pytest.param(
        "handlers/missing.py",
        HOT.format(text="v1"),
        ["handlers/missing.py", "no such Python file"],
        id="missing-file",
    ),
]


def write_hot(root: Path, spec: str, code: str) -> Path:
    (root / "handlers").mkdir(exist_ok=True)
    (root / "handlers" / "hot.py").write_text(code)
    config = root / "rules.yaml"
    config.write_text(HOT_RULES.format(spec=spec))
    return config


@pytest.mark.parametrize(("spec", "code", "expected"), LOAD_ERRORS)
def test_serve_refuses_to_start_with_a_broken_handler(
    tmp_path: Path, spec: str, code: str, expected: list[str]
) -> None:
    config = write_hot(tmp_path, spec, code)
    result = subprocess.run(
        [sys.executable, "-m", "edgeproxy", "serve", "--config", str(config),
         "--host", "127.0.0.1", "--port", str(free_port()),
         "--state-dir", str(tmp_path / "state")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "routes[0].handler" in result.stderr
    for part in expected:
        assert part in result.stderr


@pytest.mark.parametrize(("spec", "code", "expected"), LOAD_ERRORS)
def test_reload_with_a_broken_handler_keeps_the_last_good_config(
    tmp_path: Path, spec: str, code: str, expected: list[str]
) -> None:
    write_hot(tmp_path, "handlers/hot.py", HOT.format(text="v1"))
    edge = start_edge(tmp_path, HOT_RULES.format(spec="handlers/hot.py"))
    try:
        client = edge.client()
        assert client.get("/hot").text == "v1"
        write_hot(tmp_path, spec, code)

        def errors() -> list[str]:
            found: list[str] = client.get("/_edge/status").json()["last_reload"]["errors"]
            return found

        reported = eventually(errors, "the reload error at /_edge/status")
        for part in expected:
            assert any(part in error for error in reported), reported
        status = client.get("/_edge/status").json()
        assert status["last_reload"]["ok"] is False
        assert status["config"]["version"] == 1
        assert client.get("/hot").text == "v1"
        assert client.get("/plain").text == "still answering"
        # Fixed: the new code serves, without a restart.
        write_hot(tmp_path, "handlers/hot.py", HOT.format(text="v2"))
        eventually(lambda: client.get("/hot").text == "v2", "the fixed handler serving")
        assert client.get("/_edge/status").json()["last_reload"]["ok"] is True
    finally:
        for client in edge.clients:
            client.close()
        stop(edge.process)


GUARD = """
import os
from pathlib import Path

from starlette.responses import PlainTextResponse

# Importable only while the marker exists: a load failure that comes after the deploy.
if not Path(os.environ["GUARD_MARKER"]).exists():
    raise RuntimeError("the guard's marker is gone")


async def on_request(request, env, ctx):
    if request.headers.get("x-let-in") != env.PASSWORD:
        return PlainTextResponse("keep out", status_code=403)
    return await ctx.next()
"""

SITE_RULES = """
sites:
  guarded:
    source: {source}
    env:
      production: {{PASSWORD: {password}}}
routes:
  - match: {{path: /}}
    respond: {{body: "not a site"}}
"""


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[Edge, Path, Path]]:
    source = tmp_path / "guarded-src"
    (source / "functions").mkdir(parents=True)
    (source / "index.html").write_text("<h1>behind the guard</h1>")
    (source / "functions" / "_middleware.py").write_text(GUARD)
    marker = tmp_path / "marker"
    marker.write_text("present")
    rules = SITE_RULES.format(source=source, password="one")
    edge = start_edge(tmp_path, rules, env={"GUARD_MARKER": str(marker)})
    yield edge, source, marker
    for client in edge.clients:
        client.close()
    stop(edge.process)


def test_reload_gives_functions_the_new_site_env(guarded: tuple[Edge, Path, Path]) -> None:
    edge, source, _ = guarded
    client = edge.client()
    site = host("guarded.localhost")
    assert client.get("/", headers={**site, "X-Let-In": "one"}).text == "<h1>behind the guard</h1>"
    edge.config.write_text(SITE_RULES.format(source=source, password="two"))
    eventually(
        lambda: client.get("/", headers={**site, "X-Let-In": "two"}).status_code == 200,
        "the new password working",
    )
    assert client.get("/", headers={**site, "X-Let-In": "one"}).status_code == 403


def test_deployment_whose_functions_stop_loading_fails_closed(
    guarded: tuple[Edge, Path, Path],
) -> None:
    edge, source, marker = guarded
    client = edge.client()
    site = host("guarded.localhost")
    assert client.get("/", headers=site).status_code == 403
    marker.unlink()
    # A reload loads every deployment's functions again; this one's middleware now fails.
    edge.config.write_text(SITE_RULES.format(source=source, password="one"))
    eventually(lambda: client.get("/_edge/status").json()["config"]["version"] == 2, "the reload")
    for headers in (site, {**site, "X-Let-In": "one"}):
        response = client.get("/", headers=headers)
        assert response.status_code == 500
        assert response.headers["x-edge-error"] == "functions-unavailable"
        assert "behind the guard" not in response.text
    assert "the guard's marker is gone" in edge.logs()
    assert client.get("/").text == "not a site"
