"""Paper trading replays bar by bar and agrees with the vectorised backtest and the run's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.backtest.engine import run_backtest
from cryptoforecast.cli import main
from cryptoforecast.data.sources import bundled_path, read_candle_file
from cryptoforecast.serving.paper import backtest_spec_of, paper_trade
from cryptoforecast.serving.predictor import Predictor

from .test_export_runs import run_folder
from .test_serving import bundle_of


@pytest.mark.parametrize("kind", ["attention_lstm", "lightgbm_cls"])
def test_paper_trading_agrees_with_the_backtests(kind: str) -> None:
    predictor = Predictor.from_bundle(bundle_of(kind))
    trained = pd.read_parquet(run_folder(kind) / "predictions.parquet")
    first, last = trained["timestamp"].min(), trained["timestamp"].max()
    raw = read_candle_file(bundled_path("BTCUSDT"))
    raw = raw[raw["timestamp"] >= first - pd.Timedelta(hours=predictor.history_bars + 5)]
    result = paper_trade(predictor, raw, start=first, end=last)

    # 1. bar by bar, the predictor reproduces the training pipeline's forecasts
    dec = result.decisions.set_index("timestamp")
    ref = trained.set_index("timestamp")
    assert list(dec.index) == list(ref.index)
    col = "p_up" if "p_up" in ref.columns else "y_pred"
    np.testing.assert_allclose(dec[col], ref[col], rtol=1e-5, atol=1e-7)

    # 2. the event loop trades exactly like the vectorised engine on the same decisions
    frame = predictor.prepare_candles(raw, keep_all=True)
    spec = backtest_spec_of(predictor)
    vec = run_backtest(result.decisions, frame, spec)
    pd.testing.assert_frame_equal(result.bars, vec.bars, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(result.trades, vec.trades, check_exact=False, rtol=1e-12)
    for key, value in vec.metrics.items():
        assert result.metrics[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key

    # 3. and like the training run's own backtest of its test segment
    run_bars = pd.read_parquet(run_folder(kind) / "backtest_bars.parquet")
    np.testing.assert_array_equal(result.bars["position"], run_bars["position"])
    np.testing.assert_allclose(result.bars["equity"], run_bars["equity"], rtol=1e-9)


def test_paper_trade_cli_writes_trades_equity_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trained = pd.read_parquet(run_folder("lightgbm") / "predictions.parquet")
    bundle = bundle_of("lightgbm")
    capsys.readouterr()  # the training run's console table
    start = trained["timestamp"].iloc[10]
    data = tmp_path / "candles.parquet"
    raw = read_candle_file(bundled_path("BTCUSDT"))
    raw[raw["timestamp"] >= start - pd.Timedelta(days=10)].to_parquet(data, index=False)
    out = tmp_path / "paper"
    argv = ["paper-trade", "--bundle", str(bundle), "--data", str(data)]
    assert main([*argv, "--start", start.isoformat(), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    for name in ("decisions.parquet", "equity.parquet", "trades.parquet", "metrics.json"):
        assert (out / name).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_decisions"] == summary["n_decisions"] >= 98  # start .. the last bar
    bars = pd.read_parquet(out / "equity.parquet")
    assert bars["timestamp"].iloc[0] == start + pd.Timedelta(hours=1)  # executed one bar later
