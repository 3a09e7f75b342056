"""End to end: durable objects reached from a site's functions through a running server.

The site (tests/e2e/objects/site) has functions that reach the classes in
tests/e2e/objects/classes.py as `env.COUNTER`, `env.OTHER` and `env.ALARMS`;
the shard files under the state dir are read with sqlite3 to check where objects live.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.e2e.conftest import ROOT, Edge, free_port, start_edge, stop

pytestmark = pytest.mark.e2e

T = TypeVar("T")
TOKEN = "objects-admin-token"
FIXTURES = Path(__file__).parent / "objects"
CLASSES = FIXTURES / "classes.py"
TABLES = ("kv", "names", "alarms", "dead_letters")
MAX_RETRIES = 3


def object_rules(source: Path, idle: str = "60s") -> str:
    return f"""
admin:
  token: {TOKEN}
sites:
  demo:
    source: {source}
  other: {{}}
objects:
  default: {{path: objects/default, shards: 2}}
  jurisdictions:
    eu: {{path: objects/eu, shards: 2}}
    us: {{path: objects/us, shards: 2}}
  namespaces:
    COUNTER: {{class: "{CLASSES}:Counter", sites: [demo]}}
    OTHER: "{CLASSES}:Counter"
    ALARMS: "{CLASSES}:Alarm"
    HIDDEN: {{class: "{CLASSES}:Counter", sites: [other]}}
  idle_timeout: {idle}
  alarm_retry_base: 0.05s
  alarm_max_retries: {MAX_RETRIES}
routes:
  - match: {{path: /}}
    respond: {{body: "not a site"}}
"""


def copy_site(tmp_path: Path) -> Path:
    target = tmp_path / "site-src"
    shutil.copytree(FIXTURES / "site", target)
    return target


def site(edge: Edge, host: str = "demo.localhost") -> httpx.Client:
    return edge.client(headers={"Host": f"{host}:{edge.port}"})


def rpc(client: httpx.Client, name: str, method: str, *args: Any, binding: str = "COUNTER") -> Any:
    """What `await env[binding].get(id_from_name(name)).method(*args)` gave a function."""
    response = client.post(
        "/api/rpc", json={"binding": binding, "name": name, "method": method, "args": args}
    )
    assert response.status_code == 200, response.text
    return response.json()


def call(client: httpx.Client, name: str, method: str, *args: Any, binding: str = "COUNTER") -> Any:
    answer = rpc(client, name, method, *args, binding=binding)
    assert "error" not in answer, answer
    return answer["result"]


def post(client: httpx.Client, **query: str) -> dict[str, Any]:
    response = client.post("/api/counter", params=query)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def count(client: httpx.Client, **query: str) -> int:
    response = client.get("/api/counter", params=query)
    assert response.status_code == 200, response.text
    value: int = response.json()["count"]
    return value


def built(client: httpx.Client, object_id: str) -> int:
    """How many instances the server process has constructed for `object_id`."""
    value: int = call(client, "probe", "built", object_id)
    return value


def eventually(check: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    """`check()`'s first truthy result, polled; fails if there is none within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not the case after {timeout:g}s")
        time.sleep(0.05)


def post_concurrently(edge: Edge, requests: list[dict[str, str]]) -> list[httpx.Response]:
    """POST /api/counter once per query in `requests`, all at once on their own connections."""

    async def send() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(requests))
        async with httpx.AsyncClient(
            base_url=edge.url,
            headers={"Host": f"demo.localhost:{edge.port}"},
            timeout=60.0,
            limits=limits,
        ) as client:
            return await asyncio.gather(
                *(client.post("/api/counter", params=query) for query in requests)
            )

    return asyncio.run(send())


