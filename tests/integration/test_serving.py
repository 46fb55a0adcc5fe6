"""Predictor on raw candles, registry loading, CLI predict, the HTTP app, no torch in serving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from cryptoforecast.cli import main
from cryptoforecast.data.sources import bundled_path, read_candle_file
from cryptoforecast.export.bundle import export_run
from cryptoforecast.registry.store import Registry
from cryptoforecast.serving.app import create_app
from cryptoforecast.serving.predictor import PredictionError, Predictor

from .test_export_runs import run_folder

_BUNDLES: dict[str, Path] = {}


def bundle_of(kind: str) -> Path:
    """One exported bundle per run kind for the whole session."""
    if kind not in _BUNDLES:
        _BUNDLES[kind] = export_run(run_folder(kind), run_folder(kind) / "serving_bundle")
    return _BUNDLES[kind]


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """The bundled BTCUSDT candles as a raw file frame (timestamp column, any order)."""
    return read_candle_file(bundled_path("BTCUSDT"))


@pytest.mark.parametrize("kind", ["attention_lstm", "lightgbm", "lightgbm_cls"])
def test_predictor_on_raw_candles_matches_the_training_predictions(
    kind: str, raw: pd.DataFrame
) -> None:
    """For each test timestamp t, candles up to t give the run's predictions.parquet value."""
    predictor = Predictor.from_bundle(bundle_of(kind))
    frame = pd.read_parquet(run_folder(kind) / "predictions.parquet")
    column = "p_up" if "p_up" in frame.columns else "y_pred"
    rows = frame.iloc[np.linspace(0, len(frame) - 1, 12).astype(int)]
    for ts, expected in rows[["timestamp", column]].itertuples(index=False):
        # only the bars up to t, a little more history than needed, newest last
        candles = raw[raw["timestamp"] <= ts].tail(predictor.min_history + 50)
        out = predictor.predict(candles)
        assert out["timestamp"] == ts.isoformat()
        got = out["forecasts"][0]["p_up" if column == "p_up" else "y_pred"]
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-7), ts
    assert out["decision_time"] == (ts + pd.Timedelta(hours=1)).isoformat()
    assert out["execution_time"] == (ts + pd.Timedelta(hours=2)).isoformat()


def test_signal_follows_the_backtest_rule(raw: pd.DataFrame) -> None:
    reg = Predictor.from_bundle(bundle_of("lightgbm"))
    out = reg.predict(raw.tail(200))
    y = out["forecasts"][0]["y_pred"]
    # the default cost rule: long only when the forecast clears the 30 bps round trip
    assert out["signal"] == {"rule": "cost", "horizon": 1, "position": float(y > 0.003)}
    cls = Predictor.from_bundle(bundle_of("lightgbm_cls"))
    out = cls.predict(raw.tail(200))
    p = out["forecasts"][0]["p_up"]
    assert 0.0 <= p <= 1.0 and out["forecasts"][0]["y_pred"] == float(p > 0.5)
    move = cls.spec["backtest"]["typical_move"]  # measured before the exported fold's test
    assert 0.0 < move < 0.05
    assert out["signal"]["rule"] == "cost"
    assert out["signal"]["position"] == (1.0 if (2 * p - 1) * move > 0.003 else 0.0)


def test_clear_errors_for_short_or_gappy_candles(raw: pd.DataFrame) -> None:
    predictor = Predictor.from_bundle(bundle_of("lightgbm"))
    need = predictor.min_history
    with pytest.raises(PredictionError, match=f"need at least {need} candles"):
        predictor.predict(raw.tail(need - 1))
    gappy = raw.tail(need + 10).drop(raw.tail(need + 10).index[-5])
    with pytest.raises(PredictionError, match="not consecutive 1h bars"):
        predictor.predict(gappy)
    bad = raw.tail(need).copy()
    bad.loc[bad.index[-1], "close"] = -1.0
    with pytest.raises(ValueError, match="non-positive close"):
        predictor.predict(bad)
    # a feature that is NaN inside the window (e.g. an external daily series that ended) is named
    real = predictor.window_features
    name = predictor.feature_set.names()[2]

    def stale(frame: pd.DataFrame) -> np.ndarray:
        window = real(frame).copy()
        window[-3:, 2] = np.nan
        return window

    predictor.window_features = stale  # type: ignore[method-assign]
    with pytest.raises(PredictionError, match=rf"\['{name}'\] are not finite.*stale"):
        predictor.predict(raw.tail(need))
    predictor.window_features = real  # type: ignore[method-assign]
    # a DatetimeIndex instead of a timestamp column, shuffled rows: same answer
    indexed = raw.tail(need).set_index("timestamp").sample(frac=1.0, random_state=0)
    assert predictor.predict(indexed) == predictor.predict(raw.tail(need))


