"""The object system: shards, namespaces, live actors, alarms and idle eviction, together.

    system = ObjectSystem(settings, [NamespaceSpec("COUNTER", Counter)])
    await system.start()
    counter = system.namespace("COUNTER", scope="production")
    await counter.get(counter.id_from_name("visits")).increment()
    await system.stop()

It keeps one actor per (binding, scope, ID): the registry is only touched on the event
loop, so two events can never build two instances. Operations for the CLI and admin API
(list, inspect, evict, run an alarm, dead letters) work by ID string across namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from edgeproxy.exceptions import (
    EdgeError,
    ObjectError,
    ObjectNotFound,
    ObjectSettingsError,
    ObjectSystemClosed,
    UnknownNamespace,
)
from edgeproxy.objects import layout, schema, store
from edgeproxy.objects.actor import Actor
from edgeproxy.objects.alarms import AlarmKey, AlarmScheduler
from edgeproxy.objects.api import AlarmInfo
from edgeproxy.objects.ids import IdCodec, ObjectId, decode_id, mac_verifies, shard_index, tag_of
from edgeproxy.objects.keys import load_or_create_secret, namespace_key
from edgeproxy.objects.namespace import Namespace, NamespaceRuntime
from edgeproxy.objects.schema import DeadLetterRow
from edgeproxy.objects.settings import (
    Jurisdictions,
    NamespaceSpec,
    ObjectSettings,
    check_binding,
    resolve_jurisdictions,
)
from edgeproxy.objects.shards import Shard
from edgeproxy.objects.store import DeadLetter, ObjectDetail, ObjectRecord

logger = logging.getLogger("edgeproxy.objects")

PRODUCTION = "production"


class ObjectSystem:
    """All durable objects of one process. `env` is passed to object constructors of
    namespaces that were not given their own; `clock` gives epoch seconds (for alarms)."""

    def __init__(
        self,
        settings: ObjectSettings,
        namespaces: Sequence[NamespaceSpec] = (),
        *,
        env: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._specs: dict[str, NamespaceSpec] = {}
        for spec in namespaces:
            check_binding(spec.binding)
            if spec.binding in self._specs:
                raise ObjectSettingsError(f"namespace binding {spec.binding!r} is defined twice")
            self._specs[spec.binding] = spec
        self._env = env
        self._clock = clock
        self._jurisdictions: Jurisdictions | None = None
        self._secret = b""
        self._shards: dict[tuple[str, int], Shard] = {}
        self._runtimes: dict[tuple[str, str], NamespaceRuntime] = {}
        self._actors: dict[tuple[str, str, bytes], Actor] = {}
        self._scheduler: AlarmScheduler | None = None
        self._stop = asyncio.Event()
        self._evictor: asyncio.Task[None] | None = None
        self._running = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the layout, open every shard, load stored alarms, start the background
        work. Raises ObjectSettingsError if the settings or the files disagree."""
        if self._running:
            return
        jurisdictions = resolve_jurisdictions(self.settings)
        for jurisdiction in jurisdictions:
            layout.ensure_layout(jurisdiction)
        self._secret = load_or_create_secret(self.settings.secret_path)
        self._jurisdictions = jurisdictions
        try:
            for jurisdiction in jurisdictions:
                for index in range(jurisdiction.shards):
                    shard = Shard(jurisdiction, index)
                    await shard.start()
                    self._shards[(jurisdiction.name, index)] = shard
        except BaseException:
            await self._close_shards(grace=5.0)
            raise
        self._running = True
        self._stop = asyncio.Event()
        self._scheduler = AlarmScheduler(
            self._fire_alarm,
            self._dead_letter,
            clock=self._clock,
            retry_base=self.settings.alarm_retry_base,
            max_retries=self.settings.alarm_max_retries,
        )
        await self._load_alarms(self._scheduler)
        self._scheduler.start()
        self._evictor = asyncio.get_running_loop().create_task(self._evict_idle())

    async def stop(self, grace: float = 10.0) -> None:
        """Refuse new events, let running ones finish and every write commit (within
        `grace` seconds), then close the shards. Calling it again does nothing."""
        if not self._running:
            return
        self._running = False
        self._stop.set()
        if self._evictor is not None:
            await self._evictor
            self._evictor = None
        if self._scheduler is not None:
            await self._scheduler.stop(grace)
        deadline = time.monotonic() + grace
        # Polled: shutdown is rare, and actors have no "became idle" signal to wait on.
        while self._busy_actors() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        for actor in list(self._actors.values()):
            if actor.busy:
                logger.warning("object %s still busy at shutdown", actor.label)
            actor.evict()
        await self._close_shards(max(0.1, deadline - time.monotonic()))

    def _busy_actors(self) -> bool:
        return any(actor.busy for actor in self._actors.values())

    async def _close_shards(self, grace: float) -> None:
        shards, self._shards = list(self._shards.values()), {}
        for shard in shards:
            await shard.stop(grace)

    @property
    def running(self) -> bool:
        return self._running

    # -- namespaces and actors -------------------------------------------------------------

    def namespace(self, binding: str, scope: str = PRODUCTION, env: Any = None) -> Namespace:
        """The namespace `binding` in `scope`; scopes never share IDs or storage. A given
        `env` is used for instances constructed from then on."""
        runtime = self._runtime(binding, scope)
        if env is not None:
            runtime.env = env
        return Namespace(runtime)

    def _runtime(self, binding: str, scope: str) -> NamespaceRuntime:
        runtime = self._runtimes.get((binding, scope))
        if runtime is not None:
            return runtime
        if self._jurisdictions is None:
            raise ObjectSystemClosed("the object system is not started")
        spec = self._specs.get(binding)
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            raise UnknownNamespace(f"namespace {binding!r} is not configured (known: {known})")
        if not isinstance(scope, str) or not scope:
            raise UnknownNamespace(f"namespace scope must be a non-empty str, got {scope!r}")
        key = namespace_key(self._secret, binding, scope)
        codec = IdCodec(key, self._jurisdictions, f"{binding} ({scope})")
        runtime = NamespaceRuntime(
            binding, scope, spec.cls, self._env, codec, self._jurisdictions, self
        )
        self._runtimes[(binding, scope)] = runtime
        return runtime

    def actor_for(self, runtime: NamespaceRuntime, object_id: ObjectId) -> Actor:
        """The live actor of `object_id`, created if there is none (Dispatcher)."""
        if not self._running:
            raise ObjectSystemClosed("the object system is not running")
        key = (runtime.binding, runtime.scope, object_id.raw)
        actor = self._actors.get(key)
        if actor is None:
            actor = Actor(
                binding=runtime.binding,
                scope=runtime.scope,
                cls=runtime.cls,
                env=runtime.env,
                object_id=object_id,
                shard=self._shard_for(object_id.raw),
                listener=self,
            )
            self._actors[key] = actor
        return actor

    def _shard_for(self, raw: bytes) -> Shard:
        # Placement: the ID's own tag picks the jurisdiction, so its rows can only go to
        # shards under that jurisdiction's root (the shard re-checks the tag on write).
        assert self._jurisdictions is not None
        jurisdiction = self._jurisdictions.by_tag(tag_of(raw))
        if jurisdiction is None:
            raise ObjectNotFound(f"object {raw.hex()[:12]}… has an unconfigured jurisdiction")
        return self._shards[(jurisdiction.name, shard_index(raw, jurisdiction.shards))]

    def live_objects(self) -> list[Actor]:
        return list(self._actors.values())

    def actor_closed(self, actor: Actor) -> None:
        if self._actors.get(actor.key) is actor:
            del self._actors[actor.key]

    def alarm_committed(self, actor: Actor, at: float | None) -> None:
        if self._scheduler is not None:
            self._scheduler.set((actor.binding, actor.scope, actor.object_id.hex), at)

    # -- background work -------------------------------------------------------------------

    async def _evict_idle(self) -> None:
        idle = self.settings.idle_timeout
        interval = min(max(idle / 4, 0.005), 1.0)
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            now = time.monotonic()
            for actor in list(self._actors.values()):
                if not actor.busy and now - actor.last_active >= idle:
                    actor.evict()

    async def _load_alarms(self, scheduler: AlarmScheduler) -> None:
        for shard in self._shards.values():
            for binding, scope, hex_id, at in await shard.call(schema.all_alarms):
                if binding not in self._specs:
                    logger.warning("alarm of unconfigured namespace %s left unscheduled", binding)
                    continue
                scheduler.set((binding, scope, hex_id), at)

    async def _fire_alarm(self, key: AlarmKey, info: AlarmInfo) -> None:
        binding, scope, hex_id = key
        try:
            runtime = self._runtime(binding, scope)
            object_id = runtime.codec.parse(hex_id)
        except EdgeError as exc:  # stored data the config no longer accepts: not retried
            logger.error("alarm of %s/%s dropped: %s", binding, hex_id[:12], exc)
            return
        await self.actor_for(runtime, object_id).run_alarm(info)

    async def _dead_letter(self, key: AlarmKey, letter: DeadLetterRow) -> None:
        binding, scope, hex_id = key
        runtime = self._runtime(binding, scope)
        await self.actor_for(runtime, runtime.codec.parse(hex_id)).dead_letter(letter)

    # -- operations ------------------------------------------------------------------------

    async def list_objects(
        self, binding: str | None = None, jurisdiction: str | None = None
    ) -> list[ObjectRecord]:
        """Every stored object (durable state), optionally of one binding or jurisdiction."""
        found: list[ObjectRecord] = []
        for (_, index), shard in self._open_shards(jurisdiction):
            read = functools.partial(
                store.records, jurisdiction=shard.jurisdiction, index=index, binding=binding
            )
            found.extend(await shard.call(read))
        return found

    async def get_object(self, id_hex: str) -> ObjectDetail:
        """A stored object's keys and values, whichever namespace it belongs to."""
        jurisdictions = self._require_jurisdictions()
        place, index = store.locate(jurisdictions, id_hex)
        shard = self._shards[(place.name, index)]
        found = await shard.call(
            functools.partial(
                store.detail, jurisdiction=place, index=index, id_hex=id_hex, secret=self._secret
            )
        )
        if found is not None:
            return found
        runtime, _ = await self._resolve(id_hex)
        empty = ObjectRecord(
            id_hex, None, runtime.binding, runtime.scope, place.name, 0, 0, str(shard.path)
        )
        return ObjectDetail(empty, {}, None, True)

    async def evict(self, id_hex: str, grace: float = 10.0) -> bool:
        """Drop the live instance of `id_hex` between two of its events, once its writes
        are durable; False if it has none. An instance still busy after `grace` seconds
        is left live (ObjectError)."""
        raw = decode_id(id_hex)
        for actor in list(self._actors.values()):
            if actor.object_id.raw != raw:
                continue
            # Dropped mid-event, the running event would lose its storage and the next
            # event would build a second instance beside it. Polled, as in stop().
            deadline = time.monotonic() + grace
            while actor.busy and actor.closed is None:
                if time.monotonic() >= deadline:
                    raise ObjectError(f"object {actor.label} was busy for {grace:g}s; not evicted")
                await asyncio.sleep(0.01)
            actor.evict()
            return True
        return False

    async def run_alarm_now(self, id_hex: str) -> None:
        """Run the object's alarm handler now, once; its errors propagate (no retries)."""
        runtime, object_id = await self._resolve(id_hex)
        await self.actor_for(runtime, object_id).run_alarm(AlarmInfo(retry_count=0))

    async def dead_letters(self, binding: str | None = None) -> list[DeadLetter]:
        """Alarms that exhausted their retries, oldest failure first."""
        found: list[DeadLetter] = []
        for (_, index), shard in self._open_shards(None):
            read = functools.partial(
                store.letters, jurisdiction=shard.jurisdiction, index=index, binding=binding
            )
            found.extend(await shard.call(read))
        return sorted(found, key=lambda letter: letter.failed_at)

    async def replay_dead_letter(self, id_hex: str) -> int:
        """Re-run every dead-lettered alarm of `id_hex` once now, removing each that
        succeeds; a failure propagates and leaves its letter. Returns how many ran."""
        runtime, object_id = await self._resolve(id_hex)
        pending = [
            letter
            for letter in await self.dead_letters(runtime.binding)
            if letter.id == id_hex and letter.scope == runtime.scope
        ]
        for letter in pending:
            row = DeadLetterRow(letter.scheduled, letter.failed_at, letter.retries, letter.error)
            await self.actor_for(runtime, object_id).replay(row)
        return len(pending)

    async def _resolve(self, id_hex: str) -> tuple[NamespaceRuntime, ObjectId]:
        """The namespace that made `id_hex`: a live one, or one its stored rows name."""
        raw = decode_id(id_hex)
        for runtime in list(self._runtimes.values()):
            if runtime.codec.verifies(raw):
                return runtime, runtime.codec.parse(id_hex)
        jurisdictions = self._require_jurisdictions()
        place, index = store.locate(jurisdictions, id_hex)
        shard = self._shards[(place.name, index)]
        for binding, scope in await shard.call(
            functools.partial(schema.namespaces_of, hex_id=id_hex)
        ):
            if binding in self._specs and mac_verifies(
                namespace_key(self._secret, binding, scope), raw
            ):
                runtime = self._runtime(binding, scope)
                return runtime, runtime.codec.parse(id_hex)
        raise ObjectNotFound(f"no configured namespace made object ID {id_hex[:12]}…")

    def _require_jurisdictions(self) -> Jurisdictions:
        if not self._running or self._jurisdictions is None:
            raise ObjectSystemClosed("the object system is not running")
        return self._jurisdictions

    def _open_shards(self, jurisdiction: str | None) -> list[tuple[tuple[str, int], Shard]]:
        jurisdictions = self._require_jurisdictions()
        if jurisdiction is None:
            return list(self._shards.items())
        name = jurisdictions.by_name("" if jurisdiction == "default" else jurisdiction).name
        return [(key, shard) for key, shard in self._shards.items() if key[0] == name]