def edgeproxy(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edgeproxy", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)


def objects_cli(edge: Edge, *args: str) -> subprocess.CompletedProcess[str]:
    return edgeproxy("objects", *args, "--server", edge.url, "--token", TOKEN)


def offline(edge: Edge) -> list[str]:
    return ["--offline", "--config", str(edge.config), "--state-dir", str(edge.state_dir)]


def run_audit(config: Path, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return edgeproxy("objects", "audit", "--config", str(config), "--state-dir", str(state_dir))


def admin(edge: Edge, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.request(
        method, f"{edge.url}/_edge/api{path}", headers=headers, timeout=60.0, **kwargs
    )


def stored_ids(objects_root: Path) -> dict[str, set[str]]:
    """For each shard file under the objects root ("eu/shard-00.sqlite3"), the IDs any of
    its tables holds."""
    found: dict[str, set[str]] = {}
    for path in sorted(objects_root.glob("*/shard-*.sqlite3")):
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            found[path.relative_to(objects_root).as_posix()] = {
                row[0] for table in TABLES for row in conn.execute(f"SELECT id FROM {table}")
            }
        finally:
            conn.close()
    return found


def holder(objects_root: Path, object_id: str) -> Path:
    """The one shard file holding `object_id`."""
    files = [name for name, ids in stored_ids(objects_root).items() if object_id in ids]
    assert len(files) == 1, files
    return objects_root / files[0]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """One server for the tests that only add objects of their own (idle_timeout 60 s)."""
    tmp_path = tmp_path_factory.mktemp("objects")
    started = start_edge(tmp_path, object_rules(copy_site(tmp_path)))
    yield started
    for client in started.clients:
        client.close()
    stop(started.process)


# -- IDs ---------------------------------------------------------------------------------


def test_named_ids_are_stable_and_each_name_is_its_own_object(edge: Edge) -> None:
    client = site(edge)
    first = post(client, name="apples")
    assert first["count"] == 1
    assert len(first["id"]) == 64
    assert set(first["id"]) <= set("0123456789abcdef")
    assert first["name"] == "apples"
    assert first["jurisdiction"] == ""
    assert first["scope"] == "production"
    assert post(client, name="apples") == {**first, "count": 2}
    pears = post(client, name="pears")
    assert pears["count"] == 1
    assert pears["id"] != first["id"]
    # The same name in another namespace (same class) is another object.
    other = client.get("/api/id", params={"binding": "OTHER", "op": "name", "name": "apples"})
    assert other.json()["id"] != first["id"]
    # By its string the ID reaches the same object, and the name is remembered.
    by_id = client.get("/api/counter", params={"id": first["id"]}).json()
    assert by_id == {**first, "count": 2}


def test_unique_ids_are_new_each_time_and_reachable_by_their_string(edge: Edge) -> None:
    client = site(edge)
    made = [post(client, unique="1") for _ in range(5)]
    assert len({answer["id"] for answer in made}) == 5
    assert {(answer["count"], answer["name"]) for answer in made} == {(1, None)}
    again = post(client, id=made[0]["id"])
    assert again["count"] == 2
    assert count(client, id=made[1]["id"]) == 1
    in_eu = post(client, unique="1", jurisdiction="eu")
    assert in_eu["jurisdiction"] == "eu"
    assert post(client, id=in_eu["id"], jurisdiction="eu")["count"] == 2


def test_functions_see_only_the_bindings_of_their_site(edge: Edge) -> None:
    # HIDDEN is bound for the site `other` only.
    bindings = site(edge).get("/api/bindings").json()
    assert bindings == ["ALARMS", "ASSETS", "COUNTER", "OTHER"]


def _flip(text: str, position: int) -> str:
    replacement = "0" if text[position] != "0" else "1"
    return text[:position] + replacement + text[position + 1 :]


Ids = dict[str, str]
REFUSALS = [
    pytest.param(
        lambda ids: {"op": "parse", "id": "abc"},
        ("InvalidObjectId", 400, "must be 64 lowercase hex characters, got 3"),
        id="too-short",
    ),
    pytest.param(
        lambda ids: {"op": "parse", "id": ids["default"] + "00"},
        ("InvalidObjectId", 400, "got 66"),
        id="too-long",
    ),
    pytest.param(
        lambda ids: {"op": "parse", "id": ids["default"].upper()},
        ("InvalidObjectId", 400, "(IDs are lowercase)"),
        id="uppercase",
    ),
    pytest.param(
        lambda ids: {"op": "parse", "id": ids["default"][:10] + "g" + ids["default"][11:]},
        ("InvalidObjectId", 400, "found 'g' at position 10"),
        id="not-hex",
    ),
    pytest.param(
        lambda ids: {"op": "parse", "id": "02" + ids["default"][2:]},
        ("InvalidObjectId", 400, "version 2 is not known"),
        id="unknown-version",
    ),
    pytest.param(
        lambda ids: {"op": "parse", "id": ids["default"][:6] + "07" + ids["default"][8:]},
        ("InvalidObjectId", 400, "kind 7 is not known"),
        id="unknown-kind",
    ),
    pytest.param(
        lambda ids: {"op": "parse", "id": _flip(ids["default"], 20)},
        ("ForeignObjectId", 404, "MAC does not verify"),
        id="forged-body",
    ),
    pytest.param(
        lambda ids: {"op": "parse", "id": _flip(ids["default"], 63)},
        ("ForeignObjectId", 404, "MAC does not verify"),
        id="forged-mac",
    ),
    pytest.param(
        lambda ids: {"op": "parse", "id": ids["default"][:2] + ids["eu"][2:6] + ids["default"][6:]},
        ("ForeignObjectId", 404, "MAC does not verify"),
        id="edited-into-eu",
    ),
    pytest.param(
        lambda ids: {"op": "parse", "id": "01" + "ffff" + ids["default"][6:]},
        ("ForeignObjectId", 404, "MAC does not verify"),
        id="edited-into-unknown-jurisdiction",
    ),
    pytest.param(
        lambda ids: {"op": "parse", "id": ids["other"]},
        ("ForeignObjectId", 404, "is not an ID of namespace COUNTER (production)"),
        id="string-of-another-namespace",
    ),
    pytest.param(
        lambda ids: {"op": "get", "from_binding": "OTHER", "name": "victim"},
        ("ForeignObjectId", 404, "is not an ID of namespace COUNTER (production)"),
        id="object-id-of-another-namespace",
    ),
    pytest.param(
        lambda ids: {"op": "parse", "id": ids["default"], "jurisdiction": "eu"},
        ("JurisdictionMismatch", 400, "is of jurisdiction default; this namespace view "),
        id="default-id-in-eu-view",
    ),
    pytest.param(
        lambda ids: {"op": "parse", "id": ids["us"], "jurisdiction": "eu"},
        ("JurisdictionMismatch", 400, "is of jurisdiction us; this namespace view accepts only eu"),
        id="us-id-in-eu-view",
    ),
    pytest.param(
        lambda ids: {
            "op": "get",
            "from_binding": "COUNTER",
            "name": "victim",
            "jurisdiction": "eu",
        },
        ("JurisdictionMismatch", 400, "accepts only eu IDs"),
        id="default-object-id-to-eu-view-get",
    ),
    pytest.param(
        lambda ids: {"op": "unique", "in": "us", "jurisdiction": "eu"},
        ("JurisdictionMismatch", 400, "pinned to jurisdiction eu; it cannot make us IDs"),
        id="eu-view-asked-for-us-id",
    ),
    pytest.param(
        lambda ids: {"op": "name", "name": "x", "jurisdiction": "mars"},
        ("UnknownJurisdiction", None, "'mars' is not configured (configured: default, eu, us)"),
        id="unknown-jurisdiction",
    ),
]


@pytest.fixture(scope="module")
def victim_ids(edge: Edge) -> Ids:
    """The IDs of the name "victim" in COUNTER (default, eu, us) and in OTHER."""
    client = site(edge)

    def made(**query: str) -> str:
        answer = client.get("/api/id", params={"op": "name", "name": "victim", **query}).json()
        object_id: str = answer["id"]
        return object_id

    return {
        "default": made(),
        "eu": made(jurisdiction="eu"),
        "us": made(jurisdiction="us"),
        "other": made(binding="OTHER"),
    }


@pytest.mark.parametrize(("query", "refusal"), REFUSALS)
def test_namespaces_refuse_ids_they_did_not_make(
    edge: Edge,
    victim_ids: Ids,
    query: Callable[[Ids], dict[str, str]],
    refusal: tuple[str, int | None, str],
) -> None:
    answer = site(edge).get("/api/id", params=query(victim_ids)).json()
    error, status, detail = refusal
    assert (answer.get("error"), answer.get("status")) == (error, status), answer
    assert detail in answer["detail"]


@pytest.mark.parametrize(
    ("query", "accepted"),
    [
        pytest.param(
            lambda ids: {"op": "parse", "id": ids["eu"]},
            ("eu", "victim"),
            id="eu-id-in-unrestricted-namespace",
        ),
        pytest.param(
            lambda ids: {"op": "parse", "id": ids["eu"], "jurisdiction": "eu"},
            ("eu", "victim"),
            id="eu-id-in-eu-view",
        ),
        pytest.param(
            lambda ids: {"op": "parse", "id": ids["other"], "binding": "OTHER"},
            ("", "victim"),
            id="other-id-in-other",
        ),
        pytest.param(lambda ids: {"op": "unique", "in": "us"}, ("us", None), id="unique-id-in-us"),
    ],
)
def test_namespaces_accept_their_own_ids(
    edge: Edge,
    victim_ids: Ids,
    query: Callable[[Ids], dict[str, str]],
    accepted: tuple[str, str | None],
) -> None:
    answer = site(edge).get("/api/id", params=query(victim_ids)).json()
    assert "error" not in answer, answer
    assert (answer["jurisdiction"], answer["name"]) == accepted


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        pytest.param({"id": "xyz"}, 400, "object-id-invalid", id="malformed"),
        pytest.param({"id": "0" * 64}, 400, "object-id-invalid", id="version-0"),
        pytest.param({"id": "01" + "0" * 62}, 404, "object-id-foreign", id="forged"),
        pytest.param(
            {"name": "x", "jurisdiction": "mars"}, 500, "handler-exception", id="not-a-client-error"
        ),
    ],
)
def test_object_errors_a_function_does_not_catch_reach_the_client(
    edge: Edge, query: dict[str, str], status: int, code: str
) -> None:
    response = site(edge).get("/api/counter", params=query)
    assert response.status_code == status
    assert response.headers["x-edge-error"] == code


def test_an_id_of_another_jurisdiction_reaches_the_client_as_400(
    edge: Edge, victim_ids: Ids
) -> None:
    response = site(edge).get(
        "/api/counter", params={"id": victim_ids["default"], "jurisdiction": "eu"}
    )
    assert response.status_code == 400
    assert response.headers["x-edge-error"] == "object-jurisdiction-mismatch"
    assert "accepts only eu IDs" in response.json()["detail"]


# -- stubs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args", "outcome"),
    [
        pytest.param("increment", [5], {"result": 5}, id="call-with-argument"),
        pytest.param(
            "explode", ["boom"], {"error": "ValueError", "detail": "boom"}, id="builtin-error"
        ),
        pytest.param(
            "_private", [], {"error": "RpcMethodError", "detail": "is private"}, id="private"
        ),
        pytest.param(
            "not_async",
            [],
            {"error": "RpcMethodError", "detail": "is not an async method"},
            id="not-async",
        ),
        pytest.param(
            "nope", [], {"error": "RpcMethodError", "detail": "has no method 'nope'"}, id="missing"
        ),
        pytest.param(
            "alarm", [], {"error": "RpcMethodError", "detail": "not callable by RPC"}, id="alarm"
        ),
        pytest.param(
            "increment",
            [1, 2, 3],
            {"error": "TypeError", "detail": "positional argument"},
            id="wrong-arguments",
        ),
    ],
)
def test_rpc_calls(edge: Edge, method: str, args: list[Any], outcome: dict[str, Any]) -> None:
    name = f"rpc-{method}-{len(args)}"
    answer = rpc(site(edge), name, method, *args)
    for key, expected in outcome.items():
        if key == "detail":
            assert expected in answer[key], answer
        else:
            assert answer[key] == expected, answer


