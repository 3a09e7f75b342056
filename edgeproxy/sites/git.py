"""git's smart HTTP protocol at `/_edge/git/<site>.git/...`, served by `git http-backend`.

Each site has a bare repository at `<state>/git/<site>.git` whose `pre-receive` hook runs
`edgeproxy git-hook` (see `edgeproxy.sites.builds`), so a push builds and publishes before
git updates the ref. Requests need HTTP basic auth with `admin.token` as the password (any
username); without a configured token git access is off.

`git http-backend` runs as a CGI subprocess per request. The request body streams to its
stdin and its output streams back chunk by chunk, so a pack is never held in memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgeproxy.responses import send_bytes
from edgeproxy.sites.builds import PUBLIC_PORT_ENV, PUBLIC_SCHEME_ENV
from edgeproxy.types import Headers, Receive, Scope, Send

logger = logging.getLogger("edgeproxy.git")

PREFIX = b"/_edge/git/"
_GIT_PATH = re.compile(
    rb"^/_edge/git/(?P<site>[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?)\.git"
    rb"(?P<rest>/(?:HEAD|info/refs|git-upload-pack|git-receive-pack"
    rb"|objects/info/(?:alternates|http-alternates|packs)"
    rb"|objects/[0-9a-f]{2}/[0-9a-f]{38}"
    rb"|objects/pack/pack-[0-9a-f]{40}\.(?:pack|idx)))$"
)
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_NO_STORE = (b"cache-control", b"no-store")
_CHALLENGE = (b"www-authenticate", b'Basic realm="edgeproxy git"')
_CHUNK = 64 * 1024
# Passed from the request to http-backend (and on to the hook) when the client sends them.
_PASSED_HEADERS = {
    b"content-encoding": "HTTP_CONTENT_ENCODING",
    b"git-protocol": "GIT_PROTOCOL",
    b"content-length": "CONTENT_LENGTH",
    b"content-type": "CONTENT_TYPE",
}

HOOK_TEMPLATE = """#!/bin/sh
# Installed by edgeproxy (rewritten at every start): build and publish each pushed branch.
exec {python} -m edgeproxy git-hook --config {config} --state-dir {state} --site {site}
"""


def ensure_repository(
    git_root: Path, site: str, production_branch: str, config_path: Path, state_dir: Path
) -> Path:
    """Create the site's bare repository if missing and (re)install its pre-receive hook."""
    repo = git_root / f"{site}.git"
    if not (repo / "HEAD").exists():
        repo.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "init", "--quiet", "--bare", str(repo)], check=True, capture_output=True
        )
    subprocess.run(
        ["git", "--git-dir", str(repo), "symbolic-ref", "HEAD", f"refs/heads/{production_branch}"],
        check=True,
        capture_output=True,
    )
    hook = repo / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    text = HOOK_TEMPLATE.format(
        python=shlex.quote(sys.executable),
        config=shlex.quote(str(config_path)),
        state=shlex.quote(str(state_dir)),
        site=shlex.quote(site),
    )
    if not hook.exists() or hook.read_text() != text:
        temp = hook.with_name(".pre-receive.tmp")
        temp.write_text(text)
        temp.chmod(0o755)
        os.replace(temp, hook)
    return repo


def _public_port(scope: Scope, headers: Mapping[bytes, bytes]) -> str:
    host = headers.get(b"host", b"").decode("latin-1")
    if host.rfind(":") > host.rfind("]"):
        return host.rpartition(":")[2]
    return ""


