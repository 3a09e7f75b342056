"""Operations by ID string: online through the system, offline through ObjectStore."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgeproxy.exceptions import InvalidObjectId, ObjectNotFound
from edgeproxy.objects import ObjectStore
from tests.objects.sample import make_settings, running


def test_list_and_get_online_and_offline(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    async def scenario() -> tuple[str, str]:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            named = ns.get(ns.jurisdiction("eu").id_from_name("shop"))
            await named.put("b", [1])
            await named.put("a", "x")
            preview = system.namespace("COUNTER", "preview")
            unique = preview.get(preview.new_unique_id())
            await unique.increment()
            records = {r.id: r for r in await system.list_objects()}
            record = records[named.id.hex]
            assert (record.name, record.binding, record.scope) == ("shop", "COUNTER", "production")
            assert record.jurisdiction == "eu"
            assert record.jurisdiction_display == "eu"
            assert record.keys == 2
            assert record.bytes == len('b[1]a"x"')
            assert record.shard.startswith(str(tmp_path / "eu"))
            assert records[unique.id.hex].name is None
            assert [r.id for r in await system.list_objects(jurisdiction="eu")] == [record.id]
            assert len(await system.list_objects(jurisdiction="default")) == 1
            assert await system.list_objects(binding="FLAKY") == []
            found = await system.get_object(named.id.hex)
            assert found.values == {"a": "x", "b": [1]}
            assert list(found.values) == ["a", "b"]
            assert found.verified
            assert found.record.name == "shop"
            # A configured namespace's ID with nothing stored yet is empty, not missing.
            empty = await system.get_object(preview.id_from_name("nothing").hex)
            assert empty.values == {}
            assert empty.record.scope == "preview"
            return named.id.hex, unique.id.hex

    named_hex, unique_hex = asyncio.run(scenario())
    store = ObjectStore(settings)
    assert {r.id for r in store.list_objects()} == {named_hex, unique_hex}
    assert [r.id for r in store.list_objects(binding="COUNTER", jurisdiction="eu")] == [named_hex]
    detail = store.get_object(named_hex)
    assert detail.values == {"a": "x", "b": [1]}
    assert detail.record.name == "shop"
    assert store.get_object(unique_hex).record.scope == "preview"


def test_unknown_and_malformed_ids(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    async def scenario() -> None:
        async with running(settings) as system:
            missing = "01" + "00" * 31
            with pytest.raises(ObjectNotFound, match="no configured namespace"):
                await system.get_object(missing)
            with pytest.raises(ObjectNotFound):
                await system.run_alarm_now(missing)
            with pytest.raises(InvalidObjectId):
                await system.get_object("xyz")

    asyncio.run(scenario())
    store = ObjectStore(settings)
    with pytest.raises(ObjectNotFound, match="no stored object"):
        store.get_object("01" + "00" * 31)
    with pytest.raises(InvalidObjectId):
        store.get_object("XYZ")
    assert store.list_objects() == []
    assert store.dead_letters() == []
