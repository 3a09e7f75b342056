"""Durable-object IDs: their format, how a namespace mints them and how it verifies them.

An ID is 32 bytes shown as 64 lowercase hex characters:

    byte  0       version (1)
    bytes 1-2     jurisdiction tag (0 = default; see settings.jurisdiction_tag)
    byte  3       kind: 0 random (new_unique_id), 1 derived from a name (id_from_name)
    bytes 4-15    body: random, or HMAC(namespace key, tag + name) for named IDs
    bytes 16-31   MAC: HMAC-SHA256(namespace key, bytes 0-15), truncated to 16 bytes

The MAC covers the jurisdiction tag, so an ID edited into another jurisdiction, or made
by another namespace, does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict

from edgeproxy.exceptions import ForeignObjectId, InvalidObjectId
from edgeproxy.objects.settings import Jurisdiction, Jurisdictions, display_name

VERSION = 1
ID_BYTES = 32
HEX_LENGTH = 2 * ID_BYTES
KIND_UNIQUE = 0
KIND_NAMED = 1
_MAC_AT = 16
_HEX_DIGITS = frozenset("0123456789abcdef")
_KNOWN_NAMES = 10_000  # names remembered per namespace for `ObjectId.name`


class ObjectId:
    """The address of one durable object; equal and hashed by its bytes.

    `name` is the name it was made from when that is known (from `id_from_name`, or from
    the object's stored record); `jurisdiction` is "" for the default jurisdiction.
    """

    __slots__ = ("jurisdiction", "name", "raw")

    def __init__(self, raw: bytes, jurisdiction: str, name: str | None = None) -> None:
        self.raw = raw
        self.jurisdiction = jurisdiction
        self.name = name

    @property
    def hex(self) -> str:
        return self.raw.hex()

    @property
    def is_named(self) -> bool:
        return self.raw[3] == KIND_NAMED

    def with_name(self, name: str | None) -> ObjectId:
        return ObjectId(self.raw, self.jurisdiction, name)

    def __str__(self) -> str:
        return self.raw.hex()

    def __repr__(self) -> str:
        name = f", name={self.name!r}" if self.name is not None else ""
        return f"ObjectId('{self.hex}', jurisdiction={display_name(self.jurisdiction)}{name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectId) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def decode_id(text: str) -> bytes:
    """The bytes of an ID string, checking only its form (not which namespace made it)."""
    if not isinstance(text, str):
        raise InvalidObjectId(f"object ID must be a string, got {type(text).__name__}")
    if len(text) != HEX_LENGTH:
        raise InvalidObjectId(
            f"object ID must be {HEX_LENGTH} lowercase hex characters, got {len(text)}"
        )
    for position, char in enumerate(text):
        if char not in _HEX_DIGITS:
            hint = " (IDs are lowercase)" if char.lower() in _HEX_DIGITS else ""
            raise InvalidObjectId(
                f"object ID must be {HEX_LENGTH} lowercase hex characters; "
                f"found {char!r} at position {position}{hint}"
            )
    raw = bytes.fromhex(text)
    if raw[0] != VERSION:
        raise InvalidObjectId(f"object ID version {raw[0]} is not known (expected {VERSION})")
    if raw[3] not in (KIND_UNIQUE, KIND_NAMED):
        raise InvalidObjectId(
            f"object ID kind {raw[3]} is not known (expected {KIND_UNIQUE} or {KIND_NAMED})"
        )
    return raw


def tag_of(raw: bytes) -> int:
    """The jurisdiction tag inside an ID."""
    return int.from_bytes(raw[1:3], "big")


def shard_index(raw: bytes, shards: int) -> int:
    """Which of a jurisdiction's `shards` holds the object; stable for a given shard count."""
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big") % shards


def mac_verifies(key: bytes, raw: bytes) -> bool:
    """Whether the ID's MAC was made with `key`."""
    expected = hmac.new(key, raw[:_MAC_AT], hashlib.sha256).digest()[: ID_BYTES - _MAC_AT]
    return hmac.compare_digest(expected, raw[_MAC_AT:])


class IdCodec:
    """Mints and verifies the IDs of one namespace identity (its `label` is for messages)."""

    def __init__(self, key: bytes, jurisdictions: Jurisdictions, label: str) -> None:
        self._key = key
        self._jurisdictions = jurisdictions
        self.label = label
        self._names: OrderedDict[bytes, str] = OrderedDict()

    def unique(self, jurisdiction: Jurisdiction) -> ObjectId:
        return self._seal(jurisdiction, KIND_UNIQUE, secrets.token_bytes(12), None)

    def named(self, name: str, jurisdiction: Jurisdiction) -> ObjectId:
        if not isinstance(name, str):
            raise TypeError(f"id_from_name() takes a str name, got {type(name).__name__}")
        source = b"name\0" + jurisdiction.tag.to_bytes(2, "big") + name.encode()
        body = hmac.new(self._key, source, hashlib.sha256).digest()[:12]
        object_id = self._seal(jurisdiction, KIND_NAMED, body, name)
        self.remember(object_id)
        return object_id

    def parse(self, text: str) -> ObjectId:
        """An ID of this namespace from its string; the name is filled in when known."""
        raw = decode_id(text)
        if not mac_verifies(self._key, raw):
            raise ForeignObjectId(
                f"object ID {text[:12]}… is not an ID of namespace {self.label}: its MAC does "
                "not verify (an ID is valid only in the namespace that made it, unedited)"
            )
        jurisdiction = self._jurisdictions.by_tag(tag_of(raw))
        if jurisdiction is None:
            raise ForeignObjectId(
                f"object ID {text[:12]}… belongs to jurisdiction tag 0x{tag_of(raw):04x}, "
                f"which is not configured (configured: {self._jurisdictions.names()})"
            )
        return ObjectId(raw, jurisdiction.name, self._names.get(raw))

    def verifies(self, raw: bytes) -> bool:
        """Whether this namespace made the ID `raw`."""
        return mac_verifies(self._key, raw)

    def check(self, object_id: ObjectId) -> ObjectId:
        """`object_id` if this namespace made it, else ForeignObjectId."""
        if not isinstance(object_id, ObjectId):
            raise TypeError(f"expected an ObjectId, got {type(object_id).__name__}")
        if not mac_verifies(self._key, object_id.raw):
            raise ForeignObjectId(
                f"object ID {object_id.hex[:12]}… is not an ID of namespace {self.label}: its "
                "MAC does not verify (an ID is valid only in the namespace that made it)"
            )
        return object_id

    def remember(self, object_id: ObjectId) -> None:
        """Record the name of a named ID so IDs parsed later can show it."""
        if object_id.name is None:
            return
        self._names[object_id.raw] = object_id.name
        self._names.move_to_end(object_id.raw)
        if len(self._names) > _KNOWN_NAMES:
            self._names.popitem(last=False)

    def _seal(
        self, jurisdiction: Jurisdiction, kind: int, body: bytes, name: str | None
    ) -> ObjectId:
        head = bytes([VERSION]) + jurisdiction.tag.to_bytes(2, "big") + bytes([kind]) + body
        mac = hmac.new(self._key, head, hashlib.sha256).digest()[: ID_BYTES - _MAC_AT]
        return ObjectId(head + mac, jurisdiction.name, name)
