"""Hostile artefacts: a bundle, a registry file, a config or a checkpoint is data, never code.

Every test hands the production path a crafted artefact whose payload would leave a trace (a
file written, a folder deleted) and asserts both that it is refused with a clear error and that
the trace is absent. The payloads are live: before the allow-lists, ``open``, ``write_text``
and the project's ``_rmtree`` ran through a bundle's feature spec (``subprocess.run`` and
``shutil.rmtree`` were stopped only by Hydra's own blocklist), and a registered config's
``_target_`` ran at the start of ``retrain``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from onnx import TensorProto, helper

from cryptoforecast.cli import main
from cryptoforecast.data.from_config import target_spec
from cryptoforecast.data.sources import bundled_path
from cryptoforecast.export.bundle import BundleError, best_checkpoint, write_manifest
from cryptoforecast.features import transforms as T
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.features.registry import TRANSFORMS, SpecError
from cryptoforecast.paths import CONF_DIR
from cryptoforecast.pipelines.retrain import ALLOWED_TARGETS, RetrainError, retrain
from cryptoforecast.registry.store import Registry, RegistryError
from cryptoforecast.serving.predictor import Predictor

BTC = str(bundled_path("BTCUSDT"))


def _graph(path: Path, horizons: int = 1) -> None:
    """A real ONNX graph ``x [B, L, F] -> y_hat [B, H]`` (means over time and features)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "L", "F"])
    y = helper.make_tensor_value_info("y_hat", TensorProto.FLOAT, ["B", horizons])
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "axes"], ["u"]),
        helper.make_node("Tile", ["u", "reps"], ["y_hat"]),
    ]
    inits = [
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("reps", TensorProto.INT64, [2], [1, horizons]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "tiny", [x], [y], inits),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    onnx.save(model, str(path))


def tiny_bundle(
    folder: Path,
    transforms: list[dict[str, Any]] | None = None,
    config: str = "seed: 0\n",
    horizons: tuple[int, ...] = (1,),
    lag: int = 1,
) -> Path:
    """A complete, checksummed, servable bundle (log-return features, a mean-of-inputs graph).

    ``transforms`` replaces the spec's transform entries (a hostile payload) before the
    manifest is written, so the bundle passes its checksums and the payload is what is tested.
    """
    folder.mkdir(parents=True)
    spec = FeatureSet([T.LogReturns([1])], lookback=4).to_spec()
    if transforms is not None:
        spec["transforms"] = transforms
    spec.update(
        horizons=list(horizons),
        interval="1h",
        symbol="BTCUSDT",
        task="regression",
        target_kind="log_return",
        target_scale=None,
        execution_lag=lag,
        backtest={"rule": "sign", "threshold": 0.0, "long_short": True, "horizon": None},
        model={"input_dtype": "float32", "output": "return"},
    )
    _graph(folder / "model.onnx", len(horizons))
    (folder / "feature_spec.json").write_text(json.dumps(spec))
    (folder / "scaler.json").write_text(
        json.dumps({"feature_names": ["logret_1"], "features": None})
    )
    (folder / "training_stats.json").write_text(json.dumps({"train_end": None}))
    (folder / "config.yaml").write_text(config)
    (folder / "metrics.json").write_text("{}\n")
    write_manifest(folder, {"model_name": "tiny"})
    return folder


def _instantiate_entry(config: dict[str, Any]) -> dict[str, Any]:
    """An old-format entry calling Hydra's instantiate, re-exported by a project module."""
    return {
        "class": "cryptoforecast.models.factory.instantiate",
        "params": {"config": config},
        "warmup": 1,
        "names": ["logret_1"],
    }


def _open_payload(path: Path) -> dict[str, Any]:
    """A Hydra config that creates ``path`` when instantiated."""
    return {"_target_": "builtins.open", "file": str(path), "mode": "w"}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- feature_spec.json payloads


def _payloads(tmp: Path) -> list[tuple[str, list[dict[str, Any]], Path, bool]]:
    """``(label, transforms, trace, trace_should_exist_before)`` per payload."""
    victim = tmp / "victim"
    return [
        (
            "hydra instantiate -> open(w)",
            [_instantiate_entry(_open_payload(tmp / "a"))],
            tmp / "a",
            False,
        ),
        (
            "hydra instantiate -> pathlib write_text",
            [
                _instantiate_entry(
                    {
                        "_target_": "pathlib.Path.write_text",
                        "_args_": [{"_target_": "pathlib.Path", "_args_": [str(tmp / "b")]}, "x"],
                    }
                )
            ],
            tmp / "b",
            False,
        ),
        (
            "hydra instantiate -> subprocess (also on Hydra's own blocklist)",
            [_instantiate_entry({"_target_": "subprocess.run", "args": ["touch", f"{tmp}/c"]})],
            tmp / "c",
            False,
        ),
        (
            "hydra instantiate -> shutil.rmtree (also on Hydra's own blocklist)",
            [_instantiate_entry({"_target_": "shutil.rmtree", "path": str(victim)})],
            victim,
            True,
        ),
        (
            "hydra instantiate -> a project function with side effects (registry _rmtree)",
            [
                _instantiate_entry(
                    {
                        "_target_": "cryptoforecast.registry.store._rmtree",
                        "path": {"_target_": "pathlib.Path", "_args_": [str(victim)]},
                    }
                )
            ],
            victim,
            True,
        ),
        (
            "new-format name that is a Python path",
            [{"transform": "pathlib.Path.touch", "params": {}, "warmup": 0, "names": []}],
            victim,
            True,
        ),
    ]


@pytest.mark.parametrize("index", range(6))
def test_feature_spec_payloads_are_refused_without_side_effects(
    tmp_path: Path, index: int, capsys: pytest.CaptureFixture[str]
) -> None:
    label, transforms, trace, existed = _payloads(tmp_path)[index]
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("keep")
    bundle = tiny_bundle(tmp_path / "bundle", transforms=transforms)
    assert main(["predict", "--bundle", str(bundle), "--data", BTC]) == 1, label
    err = capsys.readouterr().err
    assert "feature_spec.json" in err and "transforms[0]" in err, err
    assert trace.exists() == existed, f"{label}: the payload ran"
    assert (tmp_path / "victim" / "keep.txt").read_text() == "keep"


def test_feature_spec_payload_refused_by_a_real_cli_process(tmp_path: Path) -> None:
    """``cryptoforecast predict`` in its own interpreter: exit 1, a short error, no file."""
    trace = tmp_path / "pwned"
    payload = {"_target_": "builtins.open", "file": str(trace), "mode": "w"}
    bundle = tiny_bundle(tmp_path / "bundle", transforms=[_instantiate_entry(payload)])
    proc = subprocess.run(
        [sys.executable, "-m", "cryptoforecast.cli", "predict", "--bundle", str(bundle)]
        + ["--data", BTC],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "not a known feature transform" in proc.stderr and "Traceback" not in proc.stderr
    assert not trace.exists()


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"lags": [1], "evil": 1}, "params.evil"),
        ({"lags": ["1"]}, "params.lags.0"),
        ({"lags": "1"}, "params.lags"),
        ({"lags": [1.0]}, "params.lags.0"),
        ([1], "params"),
    ],
)
def test_bad_transform_params_name_the_file_and_key(params: Any, key: str) -> None:
    spec = FeatureSet([T.LogReturns([1])], lookback=4).to_spec()
    spec["transforms"][0]["params"] = params
    with pytest.raises(SpecError, match=rf"f\.json: transforms\[0\]\.{key}"):
        FeatureSet.from_spec(spec, source="f.json")


