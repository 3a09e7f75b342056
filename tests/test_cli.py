"""The `edgeproxy` command line, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def edgeproxy(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeproxy", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_accepts_the_shipped_rules() -> None:
    result = edgeproxy("check", "rules.yaml")
    assert result.returncode == 0, result.stderr
    assert "rules.yaml: OK" in result.stdout
    assert "5 route(s)" in result.stdout


def test_check_lists_every_error_with_line_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        "origins:\n"
        "  hotels: {targets: ['http://127.0.0.1:1']}\n"
        "routes:\n"
        "  - match: {path: /a}\n"
        "    proxy: hotles\n"
        "  - match: {path: /b}\n"
        "    redirect: {to: /c, status: 399}\n"
        "  - match: {path: /d, hots: x}\n"
        "    respond: {}\n"
    )
    result = edgeproxy("check", str(bad))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].endswith("3 errors")
    assert (
        "rules.yaml:5: routes[0].proxy: origin 'hotles' is not defined (known: hotels)"
        in result.stderr
    )
    assert "did you mean 'hotels'?" in result.stderr
    assert "rules.yaml:7: routes[1].redirect.status:" in result.stderr
    assert (
        "rules.yaml:8: routes[2].match.hots: unknown key 'hots'; did you mean 'host'?"
        in result.stderr
    )


def test_check_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = edgeproxy("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "cannot read the file: No such file or directory" in result.stderr


def test_serve_refuses_an_invalid_config_before_listening(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("routes:\n  - match: {path: /x}\n    proxy: missing\n")
    result = edgeproxy("serve", "--config", str(bad), "--port", "1")
    assert result.returncode == 1
    assert "origin 'missing' is not defined" in result.stderr


def test_check_imports_handlers_and_object_classes(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("async def check(request, env, ctx):\n    return 1 +\n")
    (tmp_path / "obj.py").write_text("class Counter:\n    pass\n")
    config = tmp_path / "rules.yaml"
    config.write_text(
        "routes:\n  - respond: {}\n    handler: bad.py:check\n"
        "objects:\n  namespaces:\n    COUNTER: obj.py:Counter\n"
    )
    result = edgeproxy("check", str(config))
    assert result.returncode == 1
    assert "routes[0].handler: bad.py: could not be loaded" in result.stderr
    assert 'bad.py", line 2' in result.stderr
    assert "SyntaxError" in result.stderr
    assert "objects.namespaces.COUNTER.class: obj.py: Counter must be a class subclassing" in (
        result.stderr
    )


def test_objects_offline_refusals_are_messages_not_tracebacks(tmp_path: Path) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text("objects:\n  jurisdictions:\n    eu: {}\n")
    (tmp_path / "state").mkdir()
    listing = edgeproxy(
        "objects", "list", "--offline", "--config", str(config),
        "--state-dir", str(tmp_path / "state"), "--jurisdiction", "mars",
    )  # fmt: skip
    assert listing.returncode == 1
    assert "jurisdiction 'mars' is not configured" in listing.stderr
    assert "Traceback" not in listing.stderr
    audit = edgeproxy(
        "objects", "audit", "--config", str(config), "--state-dir", str(tmp_path / "typo")
    )
    assert audit.returncode == 1
    assert "no state directory at" in audit.stderr


def test_serve_refuses_several_workers_with_durable_objects(tmp_path: Path) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text("objects:\n  namespaces:\n    COUNTER: counter.py:Counter\n")
    result = edgeproxy("serve", "--config", str(config), "--workers", "2")
    assert result.returncode == 2
    assert "--workers 2 with durable objects configured" in result.stderr
    assert "exactly one live instance" in result.stderr


def test_schema_matches_the_committed_file() -> None:
    result = edgeproxy("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "routes" in schema["properties"]
    committed = json.loads((ROOT / "rules.schema.json").read_text())
    assert schema == committed, (
        "rules.schema.json is stale: run `edgeproxy schema > rules.schema.json`"
    )


def test_shipped_rules_point_editors_at_the_schema() -> None:
    first = (ROOT / "rules.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./rules.schema.json"


def test_routes_prints_the_table() -> None:
    result = edgeproxy("routes")
    assert result.returncode == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ROUTE", "HOST", "PATH", "METHODS", "ACTION"]
    assert any(row.split()[:3] == ["edge-health", "*", "/edge/health"] for row in rows)


@pytest.mark.parametrize(
    ("url", "winner"),
    [
        pytest.param("http://localhost/edge/health", "'edge-health'", id="longest-prefix-wins"),
        pytest.param("http://localhost/edgex", "'home'", id="whole-segments-only"),
        pytest.param("http://localhost/old-docs", "'old-docs'", id="exact-prefix"),
    ],
)
def test_routes_explain_names_the_winner(url: str, winner: str) -> None:
    result = edgeproxy("routes", "--explain", url)
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("winner:"))
    assert winner in line
    assert "less specific than winner" in result.stdout or "mismatch" in result.stdout


def test_routes_explain_refused_path() -> None:
    result = edgeproxy("routes", "--explain", "http://localhost/a%2fb")
    assert result.returncode == 1
    assert "400" in result.stdout
