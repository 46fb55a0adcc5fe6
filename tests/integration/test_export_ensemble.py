"""Export of stacking ensembles as one ONNX graph: round trip, serving, refusals, corruption."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest

from cryptoforecast.data.sources import bundled_path, read_candle_file
from cryptoforecast.export.bundle import BUNDLE_FILES, BundleError, export_run, verify_bundle
from cryptoforecast.export.onnx import ExportError
from cryptoforecast.registry.store import Registry
from cryptoforecast.serving.paper import paper_trade
from cryptoforecast.serving.predictor import Predictor

from .test_export_runs import run_folder

_BUNDLES: dict[str, Path] = {}


def ensemble_bundle() -> Path:
    """The holdout ensemble (attention_lstm + LightGBM, mean meta), exported once."""
    if "ensemble" not in _BUNDLES:
        _BUNDLES["ensemble"] = export_run(
            run_folder("ensemble"), run_folder("ensemble") / "test_bundle"
        )
    return _BUNDLES["ensemble"]


def _copy_run(tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_folder("ensemble"), copy, ignore=shutil.ignore_patterns("*bundle*"))
    return copy


def test_ensemble_bundle_is_one_graph_with_parity() -> None:
    bundle = ensemble_bundle()
    manifest = verify_bundle(bundle)
    assert set(manifest["files"]) == set(BUNDLE_FILES)  # one model.onnx, no extra files
    parity = manifest["parity"]
    assert parity["passed"] and set(parity["members"]) == {"attention_lstm", "lightgbm"}
    for record in parity["members"].values():
        assert set(record["batches"]) == {"1", "7"}
    assert parity["members"]["attention_lstm"]["batches"]["7"] <= 1e-5
    assert max(parity["meta"]["batches"].values()) <= 1e-12
    check = manifest["predictions_check"]
    assert check["checked"] and check["rows"] > 50 and check["max_abs_diff"] <= 1e-5
    assert set(manifest["versions"]) >= {"torch", "lightgbm", "onnx", "onnxruntime"}

    model = onnx.load(str(bundle / "model.onnx"))
    (x,) = model.graph.input
    assert x.name == "x" and x.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim] == ["batch", 64, 5]
    assert [o.name for o in model.graph.output] == ["y_hat", "members"]
    spec = json.loads((bundle / "feature_spec.json").read_text())
    info = spec["model"]
    assert info["kind"] == "ensemble" and info["output"] == "return"
    assert info["input_dtype"] == "float64" and info["input_scaling"] == "in_graph"
    assert [m["kind"] for m in info["members"]] == ["torch", "lightgbm"]
    assert info["meta"]["weights"] == [[0.5, 0.5]] and info["meta"]["link"] == "identity"
    scaler = json.loads((bundle / "scaler.json").read_text())
    assert scaler["features"] is None and set(scaler["members"]) == {"attention_lstm"}

    # the graph is the mean of two different members, on any batch size
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    windows = rng.normal(0.0, 0.01, size=(3, 64, 5))
    y_hat, members = session.run(None, {"x": windows})
    assert y_hat.shape == (3, 1) and members.shape == (3, 1, 2)
    assert not np.allclose(members[..., 0], members[..., 1])
    np.testing.assert_allclose(y_hat, members.mean(axis=-1), rtol=0, atol=1e-15)


def test_registry_serving_and_paper_trading_reproduce_the_ensemble_run(tmp_path: Path) -> None:
    """From the registry, bar by bar on raw candles: the run's predictions.parquet again."""
    registry = Registry(tmp_path / "reg")
    registry.register(ensemble_bundle(), "ens")
    predictor = Predictor.from_registry("ens", root=tmp_path / "reg")
    assert predictor.describe()["graph"]["kind"] == "ensemble"
    trained = pd.read_parquet(run_folder("ensemble") / "predictions.parquet")
    first, last = trained["timestamp"].min(), trained["timestamp"].max()
    raw = read_candle_file(bundled_path("BTCUSDT"))
    raw = raw[raw["timestamp"] >= first - pd.Timedelta(hours=predictor.history_bars + 5)]
    decisions = paper_trade(predictor, raw, start=first, end=last).decisions
    assert list(decisions["timestamp"]) == list(trained["timestamp"])
    np.testing.assert_allclose(decisions["y_pred"], trained["y_pred"], rtol=1e-5, atol=1e-9)
    out = predictor.predict(raw[raw["timestamp"] <= last])
    assert out["forecasts"][0]["y_pred"] == pytest.approx(trained["y_pred"].iloc[-1], rel=1e-5)


