"""What may be stored or passed over RPC, and the storage limits."""

from __future__ import annotations

from typing import Any

import pytest

from edgeproxy.exceptions import ObjectValueError, StorageLimitError
from edgeproxy.objects import values


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="none"),
        pytest.param(True, id="bool"),
        pytest.param(-3, id="int"),
        pytest.param(2.5, id="float"),
        pytest.param("é ☃", id="unicode"),
        pytest.param([1, [2, {"a": None}]], id="nested"),
        pytest.param({"k": [1, 2]}, id="dict"),
    ],
)
def test_plain_json_round_trips(value: Any) -> None:
    assert values.copy(value, "value") == value


def recursive() -> list[Any]:
    items: list[Any] = []
    items.append(items)
    return items


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param((1, 2), "it is a tuple", id="tuple"),
        pytest.param({1, 2}, "it is a set", id="set"),
        pytest.param({1: "a"}, "key 1 is a int", id="int-key"),
        pytest.param(float("nan"), "not a finite number", id="nan"),
        pytest.param(b"x", "it is a bytes", id="bytes"),
        pytest.param([object()], r"value\[0\] is not plain JSON", id="nested-object"),
        pytest.param(recursive(), "contains itself", id="cycle"),
    ],
)
def test_non_json_values_are_refused(value: Any, message: str) -> None:
    with pytest.raises(ObjectValueError, match=message) as caught:
        values.encode(value, "value")
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        pytest.param("k" * 2048, True, id="key-at-limit"),
        pytest.param("k" * 2049, False, id="key-over-limit"),
        pytest.param("é" * 1024, True, id="multibyte-at-limit"),
        pytest.param("é" * 1025, False, id="multibyte-over-limit"),
    ],
)
def test_key_limit_counts_utf8_bytes(key: str, ok: bool) -> None:
    if ok:
        assert values.check_key(key) == key
    else:
        with pytest.raises(StorageLimitError, match="the limit is 2048"):
            values.check_key(key)


def test_value_limit_counts_serialized_bytes() -> None:
    limit = 128 * 1024
    assert values.encode_value("k", "x" * (limit - 2))  # two quotes
    with pytest.raises(StorageLimitError, match=f"is {limit + 1} bytes serialized"):
        values.encode_value("k", "x" * (limit - 1))


def test_batch_limit() -> None:
    values.check_batch(128, "put")
    with pytest.raises(StorageLimitError, match=r"put\(\) got 129 keys"):
        values.check_batch(129, "put")


def test_keys_must_be_valid_strings() -> None:
    with pytest.raises(ObjectValueError, match="keys are str, got int"):
        values.check_key(1)
    with pytest.raises(ObjectValueError, match="not valid Unicode"):
        values.check_key("\ud800")