def test_rpc_reaches_the_one_instance_of_the_named_object(edge: Edge) -> None:
    client = site(edge)
    identity = call(client, "who", "identity")
    assert identity["name"] == "who"
    assert identity["id"] == post(client, name="who")["id"]


def test_stub_fetch_delivers_the_request_to_the_object(edge: Edge) -> None:
    client = site(edge)
    assert client.post("/api/fetch", params={"name": "fetched"}, content=b"5").json() == {
        "count": 5,
        "via": "fetch",
    }
    read = client.get("/api/fetch", params={"name": "fetched"}).json()
    assert read == {"count": 5, "path": "/api/fetch", "via": "fetch"}
    assert count(client, name="fetched") == 5


# -- input gate and durability -------------------------------------------------------------


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("plain", id="get-then-put"),
        pytest.param("transaction", id="transaction-awaiting-inside"),
        pytest.param("blocking", id="block-concurrency-while-awaiting-inside"),
    ],
)
def test_64_concurrent_increments_of_a_new_counter_end_at_exactly_64(edge: Edge, mode: str) -> None:
    name = f"gate-{mode}"
    responses = post_concurrently(edge, [{"name": name, "mode": mode}] * 64)
    assert [response.status_code for response in responses] == [200] * 64
    assert sorted(response.json()["count"] for response in responses) == list(range(1, 65))
    client = site(edge)
    assert count(client, name=name) == 64
    # All 64 raced the first activation: still only one instance was ever built.
    assert built(client, responses[0].json()["id"]) == 1
    assert call(client, name, "snapshot") == {"count": 64, "constructions": 1}


