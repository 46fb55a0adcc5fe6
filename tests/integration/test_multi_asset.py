"""``data.symbols=[BTCUSDT,ETHUSDT]`` end to end on the real bundled candles."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from cryptoforecast.data.audit import audit_purge, audit_time_alignment, audit_windows
from cryptoforecast.data.from_config import run_data
from cryptoforecast.data.schema import DataError
from cryptoforecast.data.sources import bundled_path, read_candle_file
from cryptoforecast.evaluation.predictions import score
from cryptoforecast.pipelines import benchmark
from cryptoforecast.pipelines.train import run

from .conftest import FAST

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
BOTH = "data.symbols=[BTCUSDT,ETHUSDT]"
WALK = (
    "split=walk_forward",
    "split.n_folds=2",
    "split.val_bars=72",
    "split.test_bars=72",
    "split.train_bars=200",
)
METRICS = ("rmse", "mae", "directional_accuracy", "ic")


def _check_per_symbol_metrics(out: Path, saved: dict[str, float]) -> pd.DataFrame:
    """Per-symbol keys exist and equal the scores of that symbol's rows of predictions.parquet."""
    pred = pd.read_parquet(out / "predictions.parquet")
    assert sorted(pred["symbol"].unique()) == SYMBOLS
    counts = pred["symbol"].value_counts()
    assert counts["BTCUSDT"] == counts["ETHUSDT"]  # identical outage gaps in the bundled data
    for sym in SYMBOLS:
        mine = score(pred[pred["symbol"] == sym], "x")
        for m in METRICS:
            assert saved[f"test/{sym}/{m}"] == pytest.approx(mine[f"x/{m}"], nan_ok=True)
            assert f"baseline/{sym}/{m}" in saved and f"baseline_last/{sym}/{m}" in saved
    pooled = score(pred, "x")
    assert saved["test/rmse"] == pytest.approx(pooled["x/rmse"])
    return pred


