"""``cryptoforecast export``: ONNX bundles of real tiny runs, parity at B=1 and B=7, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cryptoforecast.cli import main
from cryptoforecast.export.bundle import BUNDLE_FILES, BundleError, export_run, verify_bundle

from .test_export_runs import run_folder


def _export(kind: str, tmp_path: Path, **kwargs: object) -> Path:
    return export_run(run_folder(kind), tmp_path / f"{kind}_bundle", **kwargs)  # type: ignore[arg-type]


def _graph_io(path: Path) -> tuple[list[tuple[str, list[object]]], list[str], int]:
    model = onnx.load(str(path))
    inputs = [
        (i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
        for i in model.graph.input
    ]
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return inputs, [o.name for o in model.graph.output], opset


def test_attention_net_bundle(tmp_path: Path) -> None:
    bundle = _export("attention_lstm", tmp_path)
    manifest = verify_bundle(bundle)
    assert set(BUNDLE_FILES) <= set(manifest["files"])
    inputs, outputs, opset = _graph_io(bundle / "model.onnx")
    assert inputs == [("x", ["batch", 64, 5])] and outputs == ["y_hat", "attention"]
    assert opset == 17
    parity = manifest["parity"]
    assert parity["passed"] and set(parity["batches"]) == {"1", "7"}
    assert all(v <= 1e-5 for b in parity["batches"].values() for v in b.values())
    check = manifest["predictions_check"]
    assert check["checked"] and check["max_abs_diff"] <= 1e-5 and check["rows"] > 50
    spec = json.loads((bundle / "feature_spec.json").read_text())
    assert spec["lookback"] == 64 and spec["horizons"] == [1] and spec["execution_lag"] == 1
    assert (
        spec["interval"] == "1h" and spec["symbol"] == "BTCUSDT" and spec["task"] == "regression"
    )
    assert spec["backtest"]["rule"] == "cost" and spec["backtest"]["fee_bps"] == 10.0
    assert spec["model"]["output"] == "scaled_return" and len(spec["target_scale"]) == 1
    assert "paths" in (bundle / "config.yaml").read_text()
    # dynamic batch: any batch size runs and attention rows sum to 1
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    y, attn = session.run(None, {"x": np.zeros((3, 64, 5), dtype=np.float32)})
    assert y.shape == (3, 1) and attn.shape[0] == 3
    assert np.allclose(attn.sum(-1), 1.0, atol=1e-5)


def test_lightgbm_bundles_regression_and_classifier(tmp_path: Path) -> None:
    for kind, output in (("lightgbm", "return"), ("lightgbm_cls", "p_up")):
        bundle = _export(kind, tmp_path)
        manifest = verify_bundle(bundle)
        assert manifest["parity"]["passed"]
        assert all(b["relative"] <= 1e-6 for b in manifest["parity"]["batches"].values())
        assert manifest["predictions_check"]["max_abs_diff"] <= 1e-5
        spec = json.loads((bundle / "feature_spec.json").read_text())
        assert spec["model"]["output"] == output and spec["model"]["input_dtype"] == "float64"
        assert json.loads((bundle / "scaler.json").read_text())["features"] is None
        inputs, outputs, _ = _graph_io(bundle / "model.onnx")
        assert inputs == [("x", ["batch", 64, 5])] and outputs == ["y_hat"]
    # classifiers trade p_up's implied move, (2 p_up - 1) * typical_move, against the cost
    assert spec["backtest"]["rule"] == "cost" and spec["backtest"]["typical_move"] > 0


@pytest.mark.slow
def test_classifier_net_and_walk_forward_fold(tmp_path: Path) -> None:
    bundle = _export("tcn_cls", tmp_path)
    spec = json.loads((bundle / "feature_spec.json").read_text())
    assert spec["model"]["output"] == "logit" and spec["lookback"] == 32
    assert verify_bundle(bundle)["predictions_check"]["column"] == "p_up"
    wf = run_folder("lstm_wf")
    first = export_run(wf, tmp_path / "wf0", fold=0)
    last = export_run(wf, tmp_path / "wf_last")
    m0, m1 = verify_bundle(first), verify_bundle(last)
    assert (m0["fold"], m1["fold"]) == (0, 1)
    assert m0["files"]["scaler.json"]["sha256"] != m1["files"]["scaler.json"]["sha256"]
    with pytest.raises(BundleError, match="no fold_7"):
        export_run(wf, tmp_path / "wf7", fold=7)


def test_failed_parity_leaves_no_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from cryptoforecast.export import onnx as onnx_export

    real = onnx_export.export_net

    def export_a_different_net(net: torch.nn.Module, *args: object) -> object:
        import copy

        other = copy.deepcopy(net)
        with torch.no_grad():
            other.head.bias += 0.01  # what a wrong export (or opset bug) would look like
        return real(other, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx_export, "export_net", export_a_different_net)
    out = tmp_path / "bad_bundle"
    with pytest.raises(onnx_export.ExportError, match="ONNX parity failed at batch 1"):
        export_run(run_folder("attention_lstm"), out)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no temp folder left either


def test_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptoforecast.export.onnx import ExportError

    with pytest.raises(ExportError, match="multi-symbol runs is not supported yet"):
        export_run(run_folder("multi_symbol", train=False), tmp_path / "e")
    no_ckpt = tmp_path / "fdr"
    shutil.copytree(run_folder("attention_lstm"), no_ckpt, ignore=shutil.ignore_patterns("bundle"))
    shutil.rmtree(no_ckpt / "checkpoints")
    (no_ckpt / "checkpoints").mkdir()
    with pytest.raises(BundleError, match="fast_dev_run runs write no checkpoints"):
        export_run(no_ckpt, tmp_path / "x")
    with pytest.raises(BundleError, match="no .hydra/config.yaml"):
        export_run(tmp_path, tmp_path / "y")
    taken = tmp_path / "taken"
    taken.mkdir()
    assert main(["export", str(run_folder("lightgbm")), "--out", str(taken)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli_bundle"
    assert main(["export", str(run_folder("lightgbm")), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["bundle"] == str(out) and printed["parity"]["passed"]
    verify_bundle(out)
