"""The pinning audit over real shard files, clean and tampered with."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest

from edgeproxy.objects import ObjectSettings, audit
from tests.objects.sample import make_settings, running


def populate(settings: ObjectSettings) -> dict[str, str]:
    async def scenario() -> dict[str, str]:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            ids = {}
            for where, view in (("default", ns), ("eu", ns.jurisdiction("eu"))):
                stub = view.get(view.id_from_name(where))
                await stub.increment()
                ids[where] = stub.id.hex
            preview = system.namespace("COUNTER", "preview")
            await preview.get(preview.new_unique_id("eu")).increment()
            return ids

    return asyncio.run(scenario())


def test_clean_state_passes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    populate(settings)
    report = audit(settings)
    assert report.ok, report.summary()
    assert report.macs_checked
    assert report.objects == 3
    assert report.shards == 4
    assert report.summary().startswith("ok: 4 shard files, 3 objects")


def copy_row(source: Path, target: Path, hex_id: str, *, new_id: str | None = None) -> None:
    with sqlite3.connect(source) as conn:
        rows = conn.execute("SELECT * FROM kv WHERE id = ?", (hex_id,)).fetchall()
    conn.close()
    with sqlite3.connect(target) as out:
        for binding, scope, _, key, value in rows:
            out.execute(
                "INSERT INTO kv VALUES (?, ?, ?, ?, ?)",
                (binding, scope, new_id or hex_id, key, value),
            )
    out.close()


def shard_of(root: Path, hex_id: str) -> Path:
    for path in sorted(root.glob("shard-*.sqlite3")):
        with sqlite3.connect(path) as conn:
            found = conn.execute("SELECT 1 FROM kv WHERE id = ?", (hex_id,)).fetchone()
        conn.close()
        if found:
            return path
    raise AssertionError("not stored")


@pytest.mark.parametrize(
    ("tamper", "kind"),
    [
        pytest.param("eu-row-in-default", "foreign-jurisdiction", id="foreign-jurisdiction"),
        pytest.param("edited-id", "bad-mac", id="edited-id"),
        pytest.param("wrong-shard", "misplaced", id="misplaced"),
        pytest.param("stray-file", "unaccounted-file", id="stray-shard-file"),
    ],
)
def test_tampering_is_reported(tmp_path: Path, tamper: str, kind: str) -> None:
    settings = make_settings(tmp_path)
    ids = populate(settings)
    default_root, eu_root = tmp_path / "objects" / "default", tmp_path / "eu"
    eu_shard = shard_of(eu_root, ids["eu"])
    if tamper == "eu-row-in-default":
        copy_row(eu_shard, default_root / "shard-00.sqlite3", ids["eu"])
    elif tamper == "edited-id":
        edited = ids["eu"][:40] + ("0" if ids["eu"][40] != "0" else "1") + ids["eu"][41:]
        copy_row(eu_shard, eu_shard, ids["eu"], new_id=edited)
    elif tamper == "wrong-shard":
        other = next(p for p in eu_root.glob("shard-*.sqlite3") if p != eu_shard)
        copy_row(eu_shard, other, ids["eu"])
    else:
        shutil.copy(eu_shard, eu_root / "shard-07.sqlite3")
    report = audit(settings)
    assert not report.ok
    assert kind in {violation.kind for violation in report.violations}, report.summary()
    assert "VIOLATIONS" in report.summary()


def test_audit_without_the_secret_skips_macs(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    populate(settings)
    settings.secret_path.unlink()
    report = audit(settings)
    assert report.ok
    assert not report.macs_checked
    assert "MACs not checked" in report.summary()
