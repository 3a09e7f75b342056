"""Builds: turn a pushed commit into a deployment, outside the server process.

Two entry points, both run as their own process:

- `edgeproxy git-hook` is git's `pre-receive` hook in each site's bare repository. It reads
  `<old> <new> <ref>` lines; for each branch it builds the pushed commit and publishes it.
  Its output reaches the pusher as `remote:` lines; a non-zero exit makes git reject the
  whole push, so a failed build leaves the ref and every alias where they were.
- `edgeproxy build` is started by the deploy hook: it fetches a ref from the site's
  `repo_url` into the bare repository, then builds and publishes the same way, recording
  its progress in `<state>/sites/<site>/builds/<build-id>.json`.

A build exports the commit into a fresh temporary directory, runs `build.command` there
with `/bin/sh -c`, a clean environment and a time limit (the whole process group is killed
when it runs out), and publishes `build.output`. Builds of one branch of a site take turns
(a file lock); other branches and sites build at the same time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edgeproxy.config.loader import load_config
from edgeproxy.config.models import Site
from edgeproxy.exceptions import BuildFailed, EdgeError, StoreError
from edgeproxy.sites.functions import FUNCTIONS_DIR, check_functions, include_project_functions
from edgeproxy.sites.hosting import rules_warnings
from edgeproxy.sites.store import (
    DEPLOY_ID,
    PRODUCTION,
    BlobStore,
    Deployment,
    SiteStore,
    branch_alias,
    file_lock,
    import_tree,
    write_atomic,
)

ZERO_SHA = "0" * 40
SHA1 = re.compile(r"^[0-9a-f]{40}$")
# A deploy hook's build is named by the ID its deployment will have.
BUILD_ID = DEPLOY_ID
PUBLIC_SCHEME_ENV = "EDGEPROXY_PUBLIC_SCHEME"
PUBLIC_PORT_ENV = "EDGEPROXY_PUBLIC_PORT"
_TAIL_LINES = 20
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def git_dir(state_dir: Path, site: str) -> Path:
    return state_dir / "git" / f"{site}.git"


def builds_dir(state_dir: Path, site: str) -> Path:
    return state_dir / "sites" / site / "builds"


def site_urls(
    name: str, site: Site, branch: str, short_id: str | None, scheme: str, port: str
) -> dict[str, str]:
    """The URLs a deployment of `branch` answers at (short_id None: before it exists)."""
    suffix = f"{name}.{site.preview_domain}" + (f":{port}" if port else "")
    urls = {}
    if short_id is not None:
        urls["deployment"] = f"{scheme}://{short_id}.{suffix}/"
    urls["branch"] = f"{scheme}://{branch_alias(branch)}.{suffix}/"
    if branch == site.production_branch:
        urls["production"] = f"{scheme}://{suffix}/"
        for host in site.hosts:
            urls.setdefault("production_host", f"{scheme}://{host}/")
    return urls


def run_command(
    command: str, cwd: Path, env: Mapping[str, str], timeout: float, emit: Callable[[bytes], None]
) -> int | None:
    """Run `command` with `/bin/sh -c`, passing each output line to `emit`.

    Returns the exit status, or None when it ran out of time (its process group is killed).
    """
    process = subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    reader = threading.Thread(target=_pump, args=(process.stdout, emit), daemon=True)
    reader.start()
    code: int | None
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        # Also reaps what the build left running in the background, which would otherwise
        # hold the output pipe open.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    reader.join(timeout=5)
    process.stdout.close()
    return code


def _pump(stream: IO[bytes], emit: Callable[[bytes], None]) -> None:
    for line in iter(stream.readline, b""):
        emit(line)


def build_env(site: Site, branch: str, commit: str, deploy_url: str, home: Path) -> dict[str, str]:
    """The clean environment a build command sees."""
    path = os.environ.get("PATH") or _DEFAULT_PATH
    # The interpreter running edgeproxy is the one Python a machine surely has.
    python_dir = str(Path(sys.executable).parent)
    if python_dir not in path.split(os.pathsep):
        path = f"{python_dir}{os.pathsep}{path}"
    variables = site.env.production if branch == site.production_branch else site.env.preview
    return {
        "PATH": path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **variables,
        "CI": "true",
        "EDGE_BRANCH": branch,
        "EDGE_COMMIT": commit,
        "EDGE_DEPLOY_URL": deploy_url,
    }


@dataclass
class Builder:
    """Builds and publishes commits of one site; `out` is what the pusher sees."""

    config_path: Path
    state_dir: Path
    name: str
    out: IO[bytes]
    scheme: str = "http"
    port: str = ""
    # A deploy hook announces the deployment's ID before the build runs.
    deploy_id: str | None = None

    def __post_init__(self) -> None:
        config = load_config(self.config_path)
        site = config.sites.get(self.name)
        if site is None:
            raise BuildFailed(f"site {self.name!r} is no longer configured")
        self.site = site
        self.blobs = BlobStore(self.state_dir / "blobs")
        self.store = SiteStore(self.state_dir, self.name, self.blobs)
        self.logs = builds_dir(self.state_dir, self.name)
        self.logs.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls, config_path: Path, state_dir: Path, name: str, out: IO[bytes]) -> Builder:
        scheme = os.environ.get(PUBLIC_SCHEME_ENV) or "http"
        port = os.environ.get(PUBLIC_PORT_ENV, "")
        return cls(config_path, state_dir, name, out, scheme, port)

    def say(self, text: str) -> None:
        for line in text.splitlines():
            self.out.write(f"edgeproxy: {line}\n".encode())
        self.out.flush()

    def branch_lock(self, branch: str) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.logs / f".lock-branch-{branch_alias(branch)}")

    def build(self, branch: str, commit: str, git_env: Mapping[str, str]) -> Deployment:
        """Export `commit`, build it, publish the output; raises BuildFailed."""
        subject = _git(["log", "-1", "--format=%s", commit], git_env).strip()
        urls = site_urls(self.name, self.site, branch, None, self.scheme, self.port)
        work = Path(tempfile.mkdtemp(prefix=f"edgeproxy-build-{self.name}-"))
        running_log = self.logs / f".{secrets.token_hex(8)}.log"
        tail: deque[str] = deque(maxlen=_TAIL_LINES)
        try:
            with open(running_log, "wb") as log:

                def emit(line: bytes) -> None:
                    log.write(line)
                    self.out.write(line)
                    self.out.flush()
                    tail.append(line.decode(errors="replace").rstrip("\r\n"))

                try:
                    deployment = self._build_in(
                        work, branch, commit, subject, urls["branch"], git_env, emit
                    )
                except BuildFailed as exc:
                    log.write(f"edgeproxy: {exc}\n".encode())
                    exc.tail = list(tail)
                    raise
            os.replace(running_log, self.logs / f"{deployment.id}.log")
            return deployment
        except BuildFailed:
            if running_log.exists():
                os.replace(running_log, self.logs / f"{commit}.log")
            raise
        finally:
            running_log.unlink(missing_ok=True)
            shutil.rmtree(work, ignore_errors=True)

    def _build_in(
        self,
        work: Path,
        branch: str,
        commit: str,
        subject: str,
        deploy_url: str,
        git_env: Mapping[str, str],
        emit: Callable[[bytes], None],
    ) -> Deployment:
        checkout = work / "src"
        home = work / "home"
        checkout.mkdir()
        home.mkdir()
        _export(commit, checkout, git_env)
        build = self.site.build
        if build.command:
            emit(f"$ {build.command}\n".encode())
            env = build_env(self.site, branch, commit, deploy_url, home)
            started = time.monotonic()
            code = run_command(build.command, checkout, env, build.timeout, emit)
            if code is None:
                raise BuildFailed(f"build timed out after {build.timeout:g}s and was killed")
            if code != 0:
                raise BuildFailed(f"build failed with exit status {code}")
            self.say(f"build finished in {time.monotonic() - started:.1f}s")
        output = (checkout / build.output).resolve()
        if not output.is_relative_to(checkout.resolve()) or not output.is_dir():
            raise BuildFailed(f"build output {build.output!r} is not a directory of the checkout")
        try:
            files = import_tree(self.blobs, output)
            functions = include_project_functions(checkout, output)
            if functions is not None:
                self.say("adding functions/ from the project root")
                imported = import_tree(self.blobs, functions)
                files.update(
                    {f"{FUNCTIONS_DIR}/{path}": digest for path, digest in imported.items()}
                )
        except (StoreError, OSError) as exc:
            raise BuildFailed(f"cannot publish {build.output!r}: {exc}") from exc
        if not files:
            raise BuildFailed(f"build output {build.output!r} has no files")
        warnings = rules_warnings(self.blobs, files, self.site)
        deployment = self.store.create(
            files,
            branch=branch,
            commit=commit,
            message=subject,
            origin="git",
            warnings=warnings,
            deploy_id=self.deploy_id,
        )
        try:
            check_functions(self.store, deployment)
        except StoreError as exc:
            raise BuildFailed(str(exc)) from exc
        self.store.publish(deployment, self.site.production_branch)
        self.store.prune(self.site.retention)
        for warning in warnings:
            self.say(f"warning: {warning}")
        return deployment

    def report(self, deployment: Deployment) -> None:
        self.say(
            f"deployed {deployment.short_id} ({deployment.files} files) from "
            f"{deployment.branch} @ {deployment.commit[:10]}"
        )
        urls = site_urls(
            self.name, self.site, deployment.branch, deployment.short_id, self.scheme, self.port
        )
        for label, url in urls.items():
            self.say(f"  {label:<16}{url}")

    def report_failure(self, branch: str, commit: str, exc: BuildFailed) -> None:
        if exc.tail:
            self.say("last lines of the build:")
            for line in exc.tail:
                self.say(f"  | {line}")
        self.say(f"{branch} @ {commit[:10]}: {exc}")
        self.say(f"push rejected: {branch} not updated, aliases unchanged")

    def delete_branch(self, branch: str) -> None:
        """Remove the branch's alias; never production's."""
        alias = branch_alias(branch)
        if alias == PRODUCTION:
            self.say(f"deleted {branch}; the production alias stays")
            return
        self.store.set_aliases({alias: None})
        self.say(f"deleted {branch}: alias {alias} removed")


def _git(args: list[str], env: Mapping[str, str]) -> str:
    result = subprocess.run(
        ["git", *args], env=dict(env), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BuildFailed(f"git {args[0]} failed: {result.stderr.strip()}")
    return result.stdout


def _export(commit: str, target: Path, git_env: Mapping[str, str]) -> None:
    """Write the tree of `commit` into `target` (an empty directory)."""
    archive = subprocess.Popen(
        ["git", "archive", "--format=tar", commit],
        env=dict(git_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert archive.stdout is not None
    extract = subprocess.run(
        ["tar", "-x", "-C", str(target)], stdin=archive.stdout, capture_output=True, check=False
    )
    archive.stdout.close()
    _, errors = archive.communicate()
    if archive.returncode != 0 or extract.returncode != 0:
        detail = (errors or extract.stderr).decode(errors="replace").strip()
        raise BuildFailed(f"cannot check out {commit[:10]}: {detail}")


def _ref_value(ref: str, git_env: Mapping[str, str]) -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", ref],
        env=dict(git_env),
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else ZERO_SHA


def run_hook(
    config_path: Path, state_dir: Path, name: str, updates: Iterable[str], out: IO[bytes]
) -> int:
    """git's pre-receive: build each pushed branch; non-zero rejects the whole push."""
    try:
        builder = Builder.from_env(config_path, state_dir, name, out)
    except EdgeError as exc:
        out.write(f"edgeproxy: cannot build: {exc}\n".encode())
        return 1
    git_env = dict(os.environ)  # git's own: makes the quarantined new objects visible
    updates_by_branch: list[tuple[str, str, str]] = []
    for line in updates:
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith("refs/heads/"):
            updates_by_branch.append((parts[0], parts[1], parts[2].removeprefix("refs/heads/")))
    deleted = [branch for _, new, branch in updates_by_branch if new == ZERO_SHA]
    if builder.site.production_branch in deleted:
        builder.say(f"the production branch {builder.site.production_branch} cannot be deleted")
        return 1
    # Builds first, deletions last: a push that is rejected must leave every alias alone.
    for old, new, branch in updates_by_branch:
        if new == ZERO_SHA:
            continue
        with builder.branch_lock(branch):
            if _ref_value(f"refs/heads/{branch}", git_env) != old:
                builder.say(f"{branch} moved while this push waited; fetch and push again")
                return 1
            builder.say(f"building {branch} @ {new[:10]}")
            try:
                deployment = builder.build(branch, new, git_env)
            except BuildFailed as exc:
                builder.report_failure(branch, new, exc)
                return 1
            builder.report(deployment)
    for branch in deleted:
        with builder.branch_lock(branch):
            builder.delete_branch(branch)
    return 0