def test_acknowledged_writes_survive_kill_9(
    edge_factory: Callable[..., Edge], tmp_path: Path
) -> None:
    rules = object_rules(copy_site(tmp_path))
    first = edge_factory(rules)
    client = site(first)
    for expected in range(1, 31):
        assert post(client, name="durable")["count"] == expected
    burst = [{"name": f"burst-{index}", "jurisdiction": "eu"} for index in range(40)]
    acknowledged = post_concurrently(first, burst)
    assert [response.json()["count"] for response in acknowledged] == [1] * 40
    # An alarm set before the kill fires after the restart.
    alarm_at = call(client, "after-restart", "schedule", 0, 2.0, binding="ALARMS")
    first.process.kill()
    first.process.wait()

    second = edge_factory(rules)
    client = site(second)
    assert count(client, name="durable") == 30
    assert [count(client, **query) for query in burst] == [1] * 40
    status = eventually(
        lambda: (s := call(client, "after-restart", "status", binding="ALARMS"))["done"] and s,
        "the alarm set before kill -9 ran",
    )
    assert status == {"attempts": [0], "done": True, "alarm": None}
    assert time.time() >= alarm_at
    assert run_audit(second.config, second.state_dir).returncode == 0


# -- jurisdictions and the audit ----------------------------------------------------------


