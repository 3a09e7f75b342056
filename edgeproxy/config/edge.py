"""Pydantic models of the edge-handler and durable-object parts of `rules.yaml`."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from edgeproxy.config.units import Duration

_HANDLER_SPEC = r"^[^:]+\.py(:[A-Za-z_][A-Za-z0-9_]*)?$"
_BINDING = r"^[A-Za-z_][A-Za-z0-9_]*$"
_JURISDICTION = r"^[a-z][a-z0-9-]{0,31}$"
_CLASS_SPEC = r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _or_string(
    schema: CoreSchema, handler: GetJsonSchemaHandler, pattern: str, description: str
) -> JsonSchemaValue:
    """The JSON Schema of a model that may also be written as its one-string shorthand."""
    full = handler.resolve_ref_schema(handler(schema))
    return {"anyOf": [{"type": "string", "pattern": pattern, "description": description}, full]}


class HandlerLimits(_Model):
    """What one handler invocation may take."""

    wall_time: Duration = Field(
        30.0, gt=0, description="Seconds before an unfinished handler is cancelled (504)."
    )
    cpu_time: Duration = Field(
        0.05,
        gt=0,
        description="Seconds a handler may block the event loop before the watchdog logs it.",
    )


class RouteHandler(HandlerLimits):
    """`handler:` on a route: a Python function run as middleware around the route's action."""

    function: str = Field(
        description="`path/to/module.py` (its on_request* functions) or "
        "`path/to/module.py:function`, relative to rules.yaml."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Variables the handler reads as `env.NAME`."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"function": value} if isinstance(value, str) else value

    @field_validator("function")
    @classmethod
    def _spec(cls, value: str) -> str:
        if not re.match(_HANDLER_SPEC, value):
            raise ValueError(f"{value!r} is not path/to/module.py or path/to/module.py:function")
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _or_string(schema, handler, _HANDLER_SPEC, "Shorthand for {function: ...}.")


class SiteFunctions(HandlerLimits):
    """Limits of the site's `functions/` (Pages Functions) handlers."""


class Jurisdiction(_Model):
    """Where the objects of one jurisdiction are stored."""

    path: str | None = Field(
        None,
        description="Storage root (relative to the state dir); default objects/<name>. "
        "Objects of this jurisdiction are never stored anywhere else.",
    )
    shards: int = Field(
        4, ge=1, le=256, description="SQLite files the objects are spread over (fixed once used)."
    )


class ObjectNamespace(_Model):
    """A durable-object class, bound under a name in handlers' `env`."""

    class_: str = Field(
        alias="class",
        description="`path/to/module.py:ClassName` (relative to rules.yaml); the class "
        "subclasses edgeproxy.objects.DurableObject.",
    )
    sites: list[str] | None = Field(
        None, description="Sites whose functions see this binding; default: every site."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"class": value} if isinstance(value, str) else value

    @field_validator("class_")
    @classmethod
    def _spec(cls, value: str) -> str:
        if not re.match(_CLASS_SPEC, value):
            raise ValueError(f"{value!r} is not path/to/module.py:ClassName")
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _or_string(schema, handler, _CLASS_SPEC, "Shorthand for {class: ...}.")


class ObjectsConfig(_Model):
    """Durable objects: storage per jurisdiction and the namespaces handlers reach."""

    default: Jurisdiction = Field(
        default_factory=Jurisdiction,
        description="Storage of objects created without a jurisdiction (objects/default).",
    )
    jurisdictions: dict[Annotated[str, Field(pattern=_JURISDICTION)], Jurisdiction] = Field(
        default_factory=dict,
        description="Named storage locations (eu, us, fedramp, ...); an object created for "
        "one is stored and run only there.",
    )
    namespaces: dict[Annotated[str, Field(pattern=_BINDING)], ObjectNamespace] = Field(
        default_factory=dict, description="Binding name (as in `env.COUNTER`) -> class."
    )
    idle_timeout: Duration = Field(
        10.0, gt=0, description="Seconds without an event before an object leaves memory."
    )
    alarm_retry_base: Duration = Field(
        2.0, gt=0, description="First retry delay of a failed alarm (doubles each retry)."
    )
    alarm_max_retries: int = Field(
        6, ge=0, le=20, description="Retries before a failing alarm goes to the dead letters."
    )
