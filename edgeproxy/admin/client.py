"""The CLI's side of the admin API: deploy a directory, list deployments, move aliases."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import httpx

from edgeproxy.sites.store import hash_tree

DEFAULT_SERVER = "http://127.0.0.1:8080"


class AdminError(Exception):
    """The server refused a call; the message is what it said."""


class AdminClient:
    def __init__(self, server: str | None, token: str | None) -> None:
        self.server = (server or os.environ.get("EDGEPROXY_SERVER") or DEFAULT_SERVER).rstrip("/")
        token = token or os.environ.get("EDGEPROXY_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.server + "/_edge/api", headers=headers, timeout=120)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise AdminError(f"cannot reach {self.server}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise AdminError(f"{response.status_code}: {detail}")
        return response.json()

    def stream_lines(self, path: str, params: dict[str, str]) -> Iterator[str]:
        """GET a streamed NDJSON resource line by line, until the server ends it."""
        try:
            with self.http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise AdminError(f"{response.status_code}: {response.text}")
                yield from (line for line in response.iter_lines() if line)
        except httpx.TransportError as exc:
            raise AdminError(f"cannot reach {self.server}: {exc}") from exc

    def text(self, path: str) -> str:
        """GET a plain-text resource (a build log)."""
        try:
            response = self.http.get(path)
        except httpx.TransportError as exc:
            raise AdminError(f"cannot reach {self.server}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise AdminError(f"{response.status_code}: {detail}")
        return response.text

    def deploy(
        self,
        directory: Path,
        site: str,
        *,
        branch: str | None,
        commit: str,
        message: str,
        progress: TextIO = sys.stderr,
    ) -> dict[str, Any]:
        """Upload what the server lacks of `directory`, then publish it."""
        tree = hash_tree(directory)
        if not tree:
            raise AdminError(f"{directory} has no files to deploy")
        files = {name: digest for name, (digest, _) in tree.items()}
        body: dict[str, Any] = {"files": files, "commit": commit, "message": message}
        if branch:
            body["branch"] = branch
        started = self.call("POST", f"/sites/{site}/deploys", json=body)
        required = set(started["required"])
        paths = {digest: path for digest, path in tree.values() if digest in required}
        total = sum(path.stat().st_size for path in paths.values())
        sent = 0
        print(f"{len(files)} files, {len(paths)} to upload ({_size(total)})", file=progress)
        for index, (digest, path) in enumerate(sorted(paths.items()), start=1):
            upload = f"/sites/{site}/uploads/{started['upload']}/files/{digest}"
            self.call("PUT", upload, content=_chunks(path))
            sent += path.stat().st_size
            print(
                _bar(index, len(paths), sent, total),
                end="\r" if index < len(paths) else "\n",
                file=progress,
            )
        result: dict[str, Any] = self.call(
            "POST", f"/sites/{site}/uploads/{started['upload']}/finalize"
        )
        return result


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def _bar(done: int, count: int, sent: int, total: int, width: int = 30) -> str:
    filled = int(width * sent / total) if total else width
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {done}/{count} files, {_size(sent)}/{_size(total)}"