def test_objects_are_stored_only_under_their_jurisdiction_root(edge: Edge) -> None:
    client = site(edge)
    made: dict[str, str] = {}
    for jurisdiction in ("eu", "us", ""):
        for name in ("place-1", "place-2", "place-3"):
            answer = post(client, name=name, jurisdiction=jurisdiction)
            assert answer["jurisdiction"] == jurisdiction
            made[answer["id"]] = jurisdiction or "default"
        made[post(client, unique="1", jurisdiction=jurisdiction)["id"]] = jurisdiction or "default"
    assert len(made) == 12  # a name has another ID in each jurisdiction
    root = edge.state_dir / "objects"
    placed = stored_ids(root)
    assert sorted(placed) == [
        f"{place}/shard-{index:02d}.sqlite3"
        for place in ("default", "eu", "us")
        for index in range(2)
    ]
    for object_id, jurisdiction in made.items():
        files = [name for name, ids in placed.items() if object_id in ids]
        assert len(files) == 1, (object_id, files)
        assert files[0].startswith(f"{jurisdiction}/"), (object_id, files)
    result = run_audit(edge.config, edge.state_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: 6 shard files,")
    assert "MACs verified, 0 violations" in result.stdout
    report = admin(edge, "GET", "/objects/audit").json()
    assert (report["ok"], report["shards"], report["violations"]) == (True, 6, [])


@pytest.fixture(scope="module")
def pinned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ids]:
    """A stopped server's state (rules.yaml, state/) holding "pinned" in each jurisdiction."""
    tmp_path = tmp_path_factory.mktemp("pinned")
    started = start_edge(tmp_path, object_rules(copy_site(tmp_path)))
    try:
        client = httpx.Client(
            base_url=started.url, headers={"Host": f"demo.localhost:{started.port}"}
        )
        with client:
            ids = {
                place or "default": post(client, name="pinned", jurisdiction=place)["id"]
                for place in ("", "eu", "us")
            }
    finally:
        stop(started.process)
    return tmp_path, ids


def _copy_rows(source: Path, target: Path, object_id: str, binding: str | None = None) -> None:
    """Insert `object_id`'s kv rows of `source` into `target` (under `binding` if given)."""
    conn = sqlite3.connect(source)
    try:
        rows = conn.execute(
            "SELECT binding, scope, id, key, value FROM kv WHERE id = ?", (object_id,)
        ).fetchall()
    finally:
        conn.close()
    assert rows
    conn = sqlite3.connect(target)
    try:
        with conn:
            conn.executemany(
                "INSERT OR REPLACE INTO kv (binding, scope, id, key, value) VALUES (?, ?, ?, ?, ?)",
                [(binding or row[0], *row[1:]) for row in rows],
            )
    finally:
        conn.close()


def _other_shard(path: Path) -> Path:
    return path.with_name(
        "shard-01.sqlite3" if path.name == "shard-00.sqlite3" else "shard-00.sqlite3"
    )


def _into_us(root: Path, ids: Ids) -> None:
    _copy_rows(holder(root, ids["eu"]), root / "us" / "shard-00.sqlite3", ids["eu"])


def _into_other_shard(root: Path, ids: Ids) -> None:
    source = holder(root, ids["default"])
    _copy_rows(source, _other_shard(source), ids["default"])


def _under_other_binding(root: Path, ids: Ids) -> None:
    source = holder(root, ids["eu"])
    _copy_rows(source, source, ids["eu"], binding="OTHER")


def _layout_edited(root: Path, ids: Ids) -> None:
    layout = root / "eu" / "layout.json"
    layout.write_text(json.dumps({**json.loads(layout.read_text()), "shards": 3}))


def _extra_file(root: Path, ids: Ids) -> None:
    shutil.copy(root / "us" / "shard-00.sqlite3", root / "us" / "shard-02.sqlite3")


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        pytest.param(None, None, id="untouched"),
        pytest.param(_into_us, "[foreign-jurisdiction] us: ", id="eu-row-copied-to-us"),
        pytest.param(_into_other_shard, "[misplaced] default: ", id="row-in-the-wrong-shard"),
        pytest.param(_under_other_binding, "[bad-mac] eu: ", id="row-under-another-namespace"),
        pytest.param(_layout_edited, "records 3 shards, 2 configured", id="layout-edited"),
        pytest.param(_extra_file, "[unaccounted-file] us: ", id="extra-shard-file"),
    ],
)
def test_audit_finds_rows_and_files_out_of_place(
    pinned: tuple[Path, Ids],
    tmp_path: Path,
    tamper: Callable[[Path, Ids], None] | None,
    expected: str | None,
) -> None:
    source, ids = pinned
    state_dir = tmp_path / "state"
    shutil.copytree(source / "state", state_dir)
    if tamper is not None:
        tamper(state_dir / "objects", ids)
    result = run_audit(source / "rules.yaml", state_dir)
    if expected is None:
        assert result.returncode == 0, result.stdout
        assert result.stdout.startswith("ok: 6 shard files, 3 objects, MACs verified")
    else:
        assert result.returncode == 1, result.stdout
        assert result.stdout.startswith("VIOLATIONS: ")
        assert expected in result.stdout


