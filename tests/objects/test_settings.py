"""Jurisdiction settings, the shard layout they pin, and the server secret."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from edgeproxy.exceptions import ObjectSettingsError
from edgeproxy.objects import JurisdictionSpec, ObjectSettings, ObjectSystem
from edgeproxy.objects.keys import load_or_create_secret, namespace_key, read_secret
from edgeproxy.objects.settings import resolve_jurisdictions
from tests.objects.sample import SPECS, make_settings


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        pytest.param([("EU", "a", 1)], "invalid: expected", id="uppercase-name"),
        pytest.param([("1eu", "a", 1)], "invalid", id="leading-digit"),
        pytest.param([("e" * 33, "a", 1)], "invalid", id="too-long"),
        pytest.param([("default", "a", 1)], "reserved", id="default-reserved"),
        pytest.param([("eu", "a", 0)], "between 1 and 100, got 0", id="no-shards"),
        pytest.param([("eu", "a", 101)], "got 101", id="too-many-shards"),
        pytest.param([("eu", "a", 1), ("us", "a", 1)], "overlapping roots", id="same-root"),
        pytest.param([("eu", "a", 1), ("us", "a/us", 1)], "overlapping roots", id="nested-root"),
        pytest.param([("eu", "a", 1), ("eu", "b", 1)], "collides", id="duplicate-name"),
    ],
)
def test_bad_jurisdictions_are_refused(
    tmp_path: Path, specs: list[tuple[str, str, int]], message: str
) -> None:
    settings = ObjectSettings(
        tmp_path, [JurisdictionSpec(name, tmp_path / root, n) for name, root, n in specs]
    )
    with pytest.raises(ObjectSettingsError, match=message):
        resolve_jurisdictions(settings)


def test_default_jurisdiction_is_added_under_state_dir(tmp_path: Path) -> None:
    resolved = resolve_jurisdictions(
        ObjectSettings(tmp_path, [JurisdictionSpec("eu", tmp_path / "eu")])
    )
    assert resolved.default.root == (tmp_path / "objects" / "default").resolve()
    assert resolved.default.display == "default"
    assert resolved.names() == "default, eu"


def start_and_stop(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        system = ObjectSystem(settings, SPECS)
        await system.start()
        await system.stop()

    asyncio.run(scenario())


def test_layout_is_recorded_and_a_changed_shard_count_refuses_to_start(tmp_path: Path) -> None:
    start_and_stop(make_settings(tmp_path))
    layout = json.loads((tmp_path / "eu" / "layout.json").read_text())
    assert layout["jurisdiction"] == "eu"
    assert layout["shards"] == 2
    assert sorted(p.name for p in (tmp_path / "eu").glob("shard-*.sqlite3")) == [
        "shard-00.sqlite3",
        "shard-01.sqlite3",
    ]
    changed = make_settings(
        tmp_path,
        jurisdictions=[
            JurisdictionSpec("", tmp_path / "objects" / "default", 2),
            JurisdictionSpec("eu", tmp_path / "eu", 3),
        ],
    )
    with pytest.raises(ObjectSettingsError, match="records 2 shards but 3 are configured"):
        start_and_stop(changed)


def test_a_root_cannot_change_jurisdiction(tmp_path: Path) -> None:
    start_and_stop(make_settings(tmp_path))
    moved = make_settings(
        tmp_path,
        jurisdictions=[
            JurisdictionSpec("", tmp_path / "objects" / "default", 2),
            JurisdictionSpec("us", tmp_path / "eu", 2),
        ],
    )
    with pytest.raises(ObjectSettingsError, match="holds jurisdiction eu"):
        start_and_stop(moved)


def test_shard_files_without_layout_refuse_to_start(tmp_path: Path) -> None:
    start_and_stop(make_settings(tmp_path))
    (tmp_path / "eu" / "layout.json").unlink()
    with pytest.raises(ObjectSettingsError, match=r"no layout\.json"):
        start_and_stop(make_settings(tmp_path))


def test_a_shard_file_moved_to_another_index_refuses_to_start(tmp_path: Path) -> None:
    start_and_stop(make_settings(tmp_path))
    root = tmp_path / "eu"
    (root / "shard-00.sqlite3").replace(root / "swap")
    (root / "shard-01.sqlite3").replace(root / "shard-00.sqlite3")
    (root / "swap").replace(root / "shard-01.sqlite3")
    with pytest.raises(ObjectSettingsError, match="created as shard 1 of jurisdiction eu"):
        start_and_stop(make_settings(tmp_path))


def test_secret_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "objects" / "secret"
    secret = load_or_create_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == secret == read_secret(path)
    assert not [p for p in path.parent.iterdir() if p.name != "secret"]
    path.write_bytes(b"short")
    with pytest.raises(ObjectSettingsError, match="has 5 bytes, expected 32"):
        read_secret(path)


def test_namespace_keys_differ_by_binding_and_scope() -> None:
    secret = bytes(32)
    keys = {
        namespace_key(secret, "A", "production"),
        namespace_key(secret, "A", "preview"),
        namespace_key(secret, "B", "production"),
        namespace_key(bytes(31) + b"\1", "A", "production"),
    }
    assert len(keys) == 4