def test_lightgbm_on_two_symbols(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(*FAST, "model=lightgbm", BOTH)
    run(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    pred = _check_per_symbol_metrics(out, saved)
    assert saved["data/n_features"] == 5 + 2  # minimal features + one-hot symbol columns
    assert saved["data/BTCUSDT/n_test"] + saved["data/ETHUSDT/n_test"] == saved["data/n_test"]
    importance = pd.read_csv(out / "feature_importance.csv")
    assert {"symbol_BTCUSDT", "symbol_ETHUSDT"} <= set(importance["feature"])
    # each symbol's labels come from its own candles: y = log(close[t+2] / close[t+1])
    raw = read_candle_file(bundled_path("ETHUSDT")).set_index("timestamp")["close"]
    eth = pred[pred["symbol"] == "ETHUSDT"].sample(10, random_state=0)
    for ts, y in eth[["timestamp", "y_true"]].itertuples(index=False):
        t = raw.index.get_loc(ts)
        assert y == pytest.approx(np.log(raw.iloc[t + 2] / raw.iloc[t + 1]), rel=1e-12)
    # one backtest per symbol on its own candles; backtest/* is their equal-weight portfolio
    bars = pd.read_parquet(out / "backtest_bars.parquet")
    assert bars.columns[0] == "symbol" and sorted(bars["symbol"].unique()) == SYMBOLS
    for sym in SYMBOLS:
        mine = bars[bars["symbol"] == sym]
        assert saved[f"backtest/{sym}/total_return"] == pytest.approx(
            mine["equity"].iloc[-1] - 1.0
        )
        assert (out / f"equity_{sym}.png").exists()
    n_trades = saved["backtest/BTCUSDT/n_trades"] + saved["backtest/ETHUSDT/n_trades"]
    assert saved["backtest/n_trades"] == n_trades
    net = bars.pivot(index="timestamp", columns="symbol", values="net").fillna(0.0).mean(axis=1)
    assert saved["backtest/total_return"] == pytest.approx(np.prod(1.0 + net) - 1.0)
    quality = json.loads((out / "data_quality.json").read_text())
    assert sorted(quality) == SYMBOLS and all(q["errors"] == [] for q in quality.values())
    splits = json.loads((out / "splits.json").read_text())
    assert splits[0]["symbols"]["ETHUSDT"]["n_test"] == saved["data/ETHUSDT/n_test"]


@pytest.mark.slow
def test_attention_lstm_walk_forward_on_two_symbols(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(*FAST, "model=attention_lstm", "trainer.max_epochs=1", BOTH, *WALK)
    run(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    pred = _check_per_symbol_metrics(out, saved)
    for sym in SYMBOLS:
        assert {f"fold0/test/{sym}/rmse", f"fold1/test/{sym}/rmse"} <= set(saved)
        folds = [saved[f"fold{k}/test/{sym}/mae"] for k in (0, 1)]
        assert saved[f"wf/{sym}/mae_mean"] == pytest.approx(np.mean(folds))
    # every fold tests both symbols on exactly the same bars
    for _, part in pred.groupby("fold"):
        times = {s: set(g["timestamp"]) for s, g in part.groupby("symbol")}
        assert times["BTCUSDT"] == times["ETHUSDT"]
    scaler = json.loads((out / "fold_1" / "scaler.json").read_text())
    assert scaler["feature_names"][-2:] == ["symbol_BTCUSDT", "symbol_ETHUSDT"]


def test_walk_forward_folds_are_identical_in_time_for_both_symbols(
    make_cfg: Callable[..., DictConfig],
) -> None:
    data = run_data(make_cfg(*FAST, BOTH, *WALK))
    s = data.samples
    assert list(data.candles_by_symbol) == SYMBOLS and s.symbols == SYMBOLS
    assert audit_windows(s) == []
    names = s.sample_symbols()
    for fold in data.folds:
        assert audit_purge(s, fold) == [] and audit_time_alignment(s, fold) == []
        for part in ("train", "val", "test"):
            pos = getattr(fold, part)
            btc, eth = (s.windows.timestamps[pos[names[pos] == sym]] for sym in SYMBOLS)
            assert len(btc) and btc.equals(eth)
    with pytest.raises(DataError, match=r"trains on \['BTCUSDT', 'ETHUSDT'\]"):
        _ = data.candles


def test_single_symbol_runs_gain_no_symbol_keys(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(*FAST, "model=naive")
    run(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    assert not [k for k in saved if "USDT" in k]
    assert {"test/rmse", "baseline/rmse", "backtest/sharpe"} <= set(saved)
    assert saved["data/n_features"] == 5
    assert "rows" in json.loads((out / "data_quality.json").read_text())  # one flat report
    assert "symbols" not in json.loads((out / "splits.json").read_text())[0]
    assert "symbol" not in pd.read_parquet(out / "backtest_bars.parquet").columns


def test_contradictory_or_unknown_symbols_fail_clearly(
    make_cfg: Callable[..., DictConfig],
) -> None:
    with pytest.raises(DataError, match="no bundled data for symbol='SOLUSDT'"):
        run_data(make_cfg(*FAST, "data.symbols=[BTCUSDT,SOLUSDT]"))
    # DataSpec's own checks reach the caller wrapped by Hydra's instantiate, message intact
    with pytest.raises(InstantiationException, match="data.symbol=BTCUSDT is not in"):
        run_data(make_cfg(*FAST, "data.symbols=[ETHUSDT,SOLUSDT]"))
    with pytest.raises(InstantiationException, match=r"repeats \['BTCUSDT'\]"):
        run_data(make_cfg(*FAST, "data.symbols=[BTCUSDT,BTCUSDT]"))
    with pytest.raises(ValueError, match="benchmark.py compares models on one symbol"):
        benchmark.run(make_cfg(*FAST, BOTH))
