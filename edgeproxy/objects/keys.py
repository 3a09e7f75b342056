"""The server secret and the per-namespace keys derived from it.

The secret is 32 random bytes at `<state_dir>/objects/secret` (mode 0600), created once
by write-to-temp + fsync + rename and reused afterwards. Each namespace identity
(binding, scope) gets its own key, HMAC-SHA256(secret, identity), so IDs minted by one
namespace never verify in another, including a preview scope of the same binding.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from edgeproxy.exceptions import ObjectSettingsError

SECRET_BYTES = 32


def load_or_create_secret(path: Path) -> bytes:
    """The server secret at `path`, created atomically if it does not exist yet."""
    existing = read_secret(path)
    if existing is not None:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    _write_synced(temp, secrets.token_bytes(SECRET_BYTES), 0o600)
    try:
        # link() refuses to replace, so two processes starting at once agree on one secret.
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    fsync_dir(path.parent)
    secret = read_secret(path)
    if secret is None:  # pragma: no cover - the file was just linked
        raise ObjectSettingsError(f"object secret {path} vanished while it was created")
    return secret


def read_secret(path: Path) -> bytes | None:
    """The secret at `path`, or None if there is none; a damaged secret is an error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) != SECRET_BYTES:
        raise ObjectSettingsError(
            f"object secret {path} has {len(data)} bytes, expected {SECRET_BYTES}; "
            "restore it from backup (a new secret would orphan every stored object ID)"
        )
    return data


def namespace_key(secret: bytes, binding: str, scope: str) -> bytes:
    """The MAC key of the namespace identity (binding, scope)."""
    identity = json.dumps([binding, scope], ensure_ascii=False).encode()
    return hmac.new(secret, b"edgeproxy-namespace\0" + identity, hashlib.sha256).digest()


def fsync_dir(path: Path) -> None:
    """Make a rename or link in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` by temp file + fsync + rename, so readers see old or new."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    _write_synced(temp, data, mode)
    os.replace(temp, path)
    fsync_dir(path.parent)


def _write_synced(path: Path, data: bytes, mode: int) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
