"""End to end: `git push` to a running gateway builds and deploys; the deploy hook too.

Real `git` against `edgeproxy serve` on loopback; the deploy hook fetches from a local path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
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

TOKEN = "git-admin-token"
SECRET = "hook-secret"
BUILD = """set -e
echo "building $EDGE_BRANCH"
mkdir -p out
cp page.html out/index.html
echo "$STAGE $CI $EDGE_BRANCH $EDGE_COMMIT $EDGE_DEPLOY_URL" > out/env.txt
echo "built ok"
"""


def rules(repo_url: Path, build: str = "sh build.sh", output: str = "out") -> str:
    return f"""
admin: {{token: {TOKEN}}}
sites:
  demo:
    build: {{command: "{build}", output: {output}, timeout: 3s}}
    env: {{production: {{STAGE: prod}}, preview: {{STAGE: preview}}}}
    repo_url: {repo_url}
    webhook_secret: {SECRET}
routes:
  - match: {{path: /}}
    respond: {{body: "not a site"}}
"""


class Repo:
    """A working repository with a stock git client configured for the tests."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        home.mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(home),
        }
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q")

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [
            "git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main",
            "-c", "credential.helper=", *args,
        ]  # fmt: skip
        result = subprocess.run(
            command, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=60
        )
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    def commit(self, files: dict[str, str], message: str, branch: str = "main") -> str:
        """Commit `files` on `branch` (created from the current commit when new)."""
        if self.git("rev-parse", "--verify", "-q", "HEAD", check=False).returncode != 0:
            self.git("symbolic-ref", "HEAD", f"refs/heads/{branch}")
        elif self.git("rev-parse", "--verify", "-q", branch, check=False).returncode == 0:
            self.git("checkout", "-q", branch)
        else:
            self.git("checkout", "-q", "-b", branch)
        for name, content in files.items():
            (self.root / name).parent.mkdir(parents=True, exist_ok=True)
            (self.root / name).write_text(content)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").stdout.strip()

    def push(self, url: str, *refspecs: str) -> subprocess.CompletedProcess[str]:
        return self.git("push", url, *refspecs, check=False)


def remote(edge: Edge, token: str | None = TOKEN, site: str = "demo") -> str:
    auth = f"x:{token}@" if token is not None else ""
    return f"http://{auth}127.0.0.1:{edge.port}/_edge/git/{site}.git"


def page(title: str) -> dict[str, str]:
    return {"build.sh": BUILD, "page.html": f"<h1>{title}</h1>"}


def aliases(edge: Edge) -> dict[str, str]:
    response = edge.client().get("/_edge/api/sites", headers={"Authorization": f"Bearer {TOKEN}"})
    result: dict[str, str] = response.json()["demo"]["aliases"]
    return result


def remote_ref(edge: Edge, ref: str) -> str | None:
    result = subprocess.run(
        ["git", "--git-dir", str(edge.state_dir / "git" / "demo.git"), "rev-parse", "-q",
         "--verify", ref],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else None


def served(
    edge: Edge, host: str, path: str = "/", expected: str | None = None, status: int = 200
) -> httpx.Response:
    """GET from `host`; waits (bounded) for `expected`, as aliases are re-read every 0.5 s."""
    client = edge.client()
    deadline = time.monotonic() + 5
    while True:
        response = client.get(path, headers={"Host": f"{host}:{edge.port}"})
        wanted = expected is None or response.text == expected
        if (wanted and response.status_code == status) or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "work", tmp_path / "home")


@pytest.fixture
def edge(repo: Repo, edge_factory: Callable[..., Edge]) -> Edge:
    return edge_factory(rules(repo.root))


def test_push_main_deploys_production_and_prints_the_urls(edge: Edge, repo: Repo) -> None:
    sha = repo.commit(page("v1"), "first version")
    pushed = repo.push(remote(edge), "main")
    assert pushed.returncode == 0, pushed.stderr
    output = pushed.stderr
    assert "remote: building main" in output
    assert "remote: built ok" in output
    deploy_id = aliases(edge)["production"]
    assert f"http://{deploy_id[:8]}.demo.localhost:{edge.port}/" in output
    assert f"http://main.demo.localhost:{edge.port}/" in output
    assert f"http://demo.localhost:{edge.port}/" in output
    assert served(edge, "demo.localhost", expected="<h1>v1</h1>").text == "<h1>v1</h1>"
    env = served(edge, "demo.localhost", "/env.txt").text.split()
    assert env == ["prod", "true", "main", sha, f"http://main.demo.localhost:{edge.port}/"]
    assert remote_ref(edge, "refs/heads/main") == sha

    api = edge.client(headers={"Authorization": f"Bearer {TOKEN}"})
    meta = api.get(f"/_edge/api/sites/demo/deploys/{deploy_id[:8]}").json()
    assert (meta["origin"], meta["commit"], meta["message"]) == ("git", sha, "first version")
    log = api.get(f"/_edge/api/sites/demo/deploys/{deploy_id}/log")
    assert "built ok" in log.text
    cli = subprocess.run(
        [sys.executable, "-m", "edgeproxy", "logs", deploy_id[:8], "--site", "demo",
         "--server", edge.url, "--token", TOKEN],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "building main" in cli.stdout


def test_branch_push_previews_while_production_stays(edge: Edge, repo: Repo) -> None:
    assert repo.push(remote(edge), "main").returncode == 1  # nothing committed yet
    repo.commit(page("prod"), "prod")
    assert repo.push(remote(edge), "main").returncode == 0
    repo.commit(page("login v1"), "login", branch="feature/login")
    first = repo.push(remote(edge), "feature/login")
    assert first.returncode == 0, first.stderr
    preview = served(edge, "feature-login.demo.localhost", expected="<h1>login v1</h1>")
    assert preview.text == "<h1>login v1</h1>"
    assert served(edge, "feature-login.demo.localhost", "/env.txt").text.startswith("preview ")
    assert served(edge, "demo.localhost").text == "<h1>prod</h1>"
    first_id = aliases(edge)["feature-login"]

    repo.commit(page("login v2"), "login again", branch="feature/login")
    second = repo.push(remote(edge), "feature/login")
    assert second.returncode == 0, second.stderr
    moved = served(edge, "feature-login.demo.localhost", expected="<h1>login v2</h1>")
    assert moved.text == "<h1>login v2</h1>"
    assert aliases(edge)["feature-login"] != first_id
    old = served(edge, f"{first_id[:8]}.demo.localhost")
    assert old.text == "<h1>login v1</h1>"
    assert served(edge, "demo.localhost").text == "<h1>prod</h1>"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        pytest.param(
            "echo step one; echo 'error: the last words'; exit 3",
            ["error: the last words", "exit status 3"],
            id="failing-build",
        ),
        pytest.param(
            "echo 'about to hang'; sleep 30",
            ["about to hang", "timed out after 3s"],
            id="timed-out-build",
        ),
        pytest.param(
            "mkdir -p out; ln -s /etc/hostname out/leak.txt",
            ["symlink out of the published tree"],
            id="symlink-out-of-tree",
        ),
    ],
)
def test_failed_build_rejects_the_push(
    edge: Edge, repo: Repo, script: str, expected: list[str]
) -> None:
    good = repo.commit(page("good"), "good")
    assert repo.push(remote(edge), "main").returncode == 0
    before = aliases(edge)
    bad = repo.commit({"build.sh": script}, "bad")
    started = time.monotonic()
    pushed = repo.push(remote(edge), "main")
    assert pushed.returncode != 0
    for text in expected:
        assert text in pushed.stderr
    assert "pre-receive hook declined" in pushed.stderr
    assert time.monotonic() - started < 20  # the timeout killed the sleep
    assert aliases(edge) == before
    assert remote_ref(edge, "refs/heads/main") == good
    assert bad != good
    assert served(edge, "demo.localhost").text == "<h1>good</h1>"


