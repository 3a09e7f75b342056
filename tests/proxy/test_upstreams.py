from __future__ import annotations

from collections import Counter

import pytest

from edgeproxy.config.models import Origin
from edgeproxy.exceptions import NoHealthyUpstream
from edgeproxy.proxy.upstreams import UpstreamPool, UpstreamRegistry


def pool(balancing: str = "round_robin", max_fails: int = 2) -> UpstreamPool:
    origin = Origin.model_validate(
        {
            "targets": ["http://a:1", "http://b:2", "http://c:3/base/"],
            "balancing": balancing,
            "passive_health": {"max_fails": max_fails, "fail_timeout": 60},
        }
    )
    return UpstreamPool("p", origin)


def test_target_parts() -> None:
    target = pool().targets[2]
    assert (target.origin, target.base_path, target.port) == ("http://c:3", "/base", 3)


def test_round_robin_cycles() -> None:
    p = pool()
    picks = [p.select("1.1.1.1").url for _ in range(6)]
    assert Counter(picks) == {"http://a:1": 2, "http://b:2": 2, "http://c:3/base": 2}


def test_least_conn_prefers_idle_target() -> None:
    p = pool("least_conn")
    p.targets[0].active = 3
    p.targets[1].active = 1
    p.targets[2].active = 2
    assert p.select("x").url == "http://b:2"


def test_ip_hash_is_stable_per_client() -> None:
    p = pool("ip_hash")
    assert len({p.select("192.0.2.7").url for _ in range(10)}) == 1


def test_failures_eject_after_max_fails_and_exclusion_is_honoured() -> None:
    p = pool()
    a = p.targets[0]
    p.record_failure(a)
    assert a.available(0.0)
    p.record_failure(a)
    assert {p.select("x", exclude=[p.targets[1]]).url for _ in range(4)} == {"http://c:3/base"}


def test_the_only_target_is_never_ejected() -> None:
    origin = Origin.model_validate({"targets": ["http://a:1"], "passive_health": {"max_fails": 1}})
    p = UpstreamPool("p", origin)
    for _ in range(3):
        p.record_failure(p.targets[0])
    assert p.select("x").url == "http://a:1"


def test_success_resets_the_failure_count() -> None:
    p = pool()
    a = p.targets[0]
    p.record_failure(a)
    p.record_success(a)
    p.record_failure(a)
    assert a.ejected_until == 0.0


def test_no_available_target_raises_503() -> None:
    p = pool(max_fails=1)
    for target in p.targets:
        p.record_failure(target)
    with pytest.raises(NoHealthyUpstream) as caught:
        p.select("x")
    assert caught.value.status == 503


def test_registry_keeps_unchanged_pools_across_reloads() -> None:
    registry = UpstreamRegistry()
    first = {"a": Origin(targets=["http://a:1"]), "b": Origin(targets=["http://b:1"])}
    registry.update(first)
    kept = registry.pools["a"]
    added, dropped = registry.update(
        {"a": Origin(targets=["http://a:1"]), "c": Origin(targets=["http://c:1"])}
    )
    assert registry.pools["a"] is kept
    assert [p.name for p in added] == ["c"]
    assert [p.name for p in dropped] == ["b"]
