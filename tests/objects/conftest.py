from __future__ import annotations

from pathlib import Path

import pytest

from edgeproxy.objects import ObjectSettings
from tests.objects.sample import Counter, Flaky, make_settings


@pytest.fixture
def settings(tmp_path: Path) -> ObjectSettings:
    return make_settings(tmp_path)


@pytest.fixture(autouse=True)
def _reset_samples() -> None:
    Counter.constructed = []
    Flaky.failures = 0
    Flaky.attempts = []
    Flaky.reschedule = None
    Flaky.done = None
    return
