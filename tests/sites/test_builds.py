"""The build runner: commands, environments, publishing, and the pre-receive hook's decisions."""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import pytest

from edgeproxy.config.models import Site, SiteEnv
from edgeproxy.exceptions import BuildFailed
from edgeproxy.sites.builds import (
    ZERO_SHA,
    Builder,
    build_env,
    run_command,
    run_hook,
    site_urls,
)
from edgeproxy.sites.store import BlobStore, SiteStore

BUILD = "mkdir -p out && cp page.html out/index.html && echo built $EDGE_BRANCH"


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    result = subprocess.run(
        [*command, *args], cwd=repo, capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str = "change") -> str:
    for name, content in files.items():
        (repo / name).write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    return root


def write_config(tmp_path: Path, command: str = BUILD, timeout: str = "5s") -> Path:
    config = tmp_path / "rules.yaml"
    config.write_text(
        f"""
sites:
  demo:
    build: {{command: "{command}", output: out, timeout: {timeout}}}
    env: {{production: {{STAGE: prod}}, preview: {{STAGE: preview}}}}
"""
    )
    return config


def builder(tmp_path: Path, command: str = BUILD, timeout: str = "5s") -> Builder:
    config = write_config(tmp_path, command, timeout)
    return Builder(config, tmp_path / "state", "demo", io.BytesIO(), port="8080")


def git_env(repo: Path) -> dict[str, str]:
    return {**os.environ, "GIT_DIR": str(repo / ".git")}


def store(tmp_path: Path) -> SiteStore:
    state = tmp_path / "state"
    return SiteStore(state, "demo", BlobStore(state / "blobs"))


@pytest.mark.parametrize(
    ("command", "status", "lines"),
    [
        pytest.param("echo one; echo two", 0, [b"one\n", b"two\n"], id="success"),
        pytest.param("echo out; echo err >&2; exit 7", 7, [b"out\n", b"err\n"], id="exit-status"),
    ],
)
def test_run_command_streams_lines_and_returns_the_status(
    tmp_path: Path, command: str, status: int, lines: list[bytes]
) -> None:
    seen: list[bytes] = []
    assert run_command(command, tmp_path, {"PATH": os.environ["PATH"]}, 10, seen.append) == status
    assert seen == lines


def test_run_command_kills_the_whole_group_on_timeout(tmp_path: Path) -> None:
    seen: list[bytes] = []
    command = "(sleep 1; echo late > late.txt) & echo started; sleep 30"
    started = time.monotonic()
    code = run_command(command, tmp_path, {"PATH": os.environ["PATH"]}, 0.5, seen.append)
    assert code is None
    assert seen == [b"started\n"]
    assert time.monotonic() - started < 10
    time.sleep(1.5)
    assert not (tmp_path / "late.txt").exists()


@pytest.mark.parametrize(
    ("branch", "stage"),
    [pytest.param("main", "prod", id="production"), pytest.param("feat", "preview", id="preview")],
)
def test_build_env_is_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, branch: str, stage: str
) -> None:
    monkeypatch.setenv("EDGEPROXY_ADMIN_TOKEN", "do-not-leak")
    site = Site(env=SiteEnv(production={"STAGE": "prod"}, preview={"STAGE": "preview"}))
    env = build_env(site, branch, "abc", "http://x/", tmp_path)
    assert "EDGEPROXY_ADMIN_TOKEN" not in env
    assert env["STAGE"] == stage
    assert (env["CI"], env["EDGE_BRANCH"], env["EDGE_COMMIT"]) == ("true", branch, "abc")
    assert env["HOME"] == str(tmp_path)
    assert set(env) == {
        "PATH", "HOME", "LANG", "STAGE", "CI", "EDGE_BRANCH", "EDGE_COMMIT", "EDGE_DEPLOY_URL",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("branch", "port", "expected"),
    [
        pytest.param(
            "main",
            "8080",
            {
                "deployment": "http://abcd1234.demo.localhost:8080/",
                "branch": "http://main.demo.localhost:8080/",
                "production": "http://demo.localhost:8080/",
                "production_host": "http://www.demo.test/",
            },
            id="production-branch",
        ),
        pytest.param(
            "Feature/Login",
            "",
            {
                "deployment": "http://abcd1234.demo.localhost/",
                "branch": "http://feature-login.demo.localhost/",
            },
            id="preview-default-port",
        ),
    ],
)
def test_site_urls(branch: str, port: str, expected: dict[str, str]) -> None:
    site = Site(hosts=["www.demo.test"])
    assert site_urls("demo", site, branch, "abcd1234", "http", port) == expected


