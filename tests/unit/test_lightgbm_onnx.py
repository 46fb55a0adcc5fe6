"""LightGBM -> ONNX: every split keeps LightGBM's own double threshold."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np

from cryptoforecast.export.lightgbm_onnx import export_lightgbm, verify_lightgbm_parity
from cryptoforecast.models.lightgbm_forecaster import LightGBMForecaster


def _forecaster(x: np.ndarray, y: np.ndarray, **params: float) -> LightGBMForecaster:
    model = LightGBMForecaster(objective="regression", inputs="features")
    train = lgb.Dataset(x, y, params={"max_bin": 1023})
    booster = lgb.train(
        {
            "objective": "regression",
            "min_data_in_leaf": 2,
            "num_leaves": 31,
            "verbose": -1,
            "max_bin": 1023,
            "seed": 0,
            **params,
        },
        train,
        num_boost_round=20,
    )
    model.boosters, model.horizons, model.best_iterations = [booster], [1], [20]
    model.feature_names, model.lookback = [f"f{i}" for i in range(x.shape[1])], 1
    return model


def test_thresholds_that_round_to_one_float32_keep_their_branches(tmp_path: Path) -> None:
    # Feature values 1e-9 apart: a tree splits the same feature at doubles that are all the
    # same float32, so matching thresholds by value is ambiguous; the export walks the trees.
    rng = np.random.default_rng(0)
    k = np.arange(400, dtype=np.float64)
    x = np.column_stack([1.0 + k * 1e-9, rng.normal(size=400)])
    y = np.sin(k / 20.0) + 0.1 * rng.normal(size=400)
    model = _forecaster(x, y)
    thresholds = {
        node["threshold"]
        for info in model.boosters[0].dump_model()["tree_info"]
        for node in _splits(info["tree_structure"])
        if node["split_feature"] == 0
    }
    assert len({float(np.float32(t)) for t in thresholds}) < len(thresholds)  # the hard case
    path = tmp_path / "model.onnx"
    export_lightgbm(model, 2, path)
    record = verify_lightgbm_parity(model, path, x[:, None, :])
    assert record["passed"]
    import onnxruntime as ort

    (got,) = ort.InferenceSession(str(path)).run(["y_hat"], {"x": x[:, None, :]})
    ref = model.boosters[0].predict(x, num_iteration=20)
    np.testing.assert_allclose(got[:, 0], ref, atol=1e-5)


def test_near_constant_model_passes_parity_with_an_absolute_floor(tmp_path: Path) -> None:
    # Outputs ~1e-6 whose float32 rounding is ~1e-12: a purely relative tolerance refused it.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 3))
    y = 1e-6 + 1e-3 * rng.normal(size=300)
    model = _forecaster(x, y, learning_rate=0.5, lambda_l2=0.0)
    path = tmp_path / "model.onnx"
    export_lightgbm(model, 3, path)
    record = verify_lightgbm_parity(model, path, x[:, None, :])
    assert record["passed"] and record["atol"] > 0


def _splits(node: dict) -> list[dict]:
    if "split_feature" not in node:
        return []
    return [node, *_splits(node["left_child"]), *_splits(node["right_child"])]