def test_unknown_transform_and_legacy_paths_by_exact_match_only() -> None:
    spec = FeatureSet([T.LogReturns([1])], lookback=4).to_spec()
    assert spec["transforms"][0]["transform"] == "LogReturns"  # a name, not a Python path
    spec["transforms"][0]["transform"] = "LogReturn"
    with pytest.raises(SpecError, match=r"transforms\[0\]\.transform: unknown feature transform"):
        FeatureSet.from_spec(spec, source="f.json")
    # old bundles: the exact class path maps to the registry; anything near it does not
    old = FeatureSet([T.LogReturns([1])], lookback=4).to_spec()
    entry = old["transforms"][0]
    del entry["transform"]
    old["version"] = 1
    entry["class"] = "cryptoforecast.features.transforms.LogReturns"
    assert FeatureSet.from_spec(old).names() == ["logret_1"]
    for near in (
        "cryptoforecast.features.transforms.LogReturns ",
        "cryptoforecast.features.pipeline.LogReturns",
        "cryptoforecast.features.transforms._shift",
    ):
        entry["class"] = near
        with pytest.raises(SpecError, match="not a known feature transform"):
            FeatureSet.from_spec(old)


def test_every_registered_transform_round_trips_through_its_spec() -> None:
    made = {name: cls() for name, cls in TRANSFORMS.items() if name != "TextSentiment"}
    made["TextSentiment"] = TRANSFORMS["TextSentiment"]("sample_sentiment_hourly.csv")
    assert set(made) == set(TRANSFORMS)
    for name, transform in made.items():
        spec = json.loads(json.dumps(FeatureSet([transform], lookback=2).to_spec()))
        assert spec["version"] == 2 and spec["transforms"][0]["transform"] == name
        rebuilt = FeatureSet.from_spec(spec).transforms[0]
        assert type(rebuilt) is type(transform) and rebuilt.params() == transform.params()


