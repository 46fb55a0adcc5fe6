"""The file registry: atomic versions, locking, checksums on load, stages and rollback."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import stat
from pathlib import Path

import pytest

from cryptoforecast.export.bundle import BUNDLE_FILES, BundleError, write_manifest
from cryptoforecast.registry import store
from cryptoforecast.registry.store import ModelRef, Registry, RegistryError


def make_bundle(folder: Path, tag: str = "a", size: int = 1000) -> Path:
    """A structurally valid bundle (the registry never parses the model, only checksums)."""
    folder.mkdir(parents=True)
    for name in BUNDLE_FILES:
        body = f"{tag}:{name}:" + "x" * size
        (folder / name).write_text(json.dumps({"body": body}) if name.endswith(".json") else body)
    write_manifest(folder, {"model_name": f"fake-{tag}"})
    return folder


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    root = tmp_path / "registry"
    monkeypatch.setenv("CRYPTOFORECAST_REGISTRY", str(root))
    reg = Registry()
    assert reg.root == root
    return reg


def test_register_show_promote_rollback(registry: Registry, tmp_path: Path) -> None:
    b1, b2 = make_bundle(tmp_path / "b1", "one"), make_bundle(tmp_path / "b2", "two")
    assert registry.register(b1, "btc") == 1 and registry.register(b2, "btc") == 2
    assert registry.versions("btc") == [1, 2] and registry.names() == ["btc"]
    path = registry.path("btc:1")
    assert (path / "model.onnx").read_text().startswith("one:")
    assert not os.access(path / "model.onnx", os.W_OK) or os.geteuid() == 0
    assert stat.S_IMODE((path / "model.onnx").stat().st_mode) & 0o222 == 0  # read-only
    assert registry.path("btc") == registry.path("btc:2")  # bare name = latest
    with pytest.raises(RegistryError, match="no production version"):
        registry.path("btc@production")
    registry.promote("btc", 1, "production")
    registry.promote("btc", 2, "production")
    registry.promote("btc", 2, "staging")
    assert registry.show("btc@production")["version"] == 2
    assert registry.show("btc:2")["stages"] == ["production", "staging"]
    assert registry.rollback("btc") == 1
    assert registry.resolve("btc@production")[1] == 1
    with pytest.raises(RegistryError, match="no earlier production"):
        registry.rollback("btc")
    events = registry.stages("btc")["events"]
    assert [e["action"] for e in events] == ["promote", "promote", "promote", "rollback"]
    assert registry.list() == [
        {"name": "btc", "versions": [1, 2], "stages": {"production": 1, "staging": 2}}
    ]


def test_bad_references_and_names(registry: Registry, tmp_path: Path) -> None:
    registry.register(make_bundle(tmp_path / "b"), "m")
    assert ModelRef.parse("m@staging") == ModelRef("m", stage="staging")
    assert ModelRef.parse("m:3") == ModelRef("m", version=3)
    with pytest.raises(RegistryError, match="unknown stage"):
        ModelRef.parse("m@prod")
    with pytest.raises(RegistryError, match="bad model name"):
        registry.register(tmp_path / "b", "../evil")
    with pytest.raises(RegistryError, match="has no version 9"):
        registry.path("m:9")
    with pytest.raises(RegistryError, match="no model named"):
        registry.path("other")
    with pytest.raises(RegistryError, match="unknown stage"):
        registry.promote("m", 1, "prod")


def test_corrupted_file_is_refused_with_its_name(registry: Registry, tmp_path: Path) -> None:
    registry.register(make_bundle(tmp_path / "b"), "m")
    target = registry.path("m:1") / "scaler.json"
    target.chmod(0o644)
    target.write_text('{"body": "tampered"}')
    with pytest.raises(BundleError, match=r"scaler\.json: checksum mismatch"):
        registry.path("m:1")
    with pytest.raises(BundleError, match=r"scaler\.json"):
        registry.promote("m", 1, "production")
    (registry.path("m:1", verify=False) / "metrics.json").unlink()
    with pytest.raises(BundleError, match=r"metrics\.json: missing"):
        registry.show("m:1")


def test_a_corrupted_source_bundle_is_not_registered(registry: Registry, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    (bundle / "model.onnx").write_text("changed after export")
    with pytest.raises(BundleError, match=r"model\.onnx: checksum mismatch"):
        registry.register(bundle, "m")
    assert registry.versions("m") == []


def _register(root: str, bundle: str, name: str, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    queue.put(Registry(Path(root)).register(Path(bundle), name))


def test_concurrent_registrations_get_distinct_complete_versions(
    registry: Registry, tmp_path: Path
) -> None:
    bundles = [make_bundle(tmp_path / f"b{i}", str(i), size=200_000) for i in range(4)]
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_register, args=(str(registry.root), str(b), "m", queue))
        for b in bundles
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    got = sorted(queue.get(timeout=5) for _ in procs)
    assert got == [1, 2, 3, 4] and registry.versions("m") == [1, 2, 3, 4]
    tags = set()
    for v in got:
        folder = registry.path(f"m:{v}")  # verifies every checksum: complete, not interleaved
        tags.add((folder / "model.onnx").read_text().split(":")[0])
    assert tags == {"0", "1", "2", "3"}


def _killed_registration(root: str, bundle: str) -> None:
    calls = {"n": 0}
    real = store.copy_file

    def dying_copy(src: Path, dst: Path) -> None:
        real(src, dst)
        calls["n"] += 1
        if calls["n"] == 3:  # half the files copied: die like a SIGKILL (no cleanup runs)
            os._exit(9)

    store.copy_file = dying_copy  # type: ignore[assignment]
    Registry(Path(root)).register(Path(bundle), "m")


def test_registration_killed_halfway_leaves_the_registry_consistent(
    registry: Registry, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "b")
    registry.register(bundle, "m")
    proc = mp.get_context("fork").Process(
        target=_killed_registration, args=(str(registry.root), str(bundle))
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    leftovers = list((registry.root / ".tmp").iterdir())
    assert len(leftovers) == 1 and len(list(leftovers[0].iterdir())) == 3  # the half copy
    assert registry.versions("m") == [1] and registry.list()[0]["versions"] == [1]
    registry.path("m")  # the listed version is intact
    # The next writer cleans the leftover and takes the next number.
    assert registry.register(bundle, "m") == 2
    assert list((registry.root / ".tmp").iterdir()) == []
    registry.path("m:2")


def test_an_error_inside_the_copy_cleans_up(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(tmp_path / "b")

    def failing_copy(src: Path, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "copy_file", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        registry.register(bundle, "m")
    assert registry.versions("m") == [] and registry.names() == []
    assert list((registry.root / ".tmp").iterdir()) == []