# Builds started by the deploy hook


def build_status_path(state_dir: Path, site: str, build_id: str) -> Path:
    if not BUILD_ID.match(build_id):
        raise StoreError(f"not a build ID: {build_id!r}", 404)
    return builds_dir(state_dir, site) / f"{build_id}.json"


def read_build_status(state_dir: Path, site: str, build_id: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(build_status_path(state_dir, site, build_id).read_text())
    except FileNotFoundError:
        raise StoreError(f"site {site!r} has no build {build_id}", 404) from None
    return data


def write_build_status(state_dir: Path, site: str, build_id: str, **fields: Any) -> None:
    path = build_status_path(state_dir, site, build_id)
    try:
        current: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        current = {"id": build_id, "site": site}
    current.update(fields, updated=time.time())
    write_atomic(path, json.dumps(current).encode())


def run_fetched_build(
    config_path: Path,
    state_dir: Path,
    name: str,
    ref: str,
    commit: str,
    build_id: str,
    out: IO[bytes],
) -> int:
    """Fetch `ref` from the site's `repo_url` into its bare repository, build, publish."""
    status = {"status": "running", "ref": ref, "commit": commit}
    write_build_status(state_dir, name, build_id, **status)
    try:
        builder = Builder.from_env(config_path, state_dir, name, out)
        builder.deploy_id = build_id
        if not builder.site.repo_url:
            raise BuildFailed(f"site {name!r} has no repo_url to fetch from")
        if not ref.startswith("refs/heads/"):
            raise BuildFailed(f"{ref!r} is not a branch (refs/heads/...)")
        branch = ref.removeprefix("refs/heads/")
        git_env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        git_env["GIT_DIR"] = str(git_dir(state_dir, name))
        git_env["GIT_TERMINAL_PROMPT"] = "0"
        incoming = f"refs/edgeproxy/incoming/{build_id}"
        builder.say(f"fetching {ref} from {builder.site.repo_url}")
        _git(["fetch", "--no-tags", builder.site.repo_url, f"+{ref}:{incoming}"], git_env)
        try:
            fetched = _git(["rev-parse", "--verify", incoming], git_env).strip()
            if commit and commit != fetched:
                # A replayed (old, still validly signed) delivery must not roll a branch
                # back: only the ref's current tip in repo_url is built.
                raise BuildFailed(
                    f"the event's commit {commit[:10]} is not the tip of {ref} in repo_url "
                    f"({fetched[:10]}); a stale or replayed delivery is not built"
                )
            commit = fetched
            write_build_status(state_dir, name, build_id, commit=commit)
            with builder.branch_lock(branch):
                deployment = builder.build(branch, commit, git_env)
                _git(["update-ref", ref, commit], git_env)
        finally:
            subprocess.run(["git", "update-ref", "-d", incoming], env=git_env, check=False)
    except BuildFailed as exc:
        write_build_status(
            state_dir, name, build_id, status="failed", error=str(exc), tail=exc.tail
        )
        out.write(f"edgeproxy: {exc}\n".encode())
        return 1
    except EdgeError as exc:
        write_build_status(state_dir, name, build_id, status="failed", error=str(exc))
        out.write(f"edgeproxy: {exc}\n".encode())
        return 1
    builder.report(deployment)
    write_build_status(
        state_dir, name, build_id, status="succeeded", commit=commit, deployment=deployment.id
    )
    return 0