def test_a_shard_file_moved_to_another_jurisdiction_stops_the_server(
    pinned: tuple[Path, Ids], tmp_path: Path
) -> None:
    source, _ = pinned
    state_dir = tmp_path / "state"
    shutil.copytree(source / "state", state_dir)
    objects = state_dir / "objects"
    shutil.copy(objects / "eu" / "shard-00.sqlite3", objects / "us" / "shard-00.sqlite3")
    config = tmp_path / "rules.yaml"
    config.write_text((source / "rules.yaml").read_text())
    result = edgeproxy(
        "serve", "--config", str(config), "--port", str(free_port()),
        "--state-dir", str(state_dir),
    )  # fmt: skip
    assert result.returncode != 0
    assert "was created as shard 0 of jurisdiction eu, not as shard 0 of us" in result.stderr


# -- alarms -------------------------------------------------------------------------------


def alarm_status(client: httpx.Client, name: str) -> dict[str, Any]:
    status: dict[str, Any] = call(client, name, "status", binding="ALARMS")
    return status


def dead_letters(edge: Edge, object_id: str) -> list[dict[str, Any]]:
    response = admin(edge, "GET", "/objects/dead-letters", params={"namespace": "ALARMS"})
    assert response.status_code == 200
    return [letter for letter in response.json()["dead_letters"] if letter["id"] == object_id]


@pytest.mark.parametrize(
    "failures",
    [
        pytest.param(0, id="succeeds-at-once"),
        pytest.param(1, id="fails-once"),
        pytest.param(MAX_RETRIES, id="succeeds-on-the-last-retry"),
    ],
)
def test_a_failing_alarm_is_retried_until_it_succeeds(edge: Edge, failures: int) -> None:
    client = site(edge)
    name = f"retried-{failures}"
    object_id = rpc(client, name, "schedule", failures, 0.05, binding="ALARMS")["id"]
    status = eventually(lambda: alarm_status(client, name)["done"], "the alarm succeeded")
    assert status is True
    assert alarm_status(client, name) == {
        "attempts": list(range(failures + 1)),  # info.retry_count of each attempt
        "done": True,
        "alarm": None,
    }
    assert dead_letters(edge, object_id) == []


def test_an_alarm_that_keeps_failing_is_dead_lettered_and_can_be_replayed(edge: Edge) -> None:
    client = site(edge)
    object_id = rpc(client, "doomed", "schedule", 100, 0.05, binding="ALARMS")["id"]
    letters = eventually(lambda: dead_letters(edge, object_id), "the alarm was dead-lettered")
    assert len(letters) == 1
    letter = letters[0]
    assert (letter["binding"], letter["scope"], letter["jurisdiction"]) == (
        "ALARMS",
        "production",
        "",
    )
    assert letter["retries"] == MAX_RETRIES
    assert letter["error"] == f"RuntimeError: planned failure {MAX_RETRIES + 1}"
    attempts = list(range(MAX_RETRIES + 1))
    assert alarm_status(client, "doomed") == {"attempts": attempts, "done": False, "alarm": None}

    for args in (["--namespace", "ALARMS"], ["--namespace", "ALARMS", *offline(edge)]):
        listing = objects_cli(edge, "dead-letters", *args)
        assert listing.returncode == 0, listing.stderr
        row = next(line for line in listing.stdout.splitlines() if line.startswith(object_id))
        assert "ALARMS@production" in row
        assert f"planned failure {MAX_RETRIES + 1}" in row

    still_failing = objects_cli(edge, "dead-letters", "--replay", object_id)
    assert still_failing.returncode == 1
    assert f"planned failure {MAX_RETRIES + 2}" in still_failing.stderr
    assert len(dead_letters(edge, object_id)) == 1

    call(client, "doomed", "heal", binding="ALARMS")
    replayed = objects_cli(edge, "dead-letters", "--replay", object_id)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == "replayed 1 alarm(s)"
    assert dead_letters(edge, object_id) == []
    assert alarm_status(client, "doomed") == {
        "attempts": [*attempts, MAX_RETRIES, MAX_RETRIES],
        "done": True,
        "alarm": None,
    }
    again = admin(edge, "POST", f"/objects/{object_id}/replay")
    assert again.json() == {"replayed": 0}


def test_alarm_run_now(edge: Edge) -> None:
    client = site(edge)
    object_id = rpc(client, "early", "schedule", 0, 3600.0, binding="ALARMS")["id"]
    assert alarm_status(client, "early")["alarm"] is not None
    ran = objects_cli(edge, "alarm", object_id, "--run-now")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "alarm ran"
    assert alarm_status(client, "early") == {"attempts": [0], "done": True, "alarm": None}

    failing_id = rpc(client, "early-failing", "schedule", 100, 3600.0, binding="ALARMS")["id"]
    failed = objects_cli(edge, "alarm", failing_id, "--run-now")
    assert failed.returncode == 1
    assert "RuntimeError: planned failure 1" in failed.stderr
    assert alarm_status(client, "early-failing")["alarm"] is not None  # still set

    not_asked = objects_cli(edge, "alarm", object_id)
    assert not_asked.returncode == 2
    assert "--run-now" in not_asked.stderr
    counter_id = post(client, name="no-alarm")["id"]
    no_handler = objects_cli(edge, "alarm", counter_id, "--run-now")
    assert no_handler.returncode == 1
    assert "has no alarm() handler" in no_handler.stderr


