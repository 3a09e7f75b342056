"""The tables of a shard file, and every SQL statement run against them.

Rows are keyed by namespace identity (binding, scope) and the object's ID in hex, so
preview and production state never share a row even where IDs could coincide:

    meta          jurisdiction, tag, shard index and count the file was created for
    kv            (binding, scope, id, key) -> value as JSON text
    names         (binding, scope, id) -> the name of a named ID
    alarms        (binding, scope, id) -> when (epoch seconds)
    dead_letters  (binding, scope, id, scheduled) -> alarms that exhausted their retries
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from edgeproxy.exceptions import ObjectSettingsError

SCHEMA_VERSION = 1

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    binding TEXT NOT NULL, scope TEXT NOT NULL, id TEXT NOT NULL,
    key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (binding, scope, id, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names (
    binding TEXT NOT NULL, scope TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (binding, scope, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarms (
    binding TEXT NOT NULL, scope TEXT NOT NULL, id TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (binding, scope, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    binding TEXT NOT NULL, scope TEXT NOT NULL, id TEXT NOT NULL, scheduled REAL NOT NULL,
    failed_at REAL NOT NULL, retries INTEGER NOT NULL, error TEXT NOT NULL,
    PRIMARY KEY (binding, scope, id, scheduled)) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class DeadLetterRow:
    scheduled: float
    failed_at: float
    retries: int
    error: str


@dataclass
class WriteBatch:
    """One object's writes, committed in one transaction (with other objects' batches)."""

    binding: str
    scope: str
    raw_id: bytes
    cleared: bool = False
    writes: dict[str, str | None] = field(default_factory=dict)  # None deletes the key
    alarm_changed: bool = False
    alarm: float | None = None
    name: str | None = None
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    resolved_letters: list[float] = field(default_factory=list)  # their `scheduled`

    @property
    def empty(self) -> bool:
        return not (
            self.cleared
            or self.writes
            or self.alarm_changed
            or self.dead_letters
            or self.resolved_letters
        )


@dataclass(frozen=True)
class StoredObject:
    """What the shard holds for one object, loaded whole when it activates."""

    rows: dict[str, str]
    alarm: float | None
    name: str | None


def connect(path: Path) -> sqlite3.Connection:
    """A read-write connection: WAL, synchronous=FULL, transactions begun explicitly."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise ObjectSettingsError(f"shard {path}: could not enable WAL (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_TABLES)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that cannot write, for audits and offline inspection."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back if the body raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.OperationalError:
        return {}


def write_meta(conn: sqlite3.Connection, meta: dict[str, str]) -> None:
    with transaction(conn):
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            sorted(meta.items()),
        )


def load(conn: sqlite3.Connection, binding: str, scope: str, hex_id: str) -> StoredObject:
    where = (binding, scope, hex_id)
    rows = dict(
        conn.execute(
            "SELECT key, value FROM kv WHERE binding = ? AND scope = ? AND id = ?", where
        ).fetchall()
    )
    alarm = conn.execute(
        "SELECT at FROM alarms WHERE binding = ? AND scope = ? AND id = ?", where
    ).fetchone()
    name = conn.execute(
        "SELECT name FROM names WHERE binding = ? AND scope = ? AND id = ?", where
    ).fetchone()
    return StoredObject(rows, alarm[0] if alarm else None, name[0] if name else None)