@pytest.mark.parametrize(
    "token", [pytest.param("wrong", id="wrong-token"), pytest.param(None, id="no-token")]
)
def test_push_without_the_token_is_refused(edge: Edge, repo: Repo, token: str | None) -> None:
    repo.commit(page("sneaky"), "sneaky")
    pushed = repo.push(remote(edge, token), "main")
    assert pushed.returncode != 0
    assert remote_ref(edge, "refs/heads/main") is None
    assert aliases(edge) == {}
    auth = ("x", token) if token is not None else None
    response = edge.client().get(
        "/_edge/git/demo.git/info/refs?service=git-receive-pack", auth=auth
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="edgeproxy git"'


def test_git_is_off_without_an_admin_token(repo: Repo, edge_factory: Callable[..., Edge]) -> None:
    edge = edge_factory(rules(repo.root).replace(f"admin: {{token: {TOKEN}}}", ""))
    response = edge.client().get(
        "/_edge/git/demo.git/info/refs?service=git-upload-pack", auth=("x", "anything")
    )
    assert response.status_code == 401
    assert "git access is off" in response.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/_edge/git/nope.git/info/refs", 404, id="unknown-site"),
        pytest.param("/_edge/git/demo.git/config", 404, id="repo-config"),
        pytest.param("/_edge/git/demo.git/hooks/pre-receive", 404, id="hook"),
        pytest.param("/_edge/git/demo.git/../demo.git/info/refs", 404, id="dot-dot"),
        pytest.param("/_edge/git/demo.git/%2e%2e/x/info/refs", 404, id="encoded-dot-dot"),
        pytest.param("/_edge/git/demo.git/info/refs", 200, id="info-refs"),
    ],
)
def test_only_smart_http_paths_of_known_sites(edge: Edge, path: str, status: int) -> None:
    auth = base64.b64encode(f"x:{TOKEN}".encode())
    raw = raw_request(
        edge,
        b"GET " + path.encode() + b"?service=git-upload-pack HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nAuthorization: Basic " + auth + b"\r\nConnection: close\r\n\r\n",
    )
    assert parse_response(raw)[0] == status


def test_clone_and_fetch_with_the_token(edge: Edge, repo: Repo, tmp_path: Path) -> None:
    # Bigger than git's 1 MiB post buffer, so the push is sent chunked and streamed.
    big = os.urandom(3 * 1024 * 1024).hex()
    sha = repo.commit({**page("cloned"), "big.txt": big}, "to clone")
    assert repo.push(remote(edge), "main").returncode == 0
    copy = Repo(tmp_path / "copy", tmp_path / "home")
    copy.git("fetch", "-q", remote(edge), "main")
    assert copy.git("rev-parse", "FETCH_HEAD").stdout.strip() == sha
    cloned = subprocess.run(
        ["git", "-c", "credential.helper=", "clone", "-q", remote(edge), str(tmp_path / "c")],
        env=repo.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "c" / "page.html").read_text() == "<h1>cloned</h1>"
    assert (tmp_path / "c" / "big.txt").read_text() == big
    refused = copy.git("fetch", "-q", remote(edge, "wrong"), "main", check=False)
    assert refused.returncode != 0


def test_pushing_a_deletion_removes_the_branch_alias(edge: Edge, repo: Repo) -> None:
    repo.commit(page("prod"), "prod")
    repo.commit(page("gone soon"), "temp", branch="temp")
    assert repo.push(remote(edge), "main", "temp").returncode == 0
    assert set(aliases(edge)) == {"production", "main", "temp"}
    deleted = repo.push(remote(edge), ":temp")
    assert deleted.returncode == 0, deleted.stderr
    assert "alias temp removed" in deleted.stderr
    assert set(aliases(edge)) == {"production", "main"}
    assert remote_ref(edge, "refs/heads/temp") is None
    assert served(edge, "temp.demo.localhost", status=404).status_code == 404
    refused = repo.push(remote(edge), ":main")
    assert refused.returncode != 0
    assert "the production branch main cannot be deleted" in refused.stderr
    assert remote_ref(edge, "refs/heads/main") is not None
    assert set(aliases(edge)) == {"production", "main"}