def test_build_publishes_the_output_and_keeps_the_log(tmp_path: Path, repo: Path) -> None:
    sha = commit(repo, {"page.html": "<h1>v1</h1>", "secret.txt": "not published"}, "first")
    runner = builder(tmp_path)
    deployment = runner.build("main", sha, git_env(repo))
    assert (deployment.commit, deployment.message, deployment.origin) == (sha, "first", "git")
    site = store(tmp_path)
    assert site.aliases() == {"production": deployment.id, "main": deployment.id}
    published = site.deployment_dir(deployment.id)
    assert sorted(p.name for p in published.iterdir()) == ["index.html"]
    log = tmp_path / "state" / "sites" / "demo" / "builds" / f"{deployment.id}.log"
    assert "built main" in log.read_text()
    assert b"built main" in runner.out.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("command", "timeout", "message", "tail"),
    [
        pytest.param("echo first; echo last; exit 4", "5s", "exit status 4", "last", id="fails"),
        pytest.param("echo waiting; sleep 30", "1s", "timed out after 1s", "waiting", id="slow"),
        pytest.param("true", "5s", "'out' is not a directory", None, id="no-output"),
        pytest.param(
            "mkdir out && ln -s /etc/passwd out/x", "5s", "symlink out of", None, id="symlink"
        ),
    ],
)
def test_failed_build_publishes_nothing(
    tmp_path: Path, repo: Path, command: str, timeout: str, message: str, tail: str | None
) -> None:
    sha = commit(repo, {"page.html": "<h1>v1</h1>"})
    runner = builder(tmp_path, command, timeout)
    with pytest.raises(BuildFailed, match=message) as failure:
        runner.build("feature", sha, git_env(repo))
    if tail is not None:
        assert failure.value.tail[-1] == tail
    assert store(tmp_path).aliases() == {}
    assert store(tmp_path).deployments() == []
    log = tmp_path / "state" / "sites" / "demo" / "builds" / f"{sha}.log"
    assert message.split("'")[0] in log.read_text()


def hook(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str]
) -> tuple[int, str]:
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))
    monkeypatch.setenv("EDGEPROXY_PUBLIC_PORT", "9999")
    out = io.BytesIO()
    code = run_hook(write_config(tmp_path), tmp_path / "state", "demo", lines, out)
    return code, out.getvalue().decode()


def test_hook_builds_each_branch_and_prints_urls(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = commit(repo, {"page.html": "<h1>v1</h1>"})
    lines = [f"{ZERO_SHA} {sha} refs/heads/feature/x\n", f"{ZERO_SHA} {sha} refs/tags/v1\n"]
    code, output = hook(tmp_path, repo, monkeypatch, lines)
    assert code == 0, output
    assert "http://feature-x.demo.localhost:9999/" in output
    assert set(store(tmp_path).aliases()) == {"feature-x"}


def test_hook_refuses_when_the_branch_moved_meanwhile(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = commit(repo, {"page.html": "<h1>v1</h1>"})
    code, output = hook(tmp_path, repo, monkeypatch, [f"{ZERO_SHA} {sha} refs/heads/main\n"])
    assert code == 1
    assert "main moved while this push waited" in output
    assert store(tmp_path).aliases() == {}


def test_hook_deletes_branch_aliases_but_never_production(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = commit(repo, {"page.html": "<h1>v1</h1>"})
    git(repo, "branch", "temp")
    runner = builder(tmp_path)
    runner.build("main", sha, git_env(repo))
    runner.build("temp", sha, git_env(repo))
    assert set(store(tmp_path).aliases()) == {"production", "main", "temp"}
    code, output = hook(tmp_path, repo, monkeypatch, [f"{sha} {ZERO_SHA} refs/heads/main\n"])
    assert code == 1
    assert "production branch main cannot be deleted" in output
    code, output = hook(tmp_path, repo, monkeypatch, [f"{sha} {ZERO_SHA} refs/heads/temp\n"])
    assert code == 0, output
    assert set(store(tmp_path).aliases()) == {"production", "main"}


def test_hook_rejects_a_site_that_is_not_configured(tmp_path: Path) -> None:
    out = io.BytesIO()
    code = run_hook(write_config(tmp_path), tmp_path / "state", "other", [], out)
    assert code == 1
    assert b"no longer configured" in out.getvalue()
