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
    assert (out / "benchmark.md").read_text().startswith("| model |")
    for png in ("mae_by_model.png", "equity_by_model.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # identical folds: every model predicted exactly the same timestamps
    stamps = [
        tuple(pd.read_parquet(out / f"predictions_{m}.parquet")["timestamp"]) for m in table.index
    ]
    assert len(set(stamps)) == 1
    assert "all_models_single_inference_p99_under_100ms" in res.stdout
