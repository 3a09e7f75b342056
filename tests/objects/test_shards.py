"""Shard files: pragmas, group commit, and the shard's own refusal of foreign writes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from edgeproxy.exceptions import JurisdictionMismatch, ObjectError, ObjectSystemClosed
from edgeproxy.objects import schema
from edgeproxy.objects.ids import IdCodec, shard_index
from edgeproxy.objects.schema import WriteBatch
from edgeproxy.objects.settings import ObjectSettings, resolve_jurisdictions
from edgeproxy.objects.shards import Shard


def codec_and_shards(settings: ObjectSettings) -> tuple[IdCodec, dict[str, list[Shard]]]:
    jurisdictions = resolve_jurisdictions(settings)
    for jurisdiction in jurisdictions:
        jurisdiction.root.mkdir(parents=True, exist_ok=True)
    shards = {j.name: [Shard(j, i) for i in range(j.shards)] for j in jurisdictions}
    return IdCodec(bytes(32), jurisdictions, "T"), shards


def test_pragmas_group_commit_and_reads_after_writes(settings: ObjectSettings) -> None:
    codec, shards = codec_and_shards(settings)
    eu = resolve_jurisdictions(settings).by_name("eu")

    async def scenario() -> None:
        shard = shards["eu"][0]
        await shard.start()
        try:
            ids = [codec.named(str(n), eu) for n in range(400)]
            mine = [i for i in ids if shard_index(i.raw, eu.shards) == 0][:60]
            futures = [
                shard.submit(WriteBatch("T", "p", i.raw, writes={"k": str(n)}))
                for n, i in enumerate(mine)
            ]
            await asyncio.gather(*futures)
            assert 1 <= shard.commits < len(mine)  # batches shared transactions
            stored = await shard.call(lambda c: schema.load(c, "T", "p", mine[7].hex))
            assert stored.rows == {"k": "7"}
            sync = await shard.call(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
            assert sync == 2  # FULL
        finally:
            await shard.stop(grace=5.0)
            await shard.stop(grace=5.0)  # twice is fine
        with sqlite3.connect(shard.path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
        assert shard.path.parent == eu.root
        with pytest.raises(ObjectSystemClosed):
            shard.submit(WriteBatch("T", "p", mine[0].raw))

    asyncio.run(scenario())
    assert not [t for t in threading.enumerate() if t.name.startswith("edgeproxy-shard")]


def test_shard_refuses_ids_of_another_jurisdiction_or_shard(settings: ObjectSettings) -> None:
    codec, shards = codec_and_shards(settings)
    jurisdictions = resolve_jurisdictions(settings)

    async def scenario() -> None:
        shard = shards["eu"][0]
        await shard.start()
        try:
            default_id = codec.named("x", jurisdictions.default)
            with pytest.raises(JurisdictionMismatch, match="this shard holds only eu"):
                await shard.submit(WriteBatch("T", "p", default_id.raw, writes={"k": "1"}))
            eu = jurisdictions.by_name("eu")
            elsewhere = next(
                i
                for i in (codec.named(str(n), eu) for n in range(100))
                if shard_index(i.raw, eu.shards) != 0
            )
            with pytest.raises(ObjectError, match="belongs in shard 01"):
                await shard.submit(WriteBatch("T", "p", elsewhere.raw, writes={"k": "1"}))
            rows = await shard.call(lambda c: c.execute("SELECT count(*) FROM kv").fetchone()[0])
            assert rows == 0
        finally:
            await shard.stop(grace=5.0)

    asyncio.run(scenario())


def test_a_failing_transaction_fails_every_batch_in_it(
    settings: ObjectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec, shards = codec_and_shards(settings)
    eu = resolve_jurisdictions(settings).by_name("eu")

    def broken(conn: sqlite3.Connection, batch: WriteBatch) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    async def scenario() -> None:
        shard = shards["eu"][1]
        await shard.start()
        try:
            target = next(
                i
                for i in (codec.named(str(n), eu) for n in range(100))
                if shard_index(i.raw, eu.shards) == 1
            )
            monkeypatch.setattr(schema, "apply", broken)
            with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
                await shard.submit(WriteBatch("T", "p", target.raw, writes={"k": "1"}))
            monkeypatch.undo()
            await shard.submit(WriteBatch("T", "p", target.raw, writes={"k": "2"}))
            stored = await shard.call(lambda c: schema.load(c, "T", "p", target.hex))
            assert stored.rows == {"k": "2"}
        finally:
            await shard.stop(grace=5.0)

    asyncio.run(scenario())


def test_opening_a_bad_file_fails_start_without_leaking(tmp_path: Path) -> None:
    settings = ObjectSettings(tmp_path)
    jurisdictions = resolve_jurisdictions(settings)
    root = jurisdictions.default.root
    root.mkdir(parents=True)
    (root / "shard-00.sqlite3").write_bytes(b"not a database" * 100)

    async def scenario() -> None:
        shard = Shard(jurisdictions.default, 0)
        with pytest.raises(sqlite3.DatabaseError):
            await shard.start()

    asyncio.run(scenario())
    assert not [t for t in threading.enumerate() if t.name.startswith("edgeproxy-shard")]