def test_every_configured_transform_is_registered() -> None:
    """Each ``_target_`` of conf/features is a registered transform (else it could not serve)."""
    legacy = {f"{c.__module__}.{c.__qualname__}" for c in TRANSFORMS.values()}
    targets = set()
    for path in (CONF_DIR / "features").glob("*.yaml"):
        for line in path.read_text().splitlines():
            if "_target_:" in line:
                targets.add(line.split("_target_:", 1)[1].strip())
    targets.discard("cryptoforecast.features.pipeline.FeatureSet")
    assert targets and targets <= legacy, sorted(targets - legacy)


# ---------------------------------------------------------------- manifest traversal, symlinks


def test_manifest_traversal_is_refused_by_register_and_load(tmp_path: Path) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("SECRET-CONTENT")
    bundle = tiny_bundle(tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    registry = Registry(tmp_path / "registry")
    for name in ("../outside.txt", str(secret), "sub/../../outside.txt"):
        hostile = dict(manifest, files=dict(manifest["files"]))
        hostile["files"][name] = {"sha256": _sha(secret), "bytes": secret.stat().st_size}
        (bundle / "manifest.json").write_text(json.dumps(hostile))
        with pytest.raises(BundleError, match="refused file name"):
            registry.register(bundle, "m")
        with pytest.raises(BundleError, match="refused file name"):
            Predictor.from_bundle(bundle)
    assert registry.versions("m") == []
    copied = [k for k, v in _tree(tmp_path / "registry").items() if b"SECRET" in v]
    assert copied == []


def test_symlinked_bundle_files_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "outside.json"
    secret.write_text('{"secret": 1}')
    bundle = tiny_bundle(tmp_path / "bundle")
    (bundle / "metrics.json").unlink()
    (bundle / "metrics.json").symlink_to(secret)
    write_manifest(bundle, {"model_name": "tiny"})  # checksums now match the link's target
    registry = Registry(tmp_path / "registry")
    with pytest.raises(BundleError, match="metrics.json: is a symlink"):
        registry.register(bundle, "m")
    with pytest.raises(BundleError, match="is a symlink"):
        Predictor.from_bundle(bundle)
    assert registry.versions("m") == []
    assert not any(b"secret" in v for v in _tree(tmp_path / "registry").values())


def test_unlisted_symlink_in_a_bundle_is_refused(tmp_path: Path) -> None:
    """A link the manifest does not list could still be read (e.g. as ONNX external data)."""
    secret = tmp_path / "outside.bin"
    secret.write_bytes(b"SECRET")
    bundle = tiny_bundle(tmp_path / "bundle")
    (bundle / "weights.bin").symlink_to(secret)
    registry = Registry(tmp_path / "registry")
    with pytest.raises(BundleError, match="weights.bin: is a symlink"):
        registry.register(bundle, "m")
    with pytest.raises(BundleError, match="weights.bin: is a symlink"):
        Predictor.from_bundle(bundle)
    assert not any(b"SECRET" in v for v in _tree(tmp_path / "registry").values())


def test_symlink_planted_in_a_registered_version_is_refused(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    registry.register(tiny_bundle(tmp_path / "bundle"), "m")
    version = registry.path("m:1")
    other = tiny_bundle(tmp_path / "other")
    target = version / "feature_spec.json"
    target.chmod(0o600)
    target.unlink()
    target.symlink_to(other / "feature_spec.json")
    with pytest.raises(BundleError, match="feature_spec.json: is a symlink"):
        registry.path("m:1")
    argv = ["predict", "--model", "m:1", "--registry", str(registry.root), "--data", BTC]
    assert main(argv) == 1


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- corrupt registry metadata


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"current": {"production": "1"}}'])
def test_corrupt_stages_json_is_a_clear_error(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    registry = Registry(root)
    registry.register(tiny_bundle(tmp_path / "bundle"), "m")
    registry.promote("m", 1, "production")
    stages = root / "m" / "stages.json"
    stages.write_text(text)
    with pytest.raises(RegistryError, match="stages.json"):
        registry.stages("m")
    for argv in (
        ["registry", "--root", str(root), "list"],
        ["registry", "--root", str(root), "show", "m@production"],
        ["registry", "--root", str(root), "promote", "m", "1", "--stage", "staging"],
        ["predict", "--model", "m@production", "--registry", str(root), "--data", BTC],
    ):
        capsys.readouterr()
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert str(stages) in err.replace("\n", "") and "Traceback" not in err, argv
    assert stages.read_text() == text  # promote did not overwrite the evidence


def test_corrupt_registry_json_and_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    registry = Registry(root)
    for i in range(3):
        registry.register(tiny_bundle(tmp_path / f"b{i}"), "m")
    assert main(["registry", "--root", str(root), "verify"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checked"] == 3 and report["faults"] == 0
    meta = registry.path("m:2") / "registry.json"
    meta.chmod(0o600)
    meta.write_text("{")
    with pytest.raises(RegistryError, match="registry.json: unreadable or corrupt JSON"):
        registry.show("m:2")
    onnx_file = registry.path("m:3") / "model.onnx"
    onnx_file.chmod(0o600)
    with open(onnx_file, "r+b") as fh:
        fh.seek(10)
        fh.write(b"\x00")
    assert main(["registry", "--root", str(root), "verify"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["faults"] == 2
    bad = {r["version"]: r["error"] for r in report["results"] if not r["ok"]}
    assert set(bad) == {2, 3}
    assert "registry.json" in bad[2] and "model.onnx: checksum mismatch" in bad[3]
    assert "Traceback" not in captured.err


# ---------------------------------------------------------------- retrain config payloads


def _registered_config(tmp_path: Path, payload_at: str, payload: dict[str, Any]) -> Path:
    """A registry whose one version's config.yaml is a real run config plus a payload."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                f"paths.output_dir={tmp_path / 'old_run'}",
                "data.days=30",
                "features=minimal",
                "model=naive",
                "logger=none",
            ],
        )
    OmegaConf.update(cfg, payload_at, payload, force_add=True)
    target = target_spec(cfg)
    bundle = tiny_bundle(
        tmp_path / "bundle",
        config=OmegaConf.to_yaml(cfg),
        horizons=tuple(target.horizons),
        lag=int(target.execution_lag),
    )
    root = tmp_path / "registry"
    Registry(root).register(bundle, "m")
    return root


@pytest.mark.parametrize(
    "where", ["data.evil", "features.transforms.evil", "features.transforms.log_returns.deep.evil"]
)
def test_retrain_refuses_config_payloads_before_building_anything(
    tmp_path: Path, where: str
) -> None:
    trace = tmp_path / "pwned"
    root = _registered_config(
        tmp_path, where, {"_target_": "builtins.open", "file": str(trace), "mode": "w"}
    )
    out = tmp_path / "new_run"
    with pytest.raises(RetrainError, match=rf"config.yaml: {where}\._target_ = 'builtins.open'"):
        retrain("m", registry_root=root, out_dir=out)
    assert not trace.exists()
    assert not out.exists()  # refused before the run folder was made


def test_allowed_targets_cover_the_project_configs() -> None:
    """Every class the project's own run configs name is allowed (hydra/ and sweeps aside)."""
    targets = set()
    for path in CONF_DIR.rglob("*.yaml"):
        if path.relative_to(CONF_DIR).parts[0] in ("hydra", "hparams_search"):
            continue
        for line in path.read_text().splitlines():
            if "_target_:" in line:
                targets.add(line.split("_target_:", 1)[1].split("#")[0].strip())
    legacy = {f"{c.__module__}.{c.__qualname__}" for c in TRANSFORMS.values()}
    assert targets and targets <= ALLOWED_TARGETS | legacy, sorted(targets - ALLOWED_TARGETS)


# ---------------------------------------------------------------- pickles in checkpoints


class _Payload:
    """Unpickling this calls ``open(path, "w")``: the file appears if a pickle is executed."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_checkpoint_pickle_never_executes(tmp_path: Path) -> None:
    trace = tmp_path / "pwned"
    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    checkpoint = {"callbacks": {}, "state_dict": {}, "evil": _Payload(trace)}
    torch.save(checkpoint, ckpt_dir / "last.ckpt")
    with pytest.raises(Exception, match="Weights only load failed"):
        best_checkpoint(ckpt_dir)
    assert not trace.exists()
    # the payload is live: loading it the unsafe way would have written the file
    torch.load(ckpt_dir / "last.ckpt", weights_only=False)
    assert trace.exists()


def test_resume_checkpoint_pickle_never_executes(tmp_path: Path) -> None:
    """``train.py ckpt_path=...``: Lightning loads the checkpoint weights-only; nothing runs."""
    from cryptoforecast.pipelines.train import run

    trace = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "evil": _Payload(trace)}, evil)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                f"paths.output_dir={tmp_path / 'run'}",
                "data.days=30",
                "features=minimal",
                "model=lstm",
                "model.variant=lightweight",
                "logger=none",
                "trainer.max_epochs=1",
                f"ckpt_path={evil}",
            ],
        )
    with pytest.raises(Exception, match="Weights only load failed"):
        run(cfg)
    assert not trace.exists()
