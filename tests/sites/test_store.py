from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgeproxy.exceptions import StoreError
from edgeproxy.sites.store import (
    BlobStore,
    SiteStore,
    branch_alias,
    hash_tree,
    import_tree,
    safe_relative,
)


@pytest.mark.parametrize(
    ("branch", "alias"),
    [
        pytest.param("feature/X", "feature-x", id="slash-and-case"),
        pytest.param("main", "main", id="plain"),
        pytest.param("--Fix__Bug!!", "fix-bug", id="runs-collapse-and-trim"),
        pytest.param("a" * 40, "a" * 28, id="cut-to-28"),
        pytest.param("release/2024.10-rc.1", "release-2024-10-rc-1", id="dots"),
        pytest.param("ünïcode", "n-code", id="non-ascii"),
    ],
)
def test_branch_alias(branch: str, alias: str) -> None:
    assert branch_alias(branch) == alias


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("../x", id="dotdot"),
        pytest.param("a/../../x", id="nested-dotdot"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("a\0b", id="nul"),
        pytest.param("a//b", id="empty-segment"),
        pytest.param("", id="empty"),
    ],
)
def test_unsafe_paths_refused(path: str) -> None:
    with pytest.raises(StoreError):
        safe_relative(path)


def put(blobs: BlobStore, content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()
    blobs.put(digest, [content])
    return digest


@pytest.fixture
def store(tmp_path: Path) -> SiteStore:
    return SiteStore(tmp_path, "demo", BlobStore(tmp_path / "blobs"))


def test_create_publish_and_resolve(store: SiteStore) -> None:
    index = put(store.blobs, b"<h1>hi</h1>")
    first = store.create({"index.html": index, "a/b.txt": index}, branch="main", commit="abc")
    assert (store.deployment_dir(first.id) / "a" / "b.txt").read_bytes() == b"<h1>hi</h1>"
    assert store.deployment(first.id).commit == "abc"
    store.publish(first, production_branch="main")
    feature = store.create({"index.html": index}, branch="feature/Login")
    store.publish(feature, production_branch="main")
    assert store.aliases() == {
        "production": first.id,
        "main": first.id,
        "feature-login": feature.id,
    }
    assert store.resolve("feature-login") == feature.id
    assert store.resolve(first.id[:8]) == first.id
    assert store.resolve("nope") is None


def test_upload_with_wrong_digest_is_refused_and_leaves_nothing(store: SiteStore) -> None:
    digest = hashlib.sha256(b"right").hexdigest()
    with pytest.raises(StoreError, match="does not match"):
        store.blobs.put(digest, [b"wrong"])
    assert not store.blobs.has(digest)
    assert not any(store.blobs.root.rglob("*.tmp"))


def test_deployment_of_missing_blob_is_refused(store: SiteStore) -> None:
    with pytest.raises(StoreError, match="never uploaded"):
        store.create({"index.html": "0" * 64}, branch="main")
    assert store.deployments() == []
    assert not any(p for p in store.deploys.iterdir())


def test_alias_validation_and_unknown_deployment(store: SiteStore) -> None:
    with pytest.raises(StoreError, match="invalid alias"):
        store.set_aliases({"Bad Alias": "0" * 32})
    with pytest.raises(StoreError) as caught:
        store.set_aliases({"ok": "0" * 32})
    assert caught.value.status == 404


def test_prune_keeps_newest_per_branch_and_aliased(store: SiteStore) -> None:
    digest = put(store.blobs, b"x")
    made = [store.create({"i.html": digest}, branch="main") for _ in range(4)]
    for offset, deployment in enumerate(made):
        path = store.deploys / f"{deployment.id}.json"
        path.write_text(path.read_text().replace(str(deployment.created), str(1000 + offset)))
    store.set_aliases({"production": made[0].id})
    removed = store.prune(keep_per_branch=2)
    assert removed == [made[1].id]
    assert {d.id for d in store.deployments()} == {made[0].id, made[2].id, made[3].id}


def test_incomplete_deployments_are_cleaned(store: SiteStore) -> None:
    (store.deploys / ".staging-123").mkdir()
    (store.deploys / ("f" * 32)).mkdir()
    store.clean_incomplete()
    assert list(store.deploys.iterdir()) == []


def test_hash_tree_follows_inner_symlinks_and_refuses_outer(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / ".git").mkdir(parents=True)
    (site / ".git" / "HEAD").write_text("x")
    (site / "index.html").write_text("hi")
    (site / "alias.html").symlink_to(site / "index.html")
    assert set(hash_tree(site)) == {"index.html", "alias.html"}
    (tmp_path / "secret").write_text("s")
    (site / "leak").symlink_to(tmp_path / "secret")
    with pytest.raises(StoreError, match="symlink out of the published tree"):
        hash_tree(site)


def test_import_tree(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hi")
    blobs = BlobStore(tmp_path / "blobs")
    files = import_tree(blobs, site)
    assert blobs.has(files["index.html"])