def test_tampered_or_incomplete_ensemble_runs_are_refused(tmp_path: Path) -> None:
    run = _copy_run(tmp_path)
    meta_file = run / "ensemble.json"
    original = json.loads(meta_file.read_text())
    # other meta weights than the run used: the predictions check fails, nothing is left
    meta_file.write_text(json.dumps({**original, "weights": [[1.0, 0.0]]}))
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="does not reproduce"):
        export_run(run, out)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    # an ensemble.json without the meta-learner's scale (older runs): a clear refusal
    meta_file.write_text(json.dumps({k: v for k, v in original.items() if k != "scale"}))
    with pytest.raises(ExportError, match="ensemble.json: no scale"):
        export_run(run, out)
    meta_file.write_text(json.dumps(original))
    shutil.rmtree(run / "lightgbm")
    with pytest.raises(BundleError, match="lightgbm: missing"):
        export_run(run, out)
    assert not out.exists()


def test_member_graph_parity_is_enforced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from cryptoforecast.export import onnx as onnx_export

    real = onnx_export.export_net

    def export_a_different_net(net: torch.nn.Module, *args: object, **kwargs: object) -> object:
        other = copy.deepcopy(net)
        with torch.no_grad():
            other.head.bias += 0.01  # what a wrong member export would look like
        return real(other, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx_export, "export_net", export_a_different_net)
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="member attention_lstm: ONNX parity failed at batch 1"):
        export_run(run_folder("ensemble"), out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_corrupted_ensemble_bundle_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(ensemble_bundle(), bundle)
    graph = bundle / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the members' weights
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.onnx: checksum mismatch"):
        Predictor.from_bundle(bundle)


@pytest.mark.slow
def test_walk_forward_classifier_ensemble(tmp_path: Path) -> None:
    """NNLS meta on p_up (weights, scale and intercept) over an LSTM and LightGBM, per fold."""
    run = run_folder("ensemble_cls_wf")
    newest = export_run(run, tmp_path / "newest")
    first = export_run(run, tmp_path / "first", fold=0)
    m_new, m_first = verify_bundle(newest), verify_bundle(first)
    assert (m_new["fold"], m_first["fold"]) == (1, 0)
    for manifest in (m_new, m_first):
        assert manifest["parity"]["passed"]
        assert manifest["predictions_check"]["column"] == "p_up"
        assert manifest["predictions_check"]["max_abs_diff"] <= 1e-5
    spec = json.loads((newest / "feature_spec.json").read_text())
    # a weighted average of the bases' p_up, shrunk towards 0.5: identity link, no inversion
    assert spec["model"]["output"] == "p_up" and spec["model"]["meta"]["link"] == "identity"
    meta = json.loads((run / "fold_1" / "ensemble.json").read_text())
    assert spec["model"]["meta"]["intercept"] == meta["intercept"]
    for weights, intercept in zip(meta["weights"], meta["intercept"], strict=True):
        assert min(weights) >= 0.0 and sum(weights) <= 1.0 + 1e-12
        assert intercept == pytest.approx(0.5 * (1.0 - sum(weights)))
    assert m_new["files"]["model.onnx"]["sha256"] != m_first["files"]["model.onnx"]["sha256"]
    session = ort.InferenceSession(str(newest / "model.onnx"), providers=["CPUExecutionProvider"])
    (p_up,) = session.run(["y_hat"], {"x": np.zeros((7, 64, 5))})
    assert ((p_up > 0.0) & (p_up < 1.0)).all()
