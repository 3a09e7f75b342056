"""Deployments on disk: immutable directories, their metadata, content-addressed blobs, aliases.

    <state>/blobs/<sha256>                         uploaded file contents, shared by all sites
    <state>/sites/<site>/deploys/<id>/...          a deployment's files (hard links to blobs)
    <state>/sites/<site>/deploys/<id>.json         its metadata; written last, so a deployment
                                                   without one is incomplete and ignored
    <state>/sites/<site>/aliases.json              alias -> deployment ID

Every write that must survive a crash goes to a temporary name, is fsynced, and is renamed
into place (then the directory is fsynced), so a crash leaves the old or the new state,
never a torn one. Aliases move only after the deployment they name is complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from edgeproxy.exceptions import StoreError

DEPLOY_ID = re.compile(r"^[0-9a-f]{32}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
ALIAS = re.compile(r"^[a-z0-9]([a-z0-9-]{0,26}[a-z0-9])?$")
PRODUCTION = "production"


def branch_alias(branch: str) -> str:
    """The preview alias of a branch: lowercase, runs outside [a-z0-9] become '-', max 28."""
    alias = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-")[:28].strip("-")
    return alias or "branch"


def safe_relative(path: str) -> PurePosixPath:
    """A deployment-relative file path, refusing anything that could leave the deployment."""
    if not path or "\\" in path or "\0" in path or any(ord(ch) < 0x20 for ch in path):
        raise StoreError(f"invalid file path {path!r}")
    if "//" in path.lstrip("/"):
        raise StoreError(f"invalid file path {path!r}: no '.', '..' or empty segments")
    pure = PurePosixPath(path.lstrip("/"))
    if pure.is_absolute() or not pure.parts or any(part in ("", ".", "..") for part in pure.parts):
        raise StoreError(f"invalid file path {path!r}: no '.', '..' or empty segments")
    return pure


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held across processes (fcntl.flock) for the `with` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves the old or the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


@dataclass
class Deployment:
    """Metadata of one deployment (its `<id>.json`)."""

    id: str
    site: str
    branch: str
    commit: str = ""
    message: str = ""
    created: float = field(default_factory=time.time)
    files: int = 0
    bytes: int = 0
    status: str = "ready"
    origin: str = "upload"
    warnings: list[str] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["short_id"] = self.short_id
        data["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))
        return data


class BlobStore:
    """Uploaded file contents by SHA-256, shared by every site."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        if not SHA256.match(digest):
            raise StoreError(f"not a SHA-256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest

    async def put_stream(self, digest: str, chunks: AsyncIterator[bytes], limit: int) -> int:
        """Like `put`, from an async stream of at most `limit` bytes."""
        with self._writer(digest, limit) as writer:
            async for chunk in chunks:
                writer.write(chunk)
        return writer.size

    def put(self, digest: str, chunks: Iterable[bytes]) -> int:
        """Store content that must hash to `digest`; refused (and nothing kept) otherwise."""
        with self._writer(digest, None) as writer:
            for chunk in chunks:
                writer.write(chunk)
        return writer.size

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    @contextlib.contextmanager
    def _writer(self, digest: str, limit: int | None) -> Iterator[_BlobWriter]:
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{digest}.{secrets.token_hex(4)}.tmp")
        writer = _BlobWriter(open(temp, "wb"), limit)  # noqa: SIM115  # closed below
        try:
            yield writer
            writer.handle.flush()
            os.fsync(writer.handle.fileno())
            writer.handle.close()
            actual = writer.hasher.hexdigest()
            if actual != digest:
                raise StoreError(f"content does not match its digest {digest} (got {actual})")
            os.replace(temp, target)
        finally:
            writer.handle.close()
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


class _BlobWriter:
    def __init__(self, handle: BinaryIO, limit: int | None) -> None:
        self.handle = handle
        self.limit = limit
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            raise StoreError(f"file is larger than the limit of {self.limit} bytes", 413)
        self.hasher.update(chunk)
        self.handle.write(chunk)


class SiteStore:
    """The deployments and aliases of one site."""

    def __init__(self, state_dir: Path, site: str, blobs: BlobStore) -> None:
        self.site = site
        self.root = state_dir / "sites" / site
        self.deploys = self.root / "deploys"
        self.aliases_path = self.root / "aliases.json"
        self.blobs = blobs
        self.deploys.mkdir(parents=True, exist_ok=True)

    # reading

    def deployment(self, deploy_id: str) -> Deployment:
        if not DEPLOY_ID.match(deploy_id):
            raise StoreError(f"not a deployment ID: {deploy_id!r}", 404)
        meta = self.deploys / f"{deploy_id}.json"
        try:
            data = json.loads(meta.read_text())
        except FileNotFoundError:
            raise StoreError(f"site {self.site!r} has no deployment {deploy_id}", 404) from None
        return Deployment(**{k: v for k, v in data.items() if k not in ("short_id", "created_at")})

    def deployment_dir(self, deploy_id: str) -> Path:
        return self.deploys / deploy_id

    def deployments(self) -> list[Deployment]:
        """Complete deployments, newest first."""
        found = []
        for meta in self.deploys.glob("*.json"):
            with contextlib.suppress(StoreError, json.JSONDecodeError, TypeError):
                found.append(self.deployment(meta.stem))
        return sorted(found, key=lambda d: d.created, reverse=True)

    def aliases(self) -> dict[str, str]:
        try:
            data = json.loads(self.aliases_path.read_text())
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def resolve(self, name: str) -> str | None:
        """The deployment ID an alias, a full ID or an 8-hex short ID names."""
        aliases = self.aliases()
        if name in aliases:
            return aliases[name]
        if DEPLOY_ID.match(name) and (self.deploys / f"{name}.json").is_file():
            return name
        if re.fullmatch(r"[0-9a-f]{8}", name):
            matches = [
                d for d in os.listdir(self.deploys) if d.startswith(name) and d.endswith(".json")
            ]
            if len(matches) == 1:
                return matches[0][:-5]
        return None

    # writing

    def create(
        self,
        files: Mapping[str, str],
        *,
        branch: str,
        commit: str = "",
        message: str = "",
        origin: str = "upload",
        warnings: Iterable[str] = (),
        deploy_id: str | None = None,
    ) -> Deployment:
        """Assemble a deployment from blobs (`files`: relative path -> digest).

        `deploy_id` is chosen here unless the caller announced one earlier (a deploy hook).
        """
        if deploy_id is None:
            deploy_id = secrets.token_hex(16)
        elif not DEPLOY_ID.match(deploy_id) or (self.deploys / f"{deploy_id}.json").exists():
            raise StoreError(f"deployment ID {deploy_id!r} is malformed or taken")
        staging = self.deploys / f".staging-{deploy_id}"
        staging.mkdir(parents=True)
        total = 0
        try:
            for name, digest in files.items():
                relative = safe_relative(name)
                blob = self.blobs.path(digest)
                if not blob.is_file():
                    raise StoreError(f"file {name} ({digest}) was never uploaded", 409)
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                # Hard links share the blob's bytes; deployments and blobs are both immutable.
                os.link(blob, target)
                total += blob.stat().st_size
            os.rename(staging, self.deploys / deploy_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        deployment = Deployment(
            id=deploy_id,
            site=self.site,
            branch=branch,
            commit=commit,
            message=message,
            files=len(files),
            bytes=total,
            origin=origin,
            warnings=list(warnings),
        )
        write_atomic(self.deploys / f"{deploy_id}.json", json.dumps(deployment.to_json()).encode())
        return deployment

    def set_aliases(self, changes: Mapping[str, str | None]) -> dict[str, str]:
        """Point aliases at deployments (None removes one), atomically, all or nothing.

        Locked across processes: the server, git hooks and builds all publish.
        """
        with file_lock(self.root / ".aliases.lock"):
            return self._set_aliases(changes)

    def _set_aliases(self, changes: Mapping[str, str | None]) -> dict[str, str]:
        aliases = self.aliases()
        for alias, deploy_id in changes.items():
            if not ALIAS.match(alias):
                raise StoreError(
                    f"invalid alias {alias!r}: lowercase letters, digits and '-', max 28"
                )
            if deploy_id is None:
                aliases.pop(alias, None)
            else:
                self.deployment(deploy_id)
                aliases[alias] = deploy_id
        write_atomic(self.aliases_path, json.dumps(aliases, indent=2, sort_keys=True).encode())
        return aliases

    def publish(self, deployment: Deployment, production_branch: str) -> dict[str, str]:
        """Move the branch alias (and production, for the production branch) to `deployment`."""
        changes: dict[str, str | None] = {branch_alias(deployment.branch): deployment.id}
        if deployment.branch == production_branch:
            changes[PRODUCTION] = deployment.id
        return self.set_aliases(changes)

    def discard(self, deploy_id: str) -> None:
        """Delete a deployment no alias names (one that failed its checks after creation)."""
        if deploy_id in self.aliases().values():
            raise StoreError(f"deployment {deploy_id[:8]} is aliased; it cannot be discarded")
        self._remove(deploy_id)

    def _remove(self, deploy_id: str) -> None:
        # Metadata first: without it the directory is already invisible.
        (self.deploys / f"{deploy_id}.json").unlink(missing_ok=True)
        shutil.rmtree(self.deploys / deploy_id, ignore_errors=True)

    def prune(self, keep_per_branch: int) -> list[str]:
        """Delete deployments beyond the newest `keep_per_branch` of each branch, unless aliased."""
        pinned = set(self.aliases().values())
        seen: dict[str, int] = {}
        removed = []
        for deployment in self.deployments():
            seen[deployment.branch] = seen.get(deployment.branch, 0) + 1
            if seen[deployment.branch] > keep_per_branch and deployment.id not in pinned:
                self._remove(deployment.id)
                removed.append(deployment.id)
        return removed

    def clean_incomplete(self) -> None:
        """Remove what a crash mid-deploy left behind: staging dirs and dirs without metadata."""
        for entry in self.deploys.iterdir():
            if entry.name.startswith(".staging-") or (
                entry.is_dir() and not (self.deploys / f"{entry.name}.json").exists()
            ):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.endswith(".tmp"):
                entry.unlink(missing_ok=True)


def hash_tree(root: Path) -> dict[str, tuple[str, Path]]:
    """Every file under `root`: relative path -> (sha256, path).

    A symlink is followed only when it stays inside `root`; one that points out of the tree
    is refused, so a build cannot publish files from elsewhere on the machine. `.git` is
    never published.
    """
    found: dict[str, tuple[str, Path]] = {}
    base = root.resolve()
    for path in sorted(base.rglob("*")):
        relative = path.relative_to(base).as_posix()
        if relative == ".git" or relative.startswith(".git/") or "/.git/" in relative:
            continue
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(base):
                raise StoreError(f"{relative} is a symlink out of the published tree (to {target})")
        if not path.is_file():
            continue
        found[relative] = (file_digest(path), path)
    return found


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_tree(blobs: BlobStore, root: Path) -> dict[str, str]:
    """Copy every file under `root` into the blob store; returns relative path -> digest."""
    files = {}
    for relative, (digest, path) in hash_tree(root).items():
        if not blobs.has(digest):
            blobs.put(digest, _read_chunks(path))
        files[relative] = digest
    return files


def _read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk
