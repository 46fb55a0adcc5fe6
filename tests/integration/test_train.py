"""python train.py end to end through the real config, on real bundled BTCUSDT candles."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig

from cryptoforecast.data.schema import DataError
from cryptoforecast.data.sources import bundled_path, read_candle_file
from cryptoforecast.paths import PROJECT_ROOT
from cryptoforecast.pipelines.train import run

from .conftest import FAST

REQUIRED = [
    f"{p}/{m}"
    for p in ("test", "baseline")
    for m in ("rmse", "mae", "mape", "r2", "directional_accuracy", "f1")
] + ["ops/train_seconds", "ops/params", "data/n_train", "data/n_val", "data/n_test"]


def test_fast_dev_run_writes_the_run_folder(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(*FAST, "trainer.fast_dev_run=true", "profile=true")
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    assert set(REQUIRED) <= set(saved) and saved["test/rmse"] == pytest.approx(
        metrics["test/rmse"]
    )
    assert saved["ops/params"] > 1000 and saved["data/n_test"] > 50
    for key in (
        "size_mb",
        "latency_single_p50_ms",
        "latency_single_p99_ms",
        "latency_batch_p50_ms",
        "latency_batch_p99_ms",
        "peak_rss_mb",
    ):
        assert saved[f"ops/{key}"] > 0
    assert saved["ops/latency_single_p99_ms"] >= saved["ops/latency_single_p50_ms"]
    quality = json.loads((out / "data_quality.json").read_text())
    assert quality["rows"] > 30 * 24 and quality["errors"] == []
    for key in (
        "total_return",
        "sharpe",
        "max_drawdown",
        "n_trades",
        "turnover",
        "exposure",
        "bh_total_return",
        "win_rate",
        "profit_factor",
        "sortino",
        "annual_return",
    ):
        assert f"backtest/{key}" in saved and f"backtest_sign/{key}" in saved
    # backtest/* trades only moves beyond the cost (a subset of the sign rule's positions)
    assert saved["backtest/exposure"] <= saved["backtest_sign/exposure"]
    assert saved["backtest/bh_total_return"] == saved["backtest_sign/bh_total_return"]
    assert (out / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scaler = json.loads((out / "scaler.json").read_text())
    assert len(scaler["feature_names"]) == saved["data/n_features"]

    pred = pd.read_parquet(out / "predictions.parquet")
    bars = pd.read_parquet(out / "backtest_bars.parquet")
    # the first traded bar is the execution bar of the first forecast (lag 1), never earlier
    assert bars["timestamp"].iloc[0] == pred["timestamp"].min() + pd.Timedelta(hours=1)
    assert list(pred.columns[:6]) == ["timestamp", "symbol", "fold", "horizon", "y_true", "y_pred"]
    assert (pred["symbol"] == "BTCUSDT").all() and (pred["horizon"] == 1).all()
    # y_true = log(close[t+1+h] / close[t+1]) with t the last input bar (defaults: lag 1, h 1)
    raw = read_candle_file(bundled_path("BTCUSDT")).set_index("timestamp")["close"]
    for ts, y in pred[["timestamp", "y_true"]].sample(20, random_state=0).itertuples(index=False):
        t = raw.index.get_loc(ts)
        assert y == pytest.approx(np.log(raw.iloc[t + 2] / raw.iloc[t + 1]), rel=1e-12)
    assert pred["timestamp"].max() < raw.index[-2]  # no label past the data


def test_same_seed_gives_identical_metrics(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    short = (*FAST, "trainer.max_epochs=2", "trainer.limit_train_batches=3")
    results = []
    for name in ("a", "b"):
        run(make_cfg(*short, out=tmp_path / name))
        saved = json.loads((tmp_path / name / "metrics.json").read_text())
        # timing and memory vary run to run; everything else must be identical
        for key in [k for k in saved if k.startswith(("ops/latency", "ops/peak_rss"))]:
            saved.pop(key)
        saved.pop("ops/train_seconds")
        results.append(saved)
    assert results[0] == results[1]
    pa, pb = (pd.read_parquet(tmp_path / n / "predictions.parquet") for n in ("a", "b"))
    pd.testing.assert_frame_equal(pa, pb)


def test_walk_forward_split_trains_a_model_per_fold(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(
        *FAST,
        "trainer.fast_dev_run=true",
        "split=walk_forward",
        "split.n_folds=2",
        "split.val_bars=72",
        "split.test_bars=72",
        "split.train_bars=200",
    )
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    pred = pd.read_parquet(out / "predictions.parquet")
    assert sorted(pred["fold"].unique()) == [0, 1]
    assert pred.groupby("fold")["timestamp"].max()[0] < pred.groupby("fold")["timestamp"].min()[1]
    assert "fold0/test/rmse" in metrics and "fold1/test/rmse" in metrics
    folds = [metrics["fold0/test/mae"], metrics["fold1/test/mae"]]
    assert metrics["wf/mae_mean"] == pytest.approx(np.mean(folds))
    assert metrics["wf/mae_std"] == pytest.approx(np.std(folds, ddof=1))
    assert (out / "fold_0" / "scaler.json").exists() and (out / "fold_1" / "scaler.json").exists()
    splits = json.loads((out / "splits.json").read_text())
    assert [s["fold"] for s in splits] == [0, 1]


def test_multi_horizon_predictions_carry_the_horizon(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(*FAST, "trainer.fast_dev_run=true", "target.horizon=[1,4,24]")
    metrics = run(cfg)
    pred = pd.read_parquet(Path(cfg.paths.output_dir) / "predictions.parquet")
    assert sorted(pred["horizon"].unique()) == [1, 4, 24]
    assert {"test/h1/rmse", "test/h24/rmse", "baseline/h4/mae"} <= set(metrics)


def test_too_little_data_fails_with_the_numbers(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(*FAST, "trainer.fast_dev_run=true", "data.days=1", "target.horizon=24")
    with pytest.raises(
        DataError,
        match=r"no valid samples: 24 bars in the requested span .* "
        r"25 bars of label \(execution_lag 1 \+ horizon 24\)",
    ):
        run(cfg)
    cfg = make_cfg(*FAST, "trainer.fast_dev_run=true", "split=walk_forward", "split.n_folds=40")
    with pytest.raises(DataError, match=r"fold 0 has too few samples \{'train': 0"):
        run(cfg)


@pytest.mark.slow
def test_train_py_entry_point(tmp_path: Path) -> None:
    """The real Hydra app: run folder, resolved config, exit code 0."""
    out = tmp_path / "hydra_run"
    res = subprocess.run(
        [sys.executable, "train.py", *FAST, "trainer.fast_dev_run=true", f"hydra.run.dir={out}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / ".hydra" / "config.yaml").exists() and (out / "metrics.json").exists()
    assert "persistence" in res.stdout


def test_target_kind_must_agree_with_task(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(*FAST, "trainer.fast_dev_run=true", "target.kind=direction")
    with pytest.raises(DataError, match="target.kind=direction contradicts task=regression"):
        run(cfg)


def test_models_without_validation_loss_finish_through_train_py(tmp_path: Path) -> None:
    """naive has no val/loss_best (the sweep metric): the run must still end cleanly."""
    out = tmp_path / "naive_run"
    res = subprocess.run(
        [sys.executable, "train.py", *FAST, "model=naive", f"hydra.run.dir={out}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "optimized_metric 'val/loss_best' is not among" in res.stdout + res.stderr
