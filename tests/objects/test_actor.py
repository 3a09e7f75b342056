"""Live instances: one per object, input and output gates, resets, eviction, durability."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from edgeproxy.exceptions import (
    ObjectDeadlockError,
    ObjectResetError,
    ObjectSystemClosed,
)
from edgeproxy.objects import (
    DurableObject,
    DurableObjectState,
    NamespaceSpec,
    ObjectSettings,
    schema,
)
from edgeproxy.objects.schema import WriteBatch
from edgeproxy.objects.system import ObjectSystem
from tests.objects.sample import Counter, eventually, make_settings, running


def test_one_live_instance_and_no_lost_increments(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            object_id = ns.id_from_name("hits")
            stubs = [ns.get(object_id), ns.get(ns.id_from_string(object_id.hex))]
            results = await asyncio.gather(*(stubs[n % 2].increment() for n in range(64)))
            assert sorted(results) == list(range(1, 65))
            assert await stubs[0].read() == 64
            assert Counter.constructed == [object_id.hex]
            assert len(system.live_objects()) == 1

    asyncio.run(scenario())


def test_fetch_and_rpc_events_do_not_interleave_across_storage(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            stub = ns.get(ns.new_unique_id("eu"))
            calls = [stub.increment() if n % 2 else stub.fetch("http://o/") for n in range(64)]
            await asyncio.gather(*calls)
            assert await stub.read() == 64

    asyncio.run(scenario())


def test_fetch_delivers_a_fresh_request(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            stub = ns.get(ns.id_from_name("f"))
            response = await stub.fetch(
                "https://example.test/a/b?q=1",
                method="post",
                headers={"X-Test": "yes"},
                body="hello",
            )
            assert response.status_code == 200
            assert response.body == (
                b'{"method":"POST","path":"/a/b","query":"q=1","header":"yes",'
                b'"body":"hello","value":1}'
            )
            chunks = [{"type": "http.request", "body": b"from-client", "more_body": False}]

            async def receive() -> dict[str, Any]:
                return chunks.pop(0)

            original = Request(
                {
                    "type": "http",
                    "method": "PUT",
                    "path": "/x",
                    "raw_path": b"/x",
                    "query_string": b"",
                    "headers": [(b"host", b"h"), (b"x-test", b"copied")],
                    "scheme": "http",
                    "server": ("h", 80),
                    "state": {"shared": "no"},
                },
                receive,
            )
            copied = await stub.fetch(original)
            assert b'"method":"PUT"' in copied.body
            assert b'"body":"from-client"' in copied.body
            assert b'"header":"copied"' in copied.body
            assert await original.body() == b"from-client"  # the caller can still read it

    asyncio.run(scenario())


def test_rpc_copies_values_and_translates_errors(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        async with running(settings, env={"who": "env"}) as system:
            ns = system.namespace("COUNTER")
            stub = ns.get(ns.id_from_name("rpc"))
            mine = ["caller"]
            assert await stub.mutate(mine) == ["caller", "object"]
            assert mine == ["caller"]
            assert await stub.whoami() == {
                "id": stub.id.hex,
                "name": "rpc",
                "env": {"who": "env"},
            }
            with pytest.raises(ValueError, match=r"^bad value$"):
                await stub.fail("value", "bad value")
            with pytest.raises(KeyError) as key_error:
                await stub.fail("key", "k")
            assert key_error.value.args == ("k",)
            with pytest.raises(Exception, match="CustomError: custom") as remote:
                await stub.fail("custom", "custom")
            assert getattr(remote.value, "remote_type", "").endswith("sample.CustomError")
            with pytest.raises(TypeError, match="argument of echo"):
                await stub.echo({1, 2})
            with pytest.raises(TypeError, match=r"result of bad_result\(\)"):
                await stub.bad_result()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("_private", "is private", id="private"),
        pytest.param("missing", "has no method 'missing'", id="missing"),
        pytest.param("not_async", "not an async method", id="sync-method"),
        pytest.param("alarm", "not callable by RPC", id="alarm"),
    ],
)
def test_rpc_refuses_names_that_are_not_public_async_methods(
    settings: ObjectSettings, name: str, message: str
) -> None:
    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            stub = ns.get(ns.id_from_name("x"))
            with pytest.raises(AttributeError, match=message):
                getattr(stub, name)()

    asyncio.run(scenario())


def test_output_gate_holds_results_until_durable(
    settings: ObjectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real_apply = schema.apply

    def slow_apply(conn: sqlite3.Connection, batch: WriteBatch) -> None:
        gate.wait(5.0)
        real_apply(conn, batch)

    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            stub = ns.get(ns.id_from_name("gated"))
            await stub.read()  # activate first: the load must not wait for the gate
            monkeypatch.setattr(schema, "apply", slow_apply)
            call = asyncio.ensure_future(stub.increment())
            await asyncio.sleep(0.05)
            assert not call.done()  # the write is not durable, so the result is held
            gate.set()
            assert await call == 1

    asyncio.run(scenario())


def test_a_failed_commit_resets_the_object(
    settings: ObjectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(conn: sqlite3.Connection, batch: WriteBatch) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            stub = ns.get(ns.id_from_name("r"))
            assert await stub.increment() == 1
            monkeypatch.setattr(schema, "apply", broken)
            results = await asyncio.gather(
                stub.increment(), stub.increment(), return_exceptions=True
            )
            assert all(isinstance(r, ObjectResetError) for r in results)
            assert "disk I/O error" in str(results[0])
            monkeypatch.undo()
            assert system.live_objects() == []
            assert await stub.increment() == 2  # rebuilt from storage: the failed write is gone
            assert len(Counter.constructed) == 2

    asyncio.run(scenario())


class Migrating(DurableObject):
    started: list[str] = []
    fail = False

    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        super().__init__(ctx, env)
        ctx.block_concurrency_while(self.migrate())

    async def migrate(self) -> None:
        Migrating.started.append("migrate-start")
        await asyncio.sleep(0.01)  # other events would interleave here without the gate
        if Migrating.fail:
            Migrating.fail = False
            raise RuntimeError("migration failed")
        await self.ctx.storage.put("schema", 2)
        Migrating.started.append("migrate-end")

    async def version(self) -> int:
        Migrating.started.append("event")
        value: int = await self.ctx.storage.get("schema")
        return value

    async def call_self(self) -> int:
        stub = self.env.get(self.ctx.id)
        return await self.ctx.block_concurrency_while(stub.version())


def test_block_concurrency_while_in_constructor_runs_before_events(tmp_path: Path) -> None:
    Migrating.started = []

    async def scenario() -> None:
        system = ObjectSystem(make_settings(tmp_path), [NamespaceSpec("M", Migrating)])
        await system.start()
        try:
            ns = system.namespace("M")
            system.namespace("M", env=ns)
            stub = ns.get(ns.id_from_name("m"))
            assert list(await asyncio.gather(stub.version(), stub.version())) == [2, 2]
            assert Migrating.started == ["migrate-start", "migrate-end", "event", "event"]
            # The callback failed with the deadlock error, which resets the object.
            with pytest.raises(ObjectResetError, match="sent an event to itself"):
                await stub.call_self()
        finally:
            await system.stop()

    asyncio.run(scenario())


def test_a_failing_block_concurrency_while_resets_the_object(tmp_path: Path) -> None:
    Migrating.started = []
    Migrating.fail = True

    async def scenario() -> None:
        system = ObjectSystem(make_settings(tmp_path), [NamespaceSpec("M", Migrating)])
        await system.start()
        try:
            ns = system.namespace("M")
            stub = ns.get(ns.id_from_name("m"))
            with pytest.raises(ObjectResetError, match="migration failed"):
                await stub.version()
            assert await stub.version() == 2
        finally:
            await system.stop()

    asyncio.run(scenario())


def test_self_rpc_works_and_self_rpc_inside_a_transaction_is_a_deadlock_error(
    settings: ObjectSettings,
) -> None:
    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            system.namespace("COUNTER", env={"COUNTER": ns})
            stub = ns.get(ns.id_from_name("self"))
            assert await stub.call_self() == 1  # no deadlock: the gate is open
            with pytest.raises(ObjectDeadlockError):
                await stub.call_self_in_transaction()
            assert await stub.increment() == 2  # the transaction rolled back; all is usable

    asyncio.run(scenario())


def test_idle_objects_are_evicted_and_rebuilt_from_storage(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, idle_timeout=0.05)

    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            stub = ns.get(ns.id_from_name("idle"))
            assert await stub.increment() == 1
            await eventually(lambda: not system.live_objects())
            assert await stub.increment() == 2
            assert len(Counter.constructed) == 2

    asyncio.run(scenario())


def test_scopes_are_isolated(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        async with running(settings) as system:
            production = system.namespace("COUNTER")
            preview = system.namespace("COUNTER", "preview", env="preview-env")
            await production.get(production.id_from_name("x")).increment(10)
            preview_stub = preview.get(preview.id_from_name("x"))
            assert await preview_stub.increment() == 1
            assert (await preview_stub.whoami())["env"] == "preview-env"
            records = await system.list_objects(binding="COUNTER")
            assert sorted(r.scope for r in records) == ["preview", "production"]

    asyncio.run(scenario())


def test_data_survives_a_restart_and_stop_leaks_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    async def first() -> str:
        async with running(settings) as system:
            ns = system.namespace("COUNTER").jurisdiction("eu")
            stub = ns.get(ns.id_from_name("durable"))
            await stub.put("doc", {"a": [1, 2]})
            await stub.increment(5)
            return stub.id.hex

    async def second(hex_id: str) -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            stub = ns.get(ns.id_from_string(hex_id))
            assert await stub.everything() == {"doc": {"a": [1, 2]}, "n": 5}
            assert (await stub.whoami())["name"] == "durable"  # from the stored record
            await system.stop()
            with pytest.raises(ObjectSystemClosed):
                await stub.increment()

    hex_id = asyncio.run(first())
    asyncio.run(second(hex_id))
    assert not [t for t in threading.enumerate() if t.name.startswith("edgeproxy-shard")]
    assert all((tmp_path / "eu").glob("shard-*.sqlite3"))


class Broken(DurableObject):
    attempts = 0

    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        super().__init__(ctx, env)
        Broken.attempts += 1
        if Broken.attempts == 1:
            raise LookupError("constructor failed")

    async def ping(self) -> str:
        return "pong"


def test_a_failing_constructor_reaches_the_caller_and_is_retried(tmp_path: Path) -> None:
    async def scenario() -> None:
        system = ObjectSystem(make_settings(tmp_path), [NamespaceSpec("B", Broken)])
        await system.start()
        try:
            ns = system.namespace("B")
            stub = ns.get(ns.new_unique_id())
            with pytest.raises(LookupError, match="constructor failed"):
                await stub.ping()
            assert await stub.ping() == "pong"
            with pytest.raises(NotImplementedError, match="does not implement fetch"):
                await stub.fetch("http://x/")
        finally:
            await system.stop()

    asyncio.run(scenario())