# -- eviction -----------------------------------------------------------------------------


def test_an_idle_object_leaves_memory_and_is_rebuilt_from_storage(
    edge_factory: Callable[..., Edge], tmp_path: Path
) -> None:
    edge = edge_factory(object_rules(copy_site(tmp_path), idle="0.5s"))
    client = site(edge)
    object_id = ""
    for expected in (1, 2, 3):
        answer = post(client, name="idle")
        assert answer["count"] == expected
        object_id = answer["id"]

    def gone() -> bool:
        live: bool = call(client, "probe", "live", object_id)
        return not live

    eventually(gone, "the idle counter left memory")
    before = built(client, object_id)
    assert before >= 1
    snapshot = call(client, "idle", "snapshot")
    assert snapshot == {"count": 3, "constructions": before + 1}
    assert built(client, object_id) == before + 1
    assert post(client, name="idle")["count"] == 4


def test_evict_drops_the_live_instance_and_the_next_event_rebuilds_it(edge: Edge) -> None:
    client = site(edge)
    object_id = post(client, name="evictee")["id"]
    post(client, name="evictee")
    evicted = objects_cli(edge, "evict", object_id)
    assert evicted.returncode == 0, evicted.stderr
    assert evicted.stdout.strip() == "evicted"
    again = objects_cli(edge, "evict", object_id)
    assert again.stdout.strip() == "not in memory (nothing to evict)"
    assert built(client, object_id) == 1
    assert call(client, "evictee", "snapshot") == {"count": 2, "constructions": 2}
    assert built(client, object_id) == 2
    assert admin(edge, "POST", f"/objects/{object_id}/evict").json() == {"evicted": True}
    assert call(client, "evictee", "snapshot") == {"count": 2, "constructions": 3}


