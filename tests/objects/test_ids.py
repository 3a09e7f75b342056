"""ID format, minting, verification and jurisdiction pinning of namespaces."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from edgeproxy.exceptions import (
    ForeignObjectId,
    InvalidObjectId,
    JurisdictionMismatch,
    ObjectSettingsError,
    RequestError,
    UnknownJurisdiction,
    UnknownNamespace,
)
from edgeproxy.objects import JurisdictionSpec, ObjectSettings
from edgeproxy.objects.ids import decode_id
from edgeproxy.objects.settings import jurisdiction_tag, resolve_jurisdictions
from tests.objects.sample import running

VALID = "01" + "00" * 31


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(VALID[:-2], "64 lowercase hex characters, got 62", id="too-short"),
        pytest.param(VALID + "00", "got 66", id="too-long"),
        pytest.param("", "got 0", id="empty"),
        pytest.param(VALID[:-1] + "A", "(IDs are lowercase)", id="uppercase"),
        pytest.param(VALID[:-1] + "g", "found 'g' at position 63", id="non-hex"),
        pytest.param("02" + VALID[2:], "version 2 is not known (expected 1)", id="unknown-version"),
        pytest.param(VALID[:6] + "07" + VALID[8:], "kind 7 is not known", id="unknown-kind"),
    ],
)
def test_malformed_ids_are_refused_with_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(InvalidObjectId, match="object ID") as caught:
        decode_id(text)
    assert message in str(caught.value)
    assert isinstance(caught.value, RequestError)
    assert caught.value.status == 400


def test_names_are_deterministic_per_namespace_scope_and_jurisdiction(
    settings: ObjectSettings,
) -> None:
    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            again = system.namespace("COUNTER")
            preview = system.namespace("COUNTER", scope="preview")
            other = system.namespace("FLAKY")
            first = ns.id_from_name("x")
            assert first == again.id_from_name("x")
            assert hash(first) == hash(again.id_from_name("x"))
            assert str(first) == first.hex
            assert len(first.hex) == 64
            assert first.name == "x"
            assert first.jurisdiction == ""
            assert ns.id_from_name("y") != first
            assert preview.id_from_name("x") != first
            assert other.id_from_name("x") != first
            eu = ns.jurisdiction("eu").id_from_name("x")
            assert eu != first
            assert eu.jurisdiction == "eu"
            assert eu == ns.jurisdiction("eu").id_from_name("x")

    asyncio.run(scenario())


def test_unique_ids_differ_and_carry_their_jurisdiction(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            ids = {ns.new_unique_id() for _ in range(50)}
            assert len(ids) == 50
            assert all(i.name is None and i.jurisdiction == "" for i in ids)
            assert ns.new_unique_id(jurisdiction="eu").jurisdiction == "eu"
            assert ns.jurisdiction("eu").new_unique_id().jurisdiction == "eu"

    asyncio.run(scenario())


def test_parsing_round_trips_and_knows_names_it_made(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            named = ns.id_from_name("kept")
            parsed = ns.id_from_string(named.hex)
            assert parsed == named
            assert parsed.name == "kept"
            unique = ns.new_unique_id("eu")
            parsed_unique = ns.id_from_string(str(unique))
            assert parsed_unique == unique
            assert parsed_unique.name is None
            assert parsed_unique.jurisdiction == "eu"

    asyncio.run(scenario())


def flip(hex_id: str, byte: int) -> str:
    raw = bytearray(bytes.fromhex(hex_id))
    raw[byte] ^= 0x01
    return raw.hex()


def test_foreign_and_edited_ids_do_not_verify(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            named = ns.id_from_name("x")
            cases = {
                "other-binding": system.namespace("FLAKY").id_from_name("x").hex,
                "other-scope": system.namespace("COUNTER", "preview").id_from_name("x").hex,
                "edited-tag": flip(named.hex, 2),
                "edited-body": flip(named.hex, 10),
                "edited-mac": flip(named.hex, 31),
            }
            for text in cases.values():
                with pytest.raises(ForeignObjectId, match=r"MAC does not verify|not configured"):
                    ns.id_from_string(text)
            with pytest.raises(ForeignObjectId) as caught:
                ns.get(system.namespace("FLAKY").id_from_name("x"))
            assert caught.value.status == 404

    asyncio.run(scenario())


def test_jurisdiction_view_refuses_ids_of_other_jurisdictions(settings: ObjectSettings) -> None:
    async def scenario() -> None:
        async with running(settings) as system:
            ns = system.namespace("COUNTER")
            eu = ns.jurisdiction("eu")
            default_id = ns.id_from_name("x")
            with pytest.raises(JurisdictionMismatch, match="accepts only eu IDs"):
                eu.get(default_id)
            with pytest.raises(JurisdictionMismatch, match="of jurisdiction default"):
                eu.id_from_string(default_id.hex)
            with pytest.raises(JurisdictionMismatch, match="pinned to jurisdiction eu"):
                eu.new_unique_id(jurisdiction="")
            # The unrestricted namespace accepts every jurisdiction's IDs of its own.
            assert ns.get(eu.id_from_name("x")).id.jurisdiction == "eu"
            with pytest.raises(UnknownJurisdiction, match=r"'us' is not configured \(configured"):
                ns.jurisdiction("us")
            with pytest.raises(UnknownJurisdiction):
                ns.new_unique_id(jurisdiction="us")
            with pytest.raises(UnknownNamespace, match="known: COUNTER, FLAKY"):
                system.namespace("NOPE")

    asyncio.run(scenario())


def test_tags_are_stable_and_default_is_zero() -> None:
    assert jurisdiction_tag("") == 0
    assert jurisdiction_tag("eu") == jurisdiction_tag("eu") != jurisdiction_tag("us")


def colliding_names() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for length in itertools.count(2):
        for letters in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=length):
            name = "".join(letters)
            tag = jurisdiction_tag(name)
            if tag in seen:
                return seen[tag], name
            seen[tag] = name
    raise AssertionError("unreachable")


def test_colliding_tags_are_refused_at_start(tmp_path: Path) -> None:
    first, second = colliding_names()
    settings = ObjectSettings(
        tmp_path,
        [JurisdictionSpec(first, tmp_path / "a"), JurisdictionSpec(second, tmp_path / "b")],
    )
    with pytest.raises(ObjectSettingsError, match="collides with jurisdiction"):
        resolve_jurisdictions(settings)
