"""Read-only views of stored objects, for operators: list, inspect, dead letters.

`ObjectStore` reads the shard files directly (read-only connections), so the CLI can
inspect state without starting any object and while a server is running. The running
system answers the same questions with the same functions on its shard threads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edgeproxy.exceptions import ObjectNotFound
from edgeproxy.objects import schema, values
from edgeproxy.objects.ids import decode_id, mac_verifies, shard_index, tag_of
from edgeproxy.objects.keys import namespace_key, read_secret
from edgeproxy.objects.layout import shard_path
from edgeproxy.objects.settings import (
    Jurisdiction,
    Jurisdictions,
    ObjectSettings,
    display_name,
    resolve_jurisdictions,
)


@dataclass(frozen=True)
class ObjectRecord:
    """One stored object: where it lives and how much it holds."""

    id: str
    name: str | None
    binding: str
    scope: str
    jurisdiction: str
    keys: int
    bytes: int
    shard: str  # path of the shard file

    @property
    def jurisdiction_display(self) -> str:
        return display_name(self.jurisdiction)


@dataclass(frozen=True)
class ObjectDetail:
    """A stored object's record, its keys and values (in key order) and its alarm."""

    record: ObjectRecord
    values: dict[str, Any]
    alarm: float | None
    verified: bool  # False when the server secret was not available to check the MAC


@dataclass(frozen=True)
class DeadLetter:
    """An alarm that exhausted its retries."""

    id: str
    binding: str
    scope: str
    jurisdiction: str
    scheduled: float
    failed_at: float
    retries: int
    error: str
    shard: str


def locate(jurisdictions: Jurisdictions, id_hex: str) -> tuple[Jurisdiction, int]:
    """The jurisdiction and shard index an ID string belongs to (form checked, MAC not)."""
    raw = decode_id(id_hex)
    jurisdiction = jurisdictions.by_tag(tag_of(raw))
    if jurisdiction is None:
        raise ObjectNotFound(
            f"object {id_hex[:12]}… is of jurisdiction tag 0x{tag_of(raw):04x}, which is not "
            f"configured (configured: {jurisdictions.names()})"
        )
    return jurisdiction, shard_index(raw, jurisdiction.shards)


def records(
    conn: sqlite3.Connection, jurisdiction: Jurisdiction, index: int, binding: str | None
) -> list[ObjectRecord]:
    shard = str(shard_path(jurisdiction.root, index))
    return [
        ObjectRecord(hex_id, name, row_binding, scope, jurisdiction.name, keys, size, shard)
        for row_binding, scope, hex_id, keys, size, name in schema.object_summaries(conn)
        if binding is None or row_binding == binding
    ]


def letters(
    conn: sqlite3.Connection, jurisdiction: Jurisdiction, index: int, binding: str | None
) -> list[DeadLetter]:
    shard = str(shard_path(jurisdiction.root, index))
    return [
        DeadLetter(hex_id, row_binding, scope, jurisdiction.name, at, failed, retries, error, shard)
        for row_binding, scope, hex_id, at, failed, retries, error in schema.dead_letters(
            conn, binding
        )
    ]


def detail(
    conn: sqlite3.Connection,
    jurisdiction: Jurisdiction,
    index: int,
    id_hex: str,
    secret: bytes | None,
) -> ObjectDetail | None:
    """The stored object `id_hex`, found by whichever stored namespace's key verifies it."""
    raw = bytes.fromhex(id_hex)
    for binding, scope in schema.namespaces_of(conn, id_hex):
        verified = secret is not None
        if secret is not None and not mac_verifies(namespace_key(secret, binding, scope), raw):
            continue  # rows that do not verify are the audit's business, not an answer
        stored = schema.load(conn, binding, scope, id_hex)
        size = sum(len(k.encode()) + len(v.encode()) for k, v in stored.rows.items())
        record = ObjectRecord(
            id_hex,
            stored.name,
            binding,
            scope,
            jurisdiction.name,
            len(stored.rows),
            size,
            str(shard_path(jurisdiction.root, index)),
        )
        entries = {key: values.decode(stored.rows[key]) for key in sorted(stored.rows)}
        return ObjectDetail(record, entries, stored.alarm, verified)
    return None


class ObjectStore:
    """Offline, read-only access to the objects stored under `settings`."""

    def __init__(self, settings: ObjectSettings) -> None:
        self.jurisdictions = resolve_jurisdictions(settings)
        self.secret = read_secret(settings.secret_path)

    def list_objects(
        self, binding: str | None = None, jurisdiction: str | None = None
    ) -> list[ObjectRecord]:
        found: list[ObjectRecord] = []
        for place, index, conn in self._shards(jurisdiction):
            found.extend(records(conn, place, index, binding))
        return found

    def get_object(self, id_hex: str) -> ObjectDetail:
        place, index = locate(self.jurisdictions, id_hex)
        for _, _, conn in self._shards(place.name, only=index):
            found = detail(conn, place, index, id_hex, self.secret)
            if found is not None:
                return found
        raise ObjectNotFound(f"no stored object has ID {id_hex[:12]}…")

    def dead_letters(self, binding: str | None = None) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        for place, index, conn in self._shards(None):
            found.extend(letters(conn, place, index, binding))
        return sorted(found, key=lambda letter: letter.failed_at)

    def _shards(
        self, jurisdiction: str | None, only: int | None = None
    ) -> Iterator[tuple[Jurisdiction, int, sqlite3.Connection]]:
        places = list(self.jurisdictions)
        if jurisdiction is not None:
            name = "" if jurisdiction == "default" else jurisdiction
            places = [self.jurisdictions.by_name(name)]
        for place in places:
            for index in range(place.shards):
                if only is not None and index != only:
                    continue
                path = shard_path(place.root, index)
                if not path.exists():
                    continue
                conn = schema.connect_readonly(path)
                try:
                    yield place, index, conn
                finally:
                    conn.close()
