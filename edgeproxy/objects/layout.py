"""Where a jurisdiction's shards live, and the `layout.json` that pins their count.

    <root>/layout.json          {"jurisdiction": "eu", "tag": 1234, "shards": 4, "version": 1}
    <root>/shard-NN.sqlite3     NN = 00 .. shards-1

An object's shard is a hash of its ID modulo the shard count, so changing the count would
silently move objects; a root whose layout disagrees with the settings refuses to start.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from edgeproxy.exceptions import ObjectSettingsError
from edgeproxy.objects.keys import atomic_write
from edgeproxy.objects.settings import Jurisdiction, display_name

LAYOUT_FILE = "layout.json"
LAYOUT_VERSION = 1
SHARD_FILE = re.compile(r"^shard-(\d+)\.sqlite3$")
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class Layout:
    jurisdiction: str
    tag: int
    shards: int


def shard_path(root: Path, index: int) -> Path:
    return root / f"shard-{index:02d}.sqlite3"


def read_layout(root: Path) -> Layout | None:
    """The layout recorded in `root`, None if there is none; a damaged one is an error."""
    path = root / LAYOUT_FILE
    try:
        data = json.loads(path.read_text())
        return Layout(str(data["jurisdiction"]), int(data["tag"]), int(data["shards"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise ObjectSettingsError(f"{path} is damaged ({exc}); restore it from backup") from exc


def ensure_layout(jurisdiction: Jurisdiction) -> None:
    """Record the layout at first start; refuse to start if it changed since."""
    root = jurisdiction.root
    root.mkdir(parents=True, exist_ok=True)
    recorded = read_layout(root)
    if recorded is None:
        strays = shard_files(root)
        if strays:
            raise ObjectSettingsError(
                f"{root} holds shard files ({', '.join(p.name for p in strays)}) but no "
                f"{LAYOUT_FILE}; restore it rather than guess the shard count"
            )
        body = {
            "jurisdiction": jurisdiction.name,
            "tag": jurisdiction.tag,
            "shards": jurisdiction.shards,
            "version": LAYOUT_VERSION,
        }
        atomic_write(root / LAYOUT_FILE, (json.dumps(body, indent=2) + "\n").encode())
        return
    if recorded.jurisdiction != jurisdiction.name:
        raise ObjectSettingsError(
            f"{root} holds jurisdiction {display_name(recorded.jurisdiction)}, but is "
            f"configured as the root of {jurisdiction.display}; objects may not change "
            "jurisdiction"
        )
    if recorded.shards != jurisdiction.shards:
        raise ObjectSettingsError(
            f"jurisdiction {jurisdiction.display}: {root / LAYOUT_FILE} records "
            f"{recorded.shards} shards but {jurisdiction.shards} are configured; changing the "
            f"count would move objects between shards (configure {recorded.shards})"
        )


def shard_files(root: Path) -> list[Path]:
    """Every `shard-*.sqlite3` file in `root`, sorted."""
    if not root.is_dir():
        return []
    return sorted(path for path in root.iterdir() if SHARD_FILE.match(path.name))