def apply(conn: sqlite3.Connection, batch: WriteBatch) -> None:
    """Run one batch's statements inside the caller's transaction."""
    where = (batch.binding, batch.scope, batch.raw_id.hex())
    if batch.cleared:
        conn.execute("DELETE FROM kv WHERE binding = ? AND scope = ? AND id = ?", where)
    puts = [(*where, key, value) for key, value in batch.writes.items() if value is not None]
    deletes = [(*where, key) for key, value in batch.writes.items() if value is None]
    if deletes:
        conn.executemany(
            "DELETE FROM kv WHERE binding = ? AND scope = ? AND id = ? AND key = ?", deletes
        )
    if puts:
        conn.executemany(
            "INSERT INTO kv (binding, scope, id, key, value) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (binding, scope, id, key) DO UPDATE SET value = excluded.value",
            puts,
        )
    if batch.alarm_changed:
        if batch.alarm is None:
            conn.execute("DELETE FROM alarms WHERE binding = ? AND scope = ? AND id = ?", where)
        else:
            conn.execute(
                "INSERT INTO alarms (binding, scope, id, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (binding, scope, id) DO UPDATE SET at = excluded.at",
                (*where, batch.alarm),
            )
    if batch.name is not None:
        conn.execute(
            "INSERT OR IGNORE INTO names (binding, scope, id, name) VALUES (?, ?, ?, ?)",
            (*where, batch.name),
        )
    for letter in batch.dead_letters:
        conn.execute(
            "INSERT OR REPLACE INTO dead_letters "
            "(binding, scope, id, scheduled, failed_at, retries, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*where, letter.scheduled, letter.failed_at, letter.retries, letter.error),
        )
    for scheduled in batch.resolved_letters:
        conn.execute(
            "DELETE FROM dead_letters WHERE binding = ? AND scope = ? AND id = ? AND scheduled = ?",
            (*where, scheduled),
        )


def all_alarms(conn: sqlite3.Connection) -> list[tuple[str, str, str, float]]:
    """Every alarm in the shard as (binding, scope, id, at)."""
    return conn.execute("SELECT binding, scope, id, at FROM alarms").fetchall()


def object_summaries(conn: sqlite3.Connection) -> list[tuple[str, str, str, int, int, str | None]]:
    """Every object in the shard as (binding, scope, id, keys, bytes, name)."""
    return conn.execute(
        """
        WITH objects AS (
            SELECT binding, scope, id FROM kv UNION SELECT binding, scope, id FROM names
            UNION SELECT binding, scope, id FROM alarms
            UNION SELECT binding, scope, id FROM dead_letters
        ), sizes AS (
            SELECT binding, scope, id, count(*) AS keys,
                   sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))) AS bytes
            FROM kv GROUP BY binding, scope, id
        )
        SELECT o.binding, o.scope, o.id, coalesce(s.keys, 0), coalesce(s.bytes, 0), n.name
        FROM objects o
        LEFT JOIN sizes s USING (binding, scope, id)
        LEFT JOIN names n USING (binding, scope, id)
        ORDER BY o.binding, o.scope, o.id
        """
    ).fetchall()


def namespaces_of(conn: sqlite3.Connection, hex_id: str) -> list[tuple[str, str]]:
    """The namespace identities that hold rows for `hex_id` in this shard."""
    return conn.execute(
        """
        SELECT binding, scope FROM kv WHERE id = ? UNION SELECT binding, scope FROM names
        WHERE id = ? UNION SELECT binding, scope FROM alarms WHERE id = ?
        UNION SELECT binding, scope FROM dead_letters WHERE id = ?
        """,
        (hex_id, hex_id, hex_id, hex_id),
    ).fetchall()


def dead_letters(
    conn: sqlite3.Connection, binding: str | None
) -> list[tuple[str, str, str, float, float, int, str]]:
    """Dead letters as (binding, scope, id, scheduled, failed_at, retries, error)."""
    query = "SELECT binding, scope, id, scheduled, failed_at, retries, error FROM dead_letters"
    if binding is None:
        return conn.execute(query + " ORDER BY failed_at").fetchall()
    return conn.execute(query + " WHERE binding = ? ORDER BY failed_at", (binding,)).fetchall()


def all_ids(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
    """Every (table, binding, scope, id) that appears in the shard, for audits."""
    rows: list[tuple[str, str, str, str]] = []
    for table in ("kv", "names", "alarms", "dead_letters"):
        rows.extend(
            (table, binding, scope, hex_id)
            for binding, scope, hex_id in conn.execute(
                f"SELECT DISTINCT binding, scope, id FROM {table}"  # table names are fixed above
            )
        )
    return rows
