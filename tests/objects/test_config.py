"""From the `objects:` section to object settings and loaded classes."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeproxy.config.edge import ObjectsConfig
from edgeproxy.exceptions import ConfigError
from edgeproxy.objects.config import load_namespaces, object_settings

COUNTER = """\
from edgeproxy.objects import DurableObject

LOADS = []
LOADS.append(1)


class Counter(DurableObject):
    pass
"""


def test_settings_resolve_roots_under_the_state_dir(tmp_path: Path) -> None:
    config = ObjectsConfig.model_validate(
        {"default": {"shards": 2}, "jurisdictions": {"eu": {"path": "/abs/eu"}, "us": {}}}
    )
    settings = object_settings(config, tmp_path)
    roots = {spec.name: (spec.root, spec.shards) for spec in settings.jurisdictions}
    assert roots == {
        "": (tmp_path / "objects" / "default", 2),
        "eu": (Path("/abs/eu"), 4),
        "us": (tmp_path / "objects" / "us", 4),
    }


def test_two_bindings_of_one_class_share_its_module(tmp_path: Path) -> None:
    (tmp_path / "counter.py").write_text(COUNTER)
    config = ObjectsConfig.model_validate(
        {"namespaces": {"A": "counter.py:Counter", "B": "counter.py:Counter"}}
    )
    first, second = load_namespaces(config, tmp_path / "rules.yaml")
    assert first.cls is second.cls
    module = __import__(first.cls.__module__, fromlist=["LOADS"])
    assert module.LOADS == [1]


@pytest.mark.parametrize(
    ("source", "spec", "message"),
    [
        pytest.param(None, "missing.py:Counter", "missing.py: no such file", id="no-file"),
        pytest.param("x = (\n", "bad.py:Counter", "bad.py could not be loaded", id="syntax"),
        pytest.param(COUNTER, "bad.py:Nope", "(no Nope in the module)", id="no-class"),
        pytest.param(
            "class Counter:\n    pass\n",
            "bad.py:Counter",
            "(class Counter does not subclass it)",
            id="not-a-durable-object",
        ),
    ],
)
def test_class_load_failures_name_the_binding(
    tmp_path: Path, source: str | None, spec: str, message: str
) -> None:
    if source is not None:
        (tmp_path / "bad.py").write_text(source)
    config = ObjectsConfig.model_validate({"namespaces": {"COUNTER": spec}})
    with pytest.raises(ConfigError) as caught:
        load_namespaces(config, tmp_path / "rules.yaml")
    [issue] = caught.value.issues
    assert issue.path == "objects.namespaces.COUNTER.class"
    assert message in issue.message
