"""Namespaces, their jurisdiction-pinned views, and stubs.

A namespace is a class bound to a name (`binding`) within a `scope` ("production", or a
preview's own scope): its identity is (binding, scope), and its key signs every ID it
makes. `ns.jurisdiction("eu")` is a view whose IDs are all eu IDs and which refuses IDs
of any other jurisdiction. `ns.get(id)` returns a stub; every call through the stub is an
event delivered to the object's one live instance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from edgeproxy.exceptions import JurisdictionMismatch, ObjectValueError
from edgeproxy.objects import rpc
from edgeproxy.objects.actor import Actor
from edgeproxy.objects.api import DurableObject
from edgeproxy.objects.ids import IdCodec, ObjectId
from edgeproxy.objects.settings import Jurisdictions, display_name

T = TypeVar("T")


class Dispatcher(Protocol):
    """The system side of a namespace: finds (or starts) the live actor of an object."""

    def actor_for(self, runtime: NamespaceRuntime, object_id: ObjectId) -> Actor: ...


class NamespaceRuntime:
    """Everything the system keeps per namespace identity (binding, scope)."""

    def __init__(
        self,
        binding: str,
        scope: str,
        cls: type[DurableObject],
        env: Any,
        codec: IdCodec,
        jurisdictions: Jurisdictions,
        dispatcher: Dispatcher,
    ) -> None:
        self.binding = binding
        self.scope = scope
        self.cls = cls
        self.env = env
        self.codec = codec
        self.jurisdictions = jurisdictions
        self.dispatcher = dispatcher

    @property
    def identity(self) -> tuple[str, str]:
        return (self.binding, self.scope)


class Namespace:
    """A durable-object namespace, or its view pinned to one jurisdiction."""

    def __init__(self, runtime: NamespaceRuntime, jurisdiction: str | None = None) -> None:
        self._runtime = runtime
        self._pinned = jurisdiction

    @property
    def binding(self) -> str:
        return self._runtime.binding

    @property
    def scope(self) -> str:
        return self._runtime.scope

    @property
    def pinned_jurisdiction(self) -> str | None:
        """The jurisdiction this view is pinned to, None for the unrestricted namespace."""
        return self._pinned

    def jurisdiction(self, name: str) -> Namespace:
        """A view whose IDs are all of jurisdiction `name` (e.g. "eu")."""
        self._runtime.jurisdictions.by_name(name)
        if self._pinned is not None and self._pinned != name:
            raise JurisdictionMismatch(
                f"namespace {self.binding} is already pinned to jurisdiction "
                f"{display_name(self._pinned)}; it has no {display_name(name)} view"
            )
        return Namespace(self._runtime, name)

    def new_unique_id(self, jurisdiction: str | None = None) -> ObjectId:
        """A new random ID, in `jurisdiction` (or this view's, or the default one)."""
        name = self._jurisdiction_for(jurisdiction)
        return self._runtime.codec.unique(self._runtime.jurisdictions.by_name(name))

    def id_from_name(self, name: str) -> ObjectId:
        """The ID `name` always maps to in this namespace (and this view's jurisdiction)."""
        target = self._runtime.jurisdictions.by_name(self._jurisdiction_for(None))
        return self._runtime.codec.named(name, target)

    def id_from_string(self, text: str) -> ObjectId:
        """Parse an ID's string; it must have been made by this namespace (and view)."""
        return self._pinned_check(self._runtime.codec.parse(text))

    def get(self, object_id: ObjectId) -> Stub:
        """The stub that delivers events to `object_id`'s one live instance."""
        return Stub(self._runtime, self._pinned_check(self._runtime.codec.check(object_id)))

    def _jurisdiction_for(self, requested: str | None) -> str:
        if self._pinned is None:
            return requested or ""
        if requested is not None and requested != self._pinned:
            raise JurisdictionMismatch(
                f"namespace {self.binding} is pinned to jurisdiction "
                f"{display_name(self._pinned)}; it cannot make {display_name(requested)} IDs"
            )
        return self._pinned

    def _pinned_check(self, object_id: ObjectId) -> ObjectId:
        if self._pinned is not None and object_id.jurisdiction != self._pinned:
            raise JurisdictionMismatch(
                f"object ID {object_id.hex[:12]}… is of jurisdiction "
                f"{display_name(object_id.jurisdiction)}; this namespace view accepts only "
                f"{display_name(self._pinned)} IDs"
            )
        return object_id

    def __repr__(self) -> str:
        view = f", jurisdiction={display_name(self._pinned)}" if self._pinned is not None else ""
        return f"Namespace({self.binding!r}, scope={self.scope!r}{view})"


class Stub:
    """Sends events to one object: `await stub.fetch(...)`, or `await stub.method(...)`
    for any public async method of the object's class."""

    __slots__ = ("_runtime", "id")

    def __init__(self, runtime: NamespaceRuntime, object_id: ObjectId) -> None:
        self._runtime = runtime
        self.id = object_id

    @property
    def name(self) -> str | None:
        return self.id.name

    async def fetch(
        self,
        request: Request | str,
        *,
        method: str | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        body: bytes | str | None = None,
    ) -> Response:
        """Deliver a request to the object's `fetch()`: a copy of `request`, or a new one
        for a URL string (GET unless `method` says otherwise); returns its Response."""
        copy = await rpc.object_request(request, method, headers, body)

        async def event(instance: DurableObject) -> Response:
            try:
                response = await instance.fetch(copy)
            except Exception as exc:
                raise rpc.remote_error(exc) from exc
            if not isinstance(response, Response):
                raise ObjectValueError(
                    f"{type(instance).__name__}.fetch() must return a starlette Response, "
                    f"got {type(response).__name__}"
                )
            return response

        return await self._deliver(event)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        rpc.check_method(self._runtime.cls, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            positional, named = rpc.copy_arguments(name, args, kwargs)

            async def event(instance: DurableObject) -> Any:
                method = getattr(instance, name)
                try:
                    result = await method(*positional, **named)
                except Exception as exc:
                    raise rpc.remote_error(exc) from exc
                return rpc.copy_result(name, result)

            return await self._deliver(event)

        call.__name__ = name
        return call

    async def _deliver(self, event: Callable[[DurableObject], Awaitable[T]]) -> T:
        actor = self._runtime.dispatcher.actor_for(self._runtime, self.id)
        return await actor.deliver(event)

    def __repr__(self) -> str:
        return f"Stub({self._runtime.binding}, {self.id!r})"
