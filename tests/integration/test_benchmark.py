"""python benchmark.py end to end on a small configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cryptoforecast.paths import PROJECT_ROOT


@pytest.mark.slow
def test_benchmark_writes_the_comparison(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    cmd = [
        sys.executable,
        "benchmark.py",
        "data.days=45",
        "features=minimal",
        "split.n_folds=2",
        "split.val_bars=96",
        "split.test_bars=96",
        "split.train_bars=400",
        "trainer.max_epochs=1",
        "benchmark.models=[naive,lstm,cnn_lstm,attention_lstm,lightgbm]",
        "benchmark.profile_samples=20",
        f"hydra.run.dir={out}",
    ]
    res = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(out / "benchmark.csv", index_col="model")
    assert list(table.index) == ["naive", "lstm", "cnn_lstm", "attention_lstm", "lightgbm"]
    assert table.loc["lstm", "dm_vs_naive_p"] >= 0 and table.loc["naive", "params"] == 0
    doc = json.loads((out / "benchmark.json").read_text())
    crit = doc["criteria"]
    assert "attention_lstm_mae_change_vs_cnn_lstm_pct" in crit
    assert isinstance(crit["all_models_single_inference_p99_under_100ms"], bool)
    md = (out / "benchmark.md").read_text()
    assert md.startswith("| model |") and "| sign_total_return | sign_n_trades |" in md
    assert "trade the `cost` rule" in md and "`sign_*` the `sign` rule" in md
    assert doc["rules"] == {"backtest": "cost", "sign": "sign"}
    assert table.loc["naive", "n_trades"] == 0 == table.loc["naive", "sign_n_trades"]
    for png in ("mae_by_model.png", "equity_by_model.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # identical folds: every model predicted exactly the same timestamps
    stamps = [
        tuple(pd.read_parquet(out / f"predictions_{m}.parquet")["timestamp"]) for m in table.index
    ]
    assert len(set(stamps)) == 1
    assert "all_models_single_inference_p99_under_100ms" in res.stdout


@pytest.mark.slow  # ~20 s: two cheap models on two walk-forward folds, in process
def test_benchmark_reports_both_trading_rules(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from cryptoforecast.paths import CONF_DIR
    from cryptoforecast.pipelines.benchmark import run

    out = tmp_path / "bench"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="benchmark",
            overrides=[
                f"paths.output_dir={out}",
                "data.days=45",
                "features=minimal",
                "split.n_folds=2",
                "split.val_bars=96",
                "split.test_bars=96",
                "split.train_bars=400",
                "benchmark.models=[naive,lightgbm]",
                "benchmark.reference=naive",
                "benchmark.profile_samples=5",
            ],
        )
    result = run(cfg)
    rows = result["rows"]
    # the sign rule trades LightGBM's small forecasts; the default cost rule far fewer of them
    assert rows["lightgbm"]["sign_n_trades"] > 0
    assert (
        rows["lightgbm"]["backtest"]["exposure"] <= rows["lightgbm"]["backtest_sign"]["exposure"]
    )
    assert rows["naive"]["n_trades"] == rows["naive"]["sign_n_trades"] == 0
    table = pd.read_csv(out / "benchmark.csv", index_col="model")
    assert {"n_trades", "sign_total_return", "sign_n_trades"} <= set(table.columns)
    md = (out / "benchmark.md").read_text()
    assert md.startswith("| model |") and "trade the `cost` rule" in md
    assert "`sign_*` the `sign` rule" in md
    assert json.loads((out / "benchmark.json").read_text())["rules"] == {
        "backtest": "cost",
        "sign": "sign",
    }