def test_registry_loading_and_cli(
    raw: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CRYPTOFORECAST_REGISTRY", str(tmp_path / "reg"))
    assert main(["registry", "register", str(bundle_of("lightgbm")), "--name", "btc"]) == 0
    assert main(["registry", "register", str(bundle_of("attention_lstm")), "--name", "btc"]) == 0
    assert main(["registry", "promote", "btc", "1", "--stage", "production"]) == 0
    assert main(["registry", "promote", "btc", "2", "--stage", "production"]) == 0
    capsys.readouterr()
    assert main(["registry", "rollback", "btc"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
    assert main(["registry", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [{"name": "btc", "versions": [1, 2], "stages": {"production": 1}}]
    assert main(["registry", "show", "btc@production"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 1 and shown["manifest"]["model_name"] == "lightgbm"
    assert main(["registry", "show", "btc@staging"]) == 1
    assert "no staging version" in capsys.readouterr().err

    predictor = Predictor.from_registry("btc@production")
    assert predictor.source == "btc:1"
    data = tmp_path / "candles.csv"
    raw.tail(300).to_csv(data, index=False)
    assert main(["predict", "--model", "btc@production", "--data", str(data)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(predictor.predict(raw.tail(300))))
    assert (
        main(["predict", "--bundle", str(bundle_of("attention_lstm")), "--data", str(data)]) == 0
    )
    assert json.loads(capsys.readouterr().out)["timestamp"] == printed["timestamp"]
    # corrupt the production version: loading it is refused, naming the file
    onnx_file = Registry().path("btc:1", verify=False) / "model.onnx"
    onnx_file.chmod(0o644)
    onnx_file.write_bytes(onnx_file.read_bytes()[:-10])
    assert main(["predict", "--model", "btc@production", "--data", str(data)]) == 1
    assert "model.onnx: checksum mismatch" in capsys.readouterr().err


def test_http_app(raw: pd.DataFrame) -> None:
    predictor = Predictor.from_bundle(bundle_of("attention_lstm"))
    client = TestClient(create_app(predictor))
    assert client.get("/health").json() == {"status": "ok", "model": predictor.source}
    info = client.get("/model").json()
    assert info["horizons"] == [1] and info["min_history"] == predictor.min_history
    candles = raw.tail(150).copy()
    candles["timestamp"] = candles["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"candles": candles.to_dict(orient="records")}
    response = client.post("/predict", json=body)
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(predictor.predict(raw.tail(150))))
    short = client.post("/predict", json={"candles": body["candles"][:10]})
    assert short.status_code == 422 and "need at least" in short.json()["detail"]
    assert client.post("/predict", json={"candles": [{"timestamp": 1}]}).status_code == 422


def test_serving_imports_neither_torch_nor_lightning(tmp_path: Path) -> None:
    """Import and use the whole serving path (monitor included) in a fresh interpreter."""
    reg = tmp_path / "reg"
    Registry(reg).register(bundle_of("attention_lstm"), "m")
    Registry(reg).promote("m", 1, "production")
    code = f"""
import sys
from cryptoforecast.cli import main
from cryptoforecast.data.sources import bundled_path, read_candle_file
from cryptoforecast.serving.app import create_app
from cryptoforecast.serving.monitor import MonitorSpec
from cryptoforecast.serving.paper import paper_trade
from cryptoforecast.serving.predictor import Predictor
from fastapi.testclient import TestClient
p = Predictor.from_registry("m@production", root={str(reg)!r})
candles = read_candle_file(bundled_path("BTCUSDT")).tail(200)
out = p.predict(candles)
assert TestClient(create_app(p)).get("/health").status_code == 200
spec = MonitorSpec(window=12, min_periods=6, drift_window=12, drift_min_periods=12)
paper = paper_trade(p, candles, candles["timestamp"].iloc[-40], monitor=spec)
assert paper.monitor is not None and paper.monitor.summary["n_scored"] > 0
assert "matplotlib" not in sys.modules  # plotting is imported only when saving
heavy = [m for m in ("torch", "lightning", "pytorch_lightning", "lightgbm") if m in sys.modules]
print(heavy, out["forecasts"][0]["y_pred"])
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("[] "), res.stdout
