from __future__ import annotations

import pytest

from edgeproxy.config.models import ServerConfig, Timeouts
from edgeproxy.config.units import parse_duration, parse_size


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param(5, 5.0, id="int-is-seconds"),
        pytest.param(2.5, 2.5, id="float-is-seconds"),
        pytest.param(0, 0.0, id="zero"),
        pytest.param("7", 7.0, id="bare-number-text"),
        pytest.param("10s", 10.0, id="seconds"),
        pytest.param("2.5s", 2.5, id="fractional-seconds"),
        pytest.param("250ms", 0.25, id="milliseconds"),
        pytest.param("2m", 120.0, id="minutes"),
        pytest.param("1h", 3600.0, id="hours"),
        pytest.param(" 3 s ", 3.0, id="spaces"),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(-1, "must be a finite number of seconds >= 0, got -1", id="negative"),
        pytest.param(float("nan"), "finite", id="nan"),
        pytest.param(float("inf"), "finite", id="infinite"),
        pytest.param("-1s", "got '-1s'", id="negative-text"),
        pytest.param("1d", "expected a duration such as 5, 2.5s or 250ms, got '1d'", id="days"),
        pytest.param("5 years", "got '5 years'", id="unknown-unit"),
        pytest.param("1h30m", "got '1h30m'", id="compound"),
        pytest.param("", "got ''", id="empty"),
        pytest.param(True, "got True", id="bool"),
        pytest.param(None, "got None", id="null"),
    ],
)
def test_parse_duration_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match="duration") as caught:
        parse_duration(value)

    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        pytest.param(1048576, 1048576, id="int-is-bytes"),
        pytest.param(0, 0, id="zero"),
        pytest.param("512", 512, id="bare-number-text"),
        pytest.param("100 B", 100, id="bytes"),
        pytest.param("512k", 512_000, id="k-is-decimal"),
        pytest.param("512KB", 512_000, id="kb"),
        pytest.param("512KiB", 524_288, id="kib"),
        pytest.param("10MiB", 10 * 1024**2, id="mib"),
        pytest.param("10mb", 10_000_000, id="lowercase"),
        pytest.param("1GB", 10**9, id="gb"),
        pytest.param("2GiB", 2 * 1024**3, id="gib"),
        pytest.param("1TB", 10**12, id="tb"),
        pytest.param("1.5KiB", 1536, id="fraction"),
        pytest.param("2.01MB", 2_010_000, id="fraction-without-float-error"),
    ],
)
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(-1, id="negative"),
        pytest.param(1.5, id="float"),
        pytest.param("10 zb", id="unknown-unit"),
        pytest.param("MB", id="no-number"),
        pytest.param("1.2.3MB", id="two-dots"),
        pytest.param("-5MB", id="negative-text"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="null"),
    ],
)
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"size") as caught:
        parse_size(value)

    assert repr(value) in str(caught.value)


def test_units_apply_through_the_models() -> None:
    timeouts = Timeouts.model_validate({"header_read": "250ms", "shutdown": "2m"})
    server = ServerConfig.model_validate({"max_body_size": "10MiB"})

    assert (timeouts.header_read, timeouts.keep_alive, timeouts.shutdown) == (0.25, 5.0, 120.0)
    assert server.max_body_size == 10 * 1024 * 1024