class GitBackend:
    """Pure ASGI app for `/_edge/git/`: auth, path checks, then `git http-backend`."""

    def __init__(
        self,
        git_root: Callable[[], Path],
        sites: Callable[[], Mapping[str, Any]],
        token: Callable[[], str | None],
    ) -> None:
        self.git_root = git_root
        self.sites = sites
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        refusal = self._refusal(headers)
        if refusal is not None:
            await send_bytes(send, 401, [_TEXT, _NO_STORE, _CHALLENGE], refusal)
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        match = _GIT_PATH.match(raw_path)
        if match is None:
            await send_bytes(send, 404, [_TEXT, _NO_STORE], b"not a git smart-HTTP path\n")
            return
        site = match["site"].decode()
        if site not in self.sites():
            await send_bytes(send, 404, [_TEXT, _NO_STORE], f"no site {site!r}\n".encode())
            return
        if scope["method"] not in ("GET", "POST"):
            await send_bytes(send, 405, [_TEXT, (b"allow", b"GET, POST")], b"use GET or POST\n")
            return
        await self._run(scope, receive, send, headers, site, match["rest"].decode())

    def _refusal(self, headers: Mapping[bytes, bytes]) -> bytes | None:
        token = self.token()
        if not token:
            return b"git access is off: set admin.token in rules.yaml\n"
        given = headers.get(b"authorization", b"")
        if given[:6].lower() != b"basic ":
            return b"git needs HTTP basic auth: any username, the admin token as password\n"
        try:
            _, _, password = base64.b64decode(given[6:].strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return b"malformed basic auth\n"
        if not hmac.compare_digest(password, token.encode()):
            return b"wrong token\n"
        return None

    def _environment(
        self, scope: Scope, headers: Mapping[bytes, bytes], site: str, rest: str
    ) -> dict[str, str]:
        # The server's own environment goes through, as the hook loads rules.yaml with the
        # same ${VAR} interpolation; git variables from elsewhere do not.
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        given = headers.get(b"authorization", b"")[6:].strip()
        user = base64.b64decode(given).partition(b":")[0].decode(errors="replace") or "git"
        client = scope.get("client")
        env.update(
            GIT_PROJECT_ROOT=str(self.git_root()),
            GIT_HTTP_EXPORT_ALL="1",
            PATH_INFO=f"/{site}.git{rest}",
            QUERY_STRING=scope["query_string"].decode("latin-1"),
            REQUEST_METHOD=scope["method"],
            REMOTE_USER=user,
            REMOTE_ADDR=client[0] if client else "",
            CONTENT_TYPE="",
        )
        env[PUBLIC_SCHEME_ENV] = scope.get("scheme", "http")
        env[PUBLIC_PORT_ENV] = _public_port(scope, headers)
        for header, variable in _PASSED_HEADERS.items():
            if header in headers:
                env[variable] = headers[header].decode("latin-1")
        return env

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Mapping[bytes, bytes],
        site: str,
        rest: str,
    ) -> None:
        process = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=self._environment(scope, headers, site, rest),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        feeding = asyncio.create_task(self._feed(process, receive))
        complaints = asyncio.create_task(self._log_stderr(process, site))
        try:
            await self._relay(process, send)
            await process.wait()
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            feeding.cancel()
            await asyncio.gather(feeding, complaints, return_exceptions=True)

    async def _feed(self, process: asyncio.subprocess.Process, receive: Receive) -> None:
        assert process.stdin is not None
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    return
                body = message.get("body", b"")
                if body:
                    process.stdin.write(body)
                    await process.stdin.drain()
                if not message.get("more_body", False):
                    break
            process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            # http-backend answered (an error, usually) without reading the whole body.
            return

    async def _log_stderr(self, process: asyncio.subprocess.Process, site: str) -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            logger.warning("git %s: %s", site, line.decode(errors="replace").rstrip())

    async def _relay(self, process: asyncio.subprocess.Process, send: Send) -> None:
        """Parse the CGI header block, then stream the body."""
        assert process.stdout is not None
        stdout = process.stdout
        status = 200
        response_headers: Headers = []
        while True:
            line = await stdout.readline()
            if not line:
                await send_bytes(send, 502, [_TEXT], b"git http-backend gave no response\n")
                return
            line = line.rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.partition(b":")
            value = value.strip()
            if name.lower() == b"status":
                status = int(value.split()[0])
            else:
                response_headers.append((name.lower(), value))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        while chunk := await stdout.read(_CHUNK):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