def test_evict_waits_for_the_event_the_object_is_running(edge: Edge) -> None:
    client = site(edge)
    object_id = post(client, name="busy")["id"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(rpc, site(edge), "busy", "increment_slowly", 1.0)
        eventually(lambda: call(client, "busy", "phase") == "sleeping", "the slow event started")
        evicted = admin(edge, "POST", f"/objects/{object_id}/evict")
        assert evicted.json() == {"evicted": True}
        # The running event kept its instance to the end, and no second one was built.
        assert slow.result(timeout=60) == {"id": object_id, "result": 2}
    assert built(client, object_id) == 1
    assert call(client, "busy", "snapshot") == {"count": 2, "constructions": 2}


# -- previews -----------------------------------------------------------------------------


def deploy(edge: Edge, source: Path, *args: str) -> str:
    """Deploy `source` to the demo site; the new deployment's ID."""
    result = edgeproxy(
        "deploy", str(source), "--site", "demo", *args, "--server", edge.url, "--token", TOKEN
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[1]


def test_a_preview_has_its_own_objects(edge: Edge, tmp_path: Path) -> None:
    production = site(edge)
    assert post(production, name="shared")["count"] == 1
    prod = post(production, name="shared")
    feature_id = deploy(edge, copy_site(tmp_path), "--branch", "feat")
    preview = site(edge, "feat.demo.localhost")
    first = post(preview, name="shared")
    assert (first["count"], first["scope"], first["name"]) == (1, "preview", "shared")
    assert first["id"] != prod["id"]
    # The deployment's own URL is the same preview build: the same object.
    by_deployment = site(edge, f"{feature_id}.demo.localhost")
    assert post(by_deployment, name="shared") == {**first, "count": 2}
    assert count(production, name="shared") == 2

    # An ID works only in the scope that made it.
    crossed = preview.get("/api/counter", params={"id": prod["id"]})
    assert (crossed.status_code, crossed.headers["x-edge-error"]) == (404, "object-id-foreign")
    assert "namespace COUNTER (preview)" in crossed.json()["detail"]
    crossed = production.get("/api/counter", params={"id": first["id"]})
    assert (crossed.status_code, crossed.headers["x-edge-error"]) == (404, "object-id-foreign")

    stored = admin(edge, "GET", f"/objects/{first['id']}").json()
    assert (stored["scope"], stored["values"]["count"]) == ("preview", 2)
    listing = objects_cli(edge, "list", "--namespace", "COUNTER")
    rows = [line.split()[:4] for line in listing.stdout.splitlines()]
    assert [first["id"], "shared", "COUNTER@preview", "default"] in rows
    assert [prod["id"], "shared", "COUNTER@production", "default"] in rows

    # A preview's alarms run in the preview scope too.
    alarm = rpc(preview, "shared-alarm", "schedule", 0, 0.05, binding="ALARMS")
    eventually(lambda: alarm_status(preview, "shared-alarm")["done"], "the preview alarm ran")
    assert alarm_status(production, "shared-alarm")["attempts"] == []
    assert admin(edge, "GET", f"/objects/{alarm['id']}").json()["scope"] == "preview"


def test_a_production_deployment_at_its_own_url_reaches_production_objects(
    edge: Edge, tmp_path: Path
) -> None:
    production = site(edge)
    before = post(production, name="everywhere")
    deployment_id = deploy(edge, copy_site(tmp_path))
    at_its_url = post(site(edge, f"{deployment_id}.demo.localhost"), name="everywhere")
    assert at_its_url == {**before, "count": 2}


# -- operating: CLI and admin API ---------------------------------------------------------


def test_objects_list_and_get(edge: Edge) -> None:
    client = site(edge)
    post(client, name="listed", jurisdiction="eu")
    object_id = post(client, name="listed", jurisdiction="eu")["id"]
    for extra in ([], offline(edge)):
        listing = objects_cli(edge, "list", "--jurisdiction", "eu", *extra)
        assert listing.returncode == 0, listing.stderr
        lines = listing.stdout.splitlines()
        assert lines[0].split() == [
            "ID", "NAME", "NAMESPACE", "JURISDICTION", "KEYS", "BYTES", "SHARD",
        ]  # fmt: skip
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        assert rows[object_id][1:5] == ["listed", "COUNTER@production", "eu", "2"]
        assert {row[3] for row in rows.values()} == {"eu"}
        detail = objects_cli(edge, "get", object_id, *extra)
        assert detail.returncode == 0, detail.stderr
        assert "jurisdiction  eu\n" in detail.stdout
        assert "  count = 2\n" in detail.stdout
        assert "  constructions = 1\n" in detail.stdout
        assert f"{edge.state_dir / 'objects' / 'eu'}/shard-0" in detail.stdout
    alarms_only = objects_cli(edge, "list", "--namespace", "ALARMS")
    assert object_id not in alarms_only.stdout

    record = admin(edge, "GET", f"/objects/{object_id}").json()
    assert record["values"] == {"constructions": 1, "count": 2}
    assert (record["name"], record["jurisdiction"], record["verified"]) == ("listed", "eu", True)
    listed = admin(edge, "GET", "/objects", params={"jurisdiction": "eu", "namespace": "COUNTER"})
    assert object_id in [entry["id"] for entry in listed.json()["objects"]]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("GET", "/objects/xyz", 400, "object-id-invalid", id="get-malformed"),
        pytest.param("POST", "/objects/xyz/evict", 400, "object-id-invalid", id="evict-malformed"),
        pytest.param("GET", "/objects/01" + "0" * 62, 404, "object-not-found", id="get-unknown"),
        pytest.param(
            "POST", "/objects/01" + "0" * 62 + "/alarm", 404, "object-not-found", id="alarm-unknown"
        ),
        pytest.param(
            "GET", "/objects?jurisdiction=mars", 400, "refused", id="unknown-jurisdiction"
        ),
    ],
)
def test_admin_api_refusals(edge: Edge, method: str, path: str, status: int, code: str) -> None:
    response = admin(edge, method, path)
    assert response.status_code == status
    assert response.json()["error"] == code


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong-token"),
        pytest.param({"Authorization": TOKEN}, id="not-bearer"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/objects", id="list"),
        pytest.param("GET", "/objects/audit", id="audit"),
        pytest.param("GET", "/objects/dead-letters", id="dead-letters"),
        pytest.param("GET", "/objects/01" + "0" * 62, id="get"),
        pytest.param("POST", "/objects/01" + "0" * 62 + "/evict", id="evict"),
        pytest.param("POST", "/objects/01" + "0" * 62 + "/alarm", id="alarm"),
        pytest.param("POST", "/objects/01" + "0" * 62 + "/replay", id="replay"),
    ],
)
def test_admin_api_needs_the_token(
    edge: Edge, method: str, path: str, headers: dict[str, str]
) -> None:
    response = httpx.request(method, f"{edge.url}/_edge/api{path}", headers=headers)
    assert response.status_code == 401


def test_objects_cli_without_the_token_is_refused(edge: Edge) -> None:
    result = edgeproxy("objects", "list", "--server", edge.url, "--token", "wrong")
    assert result.returncode == 1
    assert "401" in result.stderr


def test_serve_refuses_several_workers_with_objects(tmp_path: Path) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text(object_rules(copy_site(tmp_path)))
    result = edgeproxy(
        "serve", "--config", str(config), "--port", str(free_port()),
        "--state-dir", str(tmp_path / "state"), "--workers", "2",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--workers 2 with durable objects configured" in result.stderr
    assert not (tmp_path / "state" / "objects").exists()
