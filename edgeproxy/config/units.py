"""Durations and byte sizes as `rules.yaml` writes them: `10s`, `250ms`, `2m`, `10MiB`, `1GB`."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

# Spelled case-insensitively by hand (no re.IGNORECASE) so the JSON Schema can reuse the pattern.
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT][iI]?[bB]?|[bB])?\s*$")
_SIZE_SCALE = {
    "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4,
}  # fmt: skip


def parse_duration(value: Any) -> Any:
    """Seconds from a number or a string with a unit (`ms`, `s`, `m`, `h`)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 5, 2.5s or 250ms, got {value!r}")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"a duration must be a finite number of seconds >= 0, got {value!r}")
        return float(value)
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found:
            return float(found.group(1)) * _DURATION_SCALE[found.group(2)]
    raise ValueError(f"expected a duration such as 5, 2.5s or 250ms, got {value!r}")


def parse_size(value: Any) -> Any:
    """Bytes from an integer or a string with a unit (`k`, `KB`, `KiB`, `MiB`, `GB`, ...)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 1048576, 512KiB or 10MB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value!r}")
        return value
    if isinstance(value, str):
        found = _SIZE.match(value)
        if found:
            unit = (found.group(2) or "b").lower()
            # Decimal, because float turns "2.01MB" into 2009999 bytes.
            return int(Decimal(found.group(1)) * _SIZE_SCALE[unit])
    raise ValueError(f"expected a size such as 1048576, 512KiB or 10MB, got {value!r}")


# The JSON Schema describes what a file may say ("250ms"), not the number it becomes.
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": _DURATION.pattern},
            ]
        }
    ),
]
ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": _SIZE.pattern}]}
    ),
]
