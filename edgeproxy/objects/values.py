"""What may be stored or passed to an object: plain JSON, within Cloudflare's limits.

Values are JSON (not msgpack, not pickle): str, int, float (finite), bool, None, lists and
dicts with str keys, exactly those types. A tuple, a set, a dict with int keys or a class
instance is refused rather than silently changed by the round trip.

Limits, as Cloudflare documents them for its key-value storage API: a key is at most
2 KiB of UTF-8, a value at most 128 KiB serialized, a batch call at most 128 keys.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from edgeproxy.exceptions import ObjectValueError, StorageLimitError

MAX_KEY_BYTES = 2 * 1024
MAX_VALUE_BYTES = 128 * 1024
MAX_BATCH_KEYS = 128
_SCALARS = (str, int, bool, type(None))
_ALLOWED = "str, int, float, bool, None, list, dict with str keys"


def encode(value: Any, where: str) -> str:
    """`value` as compact JSON text; `where` names it in the error if it is not plain JSON."""
    _check(value, where, set())
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def decode(text: str) -> Any:
    return json.loads(text)


def copy(value: Any, where: str) -> Any:
    """A deep copy through JSON, so two sides never share mutable state."""
    return decode(encode(value, where))


def _check(value: Any, where: str, open_containers: set[int]) -> None:
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is float:
        if not math.isfinite(value):
            raise ObjectValueError(f"{where} is not plain JSON: {value!r} is not a finite number")
        return
    if kind is list or kind is dict:
        if id(value) in open_containers:
            raise ObjectValueError(f"{where} is not plain JSON: it contains itself")
        open_containers.add(id(value))
        if kind is list:
            for index, item in enumerate(value):
                _check(item, f"{where}[{index}]", open_containers)
        else:
            for key, item in value.items():
                if type(key) is not str:
                    raise ObjectValueError(
                        f"{where} is not plain JSON: key {key!r} is a {type(key).__name__} "
                        "(dict keys must be str)"
                    )
                _check(item, f"{where}[{key!r}]", open_containers)
        open_containers.discard(id(value))
        return
    raise ObjectValueError(
        f"{where} is not plain JSON: it is a {kind.__name__} (allowed: {_ALLOWED})"
    )


def check_key(key: Any) -> str:
    """`key` if it is a str within the key limit."""
    if type(key) is not str:
        raise ObjectValueError(f"storage keys are str, got {type(key).__name__}")
    size = len(_utf8(key, "storage key"))
    if size > MAX_KEY_BYTES:
        raise StorageLimitError(
            f"storage key {key[:32]!r}… is {size} bytes of UTF-8; the limit is {MAX_KEY_BYTES}"
        )
    return key


def encode_value(key: str, value: Any) -> str:
    """The stored text of `value` under `key`, within the value limit."""
    text = encode(value, f"value of {key[:64]!r}")
    size = len(_utf8(text, f"value of {key[:64]!r}"))
    if size > MAX_VALUE_BYTES:
        raise StorageLimitError(
            f"value of {key[:64]!r} is {size} bytes serialized; the limit is {MAX_VALUE_BYTES}"
        )
    return text


def _utf8(text: str, where: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise ObjectValueError(f"{where} is not valid Unicode: {exc.reason}") from exc


def check_batch(count: int, operation: str) -> None:
    if count > MAX_BATCH_KEYS:
        raise StorageLimitError(
            f"{operation}() got {count} keys in one call; the limit is {MAX_BATCH_KEYS}"
        )


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix`."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            return prefix[:-1] + chr(last + 1)
        prefix = prefix[:-1]
    return None


def alarm_time(when: datetime | float) -> float:
    """Epoch seconds of an alarm time: an aware datetime, or epoch seconds (int or float)."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ObjectValueError(
                "set_alarm() needs an aware datetime (with tzinfo) or epoch seconds; "
                "a naive datetime's time zone is unknown"
            )
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        raise ObjectValueError(
            f"set_alarm() takes an aware datetime or epoch seconds, got {when!r}"
        )
    return float(when)