def test_concurrent_pushes_to_different_branches_both_land(edge: Edge, repo: Repo) -> None:
    slow = BUILD.replace("set -e", "set -e\nsleep 1")
    repo.commit({**page("a"), "build.sh": slow}, "a", branch="branch-a")
    repo.commit({**page("b"), "build.sh": slow}, "b", branch="branch-b")
    pushes = [
        subprocess.Popen(
            ["git", "-c", "credential.helper=", "push", remote(edge), branch],
            cwd=repo.root,
            env=repo.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for branch in ("branch-a", "branch-b")
    ]
    for push in pushes:
        _, err = push.communicate(timeout=60)
        assert push.returncode == 0, err.decode()
    assert {"branch-a", "branch-b"} <= set(aliases(edge))
    assert served(edge, "branch-a.demo.localhost", expected="<h1>a</h1>").text == "<h1>a</h1>"
    assert served(edge, "branch-b.demo.localhost", expected="<h1>b</h1>").text == "<h1>b</h1>"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(edge: Edge, ref: str, sha: str) -> tuple[httpx.Response, dict[str, object]]:
    """POST a signed push event; wait (bounded) for its build to finish."""
    body = json.dumps({"ref": ref, "after": sha}).encode()
    answer = edge.client().post(
        "/_edge/api/sites/demo/hooks/push",
        content=body,
        headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
    )
    assert answer.status_code == 202, answer.text
    api = edge.client(headers={"Authorization": f"Bearer {TOKEN}"})
    deadline = time.monotonic() + 30
    status = api.get(answer.json()["url"]).json()
    while status["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
        status = api.get(answer.json()["url"]).json()
    return answer, status


def test_deploy_hook_with_a_good_signature_builds_and_deploys(edge: Edge, repo: Repo) -> None:
    sha = repo.commit(page("hooked"), "via webhook", branch="hooked")
    answer, status = deliver(edge, "refs/heads/hooked", sha)
    assert status["status"] == "succeeded", status
    assert status["commit"] == sha
    # The deployment ID was announced in the hook's answer, before the build ran.
    assert status["deployment"] == answer.json()["deployment"]
    assert aliases(edge)["hooked"] == status["deployment"]
    assert served(edge, "hooked.demo.localhost", expected="<h1>hooked</h1>").text == (
        "<h1>hooked</h1>"
    )
    assert remote_ref(edge, "refs/heads/hooked") == sha


def test_replayed_old_delivery_does_not_roll_back(edge: Edge, repo: Repo) -> None:
    old = repo.commit(page("old"), "old", branch="hooked")
    _, first = deliver(edge, "refs/heads/hooked", old)
    assert first["status"] == "succeeded", first
    new = repo.commit(page("new"), "new", branch="hooked")
    _, second = deliver(edge, "refs/heads/hooked", new)
    assert second["status"] == "succeeded", second
    # The first delivery, still validly signed, sent again:
    _, replay = deliver(edge, "refs/heads/hooked", old)
    assert replay["status"] == "failed"
    assert "not the tip" in str(replay["error"])
    assert aliases(edge)["hooked"] == second["deployment"]
    assert remote_ref(edge, "refs/heads/hooked") == new


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="missing"),
        pytest.param("sha256=" + "0" * 64, id="wrong"),
        pytest.param("other-secret", id="wrong-secret"),
    ],
)
def test_deploy_hook_refuses_a_bad_signature(edge: Edge, repo: Repo, signature: str | None) -> None:
    sha = repo.commit(page("forged"), "forged", branch="forged")
    body = json.dumps({"ref": "refs/heads/forged", "after": sha}).encode()
    headers = {}
    if signature == "other-secret":
        headers["X-Hub-Signature-256"] = sign(body, "other-secret")
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    answer = edge.client().post("/_edge/api/sites/demo/hooks/push", content=body, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"] == "bad-signature"
    assert remote_ref(edge, "refs/heads/forged") is None
    assert not list((edge.state_dir / "sites" / "demo" / "builds").glob("*.json"))


def test_the_shipped_demo_site_builds_on_push(
    repo: Repo, edge_factory: Callable[..., Edge]
) -> None:
    edge = edge_factory(rules(repo.root, build="python3 build.py", output="dist"))
    shutil.copytree(ROOT / "sites" / "demo", repo.root, dirs_exist_ok=True)
    sha = repo.commit({}, "the demo site")
    pushed = repo.push(remote(edge), "main")
    assert pushed.returncode == 0, pushed.stderr
    assert "stamped 1 page(s)" in pushed.stderr
    home = served(edge, "demo.localhost")
    assert "edgeproxy demo site" in home.text
    assert f"Built from {sha[:10]} on main" in home.text
    assert served(edge, "demo.localhost", "/build.py", status=404).status_code == 404
