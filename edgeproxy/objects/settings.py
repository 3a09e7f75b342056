"""Settings of the object system, as plain dataclasses, and the jurisdictions they resolve to.

The config layer builds these from `rules.yaml`; `resolve_jurisdictions` checks them once at
start: names, roots that cannot share files, and jurisdiction tags that cannot collide.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgeproxy.exceptions import ObjectSettingsError, UnknownJurisdiction

if TYPE_CHECKING:
    from edgeproxy.objects.api import DurableObject

JURISDICTION_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
BINDING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
DEFAULT = ""
DEFAULT_SHARDS = 4
MAX_SHARDS = 100  # shard files are named shard-00 .. shard-99


def display_name(jurisdiction: str) -> str:
    """How a jurisdiction is shown: its name, or `default` for the unrestricted one."""
    return jurisdiction or "default"


def jurisdiction_tag(name: str) -> int:
    """The stable 16-bit tag an ID carries for `name`: 0 for default, else from SHA-256."""
    if name == DEFAULT:
        return 0
    digest = hashlib.sha256(b"edgeproxy-jurisdiction\0" + name.encode()).digest()
    return int.from_bytes(digest[:2], "big")


@dataclass(frozen=True)
class JurisdictionSpec:
    """A jurisdiction: objects created for it are stored only in `shards` files under `root`."""

    name: str
    root: Path
    shards: int = DEFAULT_SHARDS


@dataclass(frozen=True)
class NamespaceSpec:
    """A durable-object class bound to a name (`binding`) that handlers address it by."""

    binding: str
    cls: type[DurableObject]


@dataclass
class ObjectSettings:
    """Everything the object system needs; `jurisdictions` may omit the default (name "").

    A missing default jurisdiction is stored at `<state_dir>/objects/default`.
    Alarms that raise are retried after `alarm_retry_base * 2**n` seconds, at most
    `alarm_max_retries` times, then dead-lettered.
    """

    state_dir: Path
    jurisdictions: list[JurisdictionSpec] = field(default_factory=list)
    idle_timeout: float = 10.0
    alarm_retry_base: float = 2.0
    alarm_max_retries: int = 6

    @property
    def objects_dir(self) -> Path:
        return self.state_dir / "objects"

    @property
    def secret_path(self) -> Path:
        return self.objects_dir / "secret"


@dataclass(frozen=True)
class Jurisdiction:
    """A checked jurisdiction with its tag."""

    name: str
    tag: int
    root: Path
    shards: int

    @property
    def display(self) -> str:
        return display_name(self.name)


class Jurisdictions:
    """The configured jurisdictions, looked up by name or by the tag inside an ID."""

    def __init__(self, items: Iterable[Jurisdiction]) -> None:
        self._by_name = {item.name: item for item in items}
        self._by_tag = {item.tag: item for item in self._by_name.values()}

    def __iter__(self) -> Iterator[Jurisdiction]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def default(self) -> Jurisdiction:
        return self._by_name[DEFAULT]

    def names(self) -> str:
        return ", ".join(sorted(display_name(name) for name in self._by_name))

    def by_name(self, name: str) -> Jurisdiction:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownJurisdiction(
                f"jurisdiction {name!r} is not configured (configured: {self.names()})"
            ) from None

    def by_tag(self, tag: int) -> Jurisdiction | None:
        return self._by_tag.get(tag)


def resolve_jurisdictions(settings: ObjectSettings) -> Jurisdictions:
    """Check the configured jurisdictions and add the default one if it is missing."""
    specs = list(settings.jurisdictions)
    if not any(spec.name == DEFAULT for spec in specs):
        specs.insert(0, JurisdictionSpec(DEFAULT, settings.objects_dir / "default"))
    resolved: list[Jurisdiction] = []
    seen_tags: dict[int, str] = {}
    for spec in specs:
        label = display_name(spec.name)
        if spec.name != DEFAULT and not JURISDICTION_NAME.fullmatch(spec.name):
            raise ObjectSettingsError(
                f"jurisdiction name {spec.name!r} is invalid: expected [a-z][a-z0-9-]{{0,31}}"
            )
        if spec.name == "default":
            raise ObjectSettingsError(
                "jurisdiction name 'default' is reserved: the unrestricted jurisdiction is named ''"
            )
        if not 1 <= spec.shards <= MAX_SHARDS:
            raise ObjectSettingsError(
                f"jurisdiction {label}: shards must be between 1 and {MAX_SHARDS}, "
                f"got {spec.shards}"
            )
        tag = jurisdiction_tag(spec.name)
        if spec.name != DEFAULT and tag == 0:
            seen_tags.setdefault(0, DEFAULT)
        if tag in seen_tags:
            raise ObjectSettingsError(
                f"jurisdiction {label}: its ID tag 0x{tag:04x} collides with jurisdiction "
                f"{display_name(seen_tags[tag])}; rename one of them"
            )
        seen_tags[tag] = spec.name
        resolved.append(Jurisdiction(spec.name, tag, Path(spec.root).resolve(), spec.shards))
    _check_roots(resolved)
    return Jurisdictions(resolved)


def _check_roots(items: list[Jurisdiction]) -> None:
    # Two jurisdictions sharing a directory would share shard files, which is exactly the
    # movement across jurisdictions that pinning forbids.
    for i, first in enumerate(items):
        for second in items[i + 1 :]:
            if (
                first.root == second.root
                or first.root.is_relative_to(second.root)
                or (second.root.is_relative_to(first.root))
            ):
                raise ObjectSettingsError(
                    f"jurisdictions {first.display} and {second.display} have overlapping roots "
                    f"({first.root}, {second.root}); each needs its own directory"
                )


def check_binding(binding: str) -> None:
    """Refuse a binding name that could not be a handler's attribute name."""
    if not BINDING_NAME.fullmatch(binding):
        raise ObjectSettingsError(
            f"namespace binding {binding!r} is invalid: expected [A-Za-z_][A-Za-z0-9_]{{0,63}}"
        )
