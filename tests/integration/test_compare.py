"""``cryptoforecast compare`` and ``evaluation.compare`` on hand-made and on real run folders."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cryptoforecast.cli import main
from cryptoforecast.evaluation.compare import (
    comparison_table,
    differing_config,
    find_failed,
    find_runs,
    metric_filename,
    to_markdown,
)
from cryptoforecast.paths import PROJECT_ROOT

from .test_sweeps import one_thread_env

PNG = b"\x89PNG\r\n\x1a\n"
TINY_MODELS = ("attention_lstm", "tcn_attention", "lightgbm")


def tiny_runs(base: Path) -> Path:
    """A real 3-job multirun of ``train.py`` (one per model in TINY_MODELS), made once per session.

    One epoch of 3 batches (not ``fast_dev_run``), so the torch jobs keep checkpoints and CSV
    logs: ``tests/integration/test_notebooks.py`` rebuilds their models from them.
    """
    sweep = base / "tiny_multirun"
    if not (sweep / "multirun_summary.json").exists():
        cmd = [
            sys.executable,
            "train.py",
            "-m",
            f"model={','.join(TINY_MODELS)}",
            "data.days=30",
            "features=minimal",
            "model.variant=lightweight",
            "logger=csv",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            f"hydra.sweep.dir={sweep}",
        ]
        res = subprocess.run(
            cmd,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env=one_thread_env(),
        )
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return sweep


# ---------------------------------------------------------------- hand-made folders (fast)


def _run(folder: Path, metrics: dict, config: str, overrides: str = "[]") -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / ".hydra" / "config.yaml").write_text(config)
    (folder / ".hydra" / "overrides.yaml").write_text(overrides)
    return folder


CFG = """model:
  name: {model}
  module:
    _target_: {target}
    lr: {lr}
features:
  lookback: 64
paths:
  output_dir: {out}
trainer:
  default_root_dir: ${{paths.output_dir}}
target:
  horizon: 1
backtest:
  execution_lag: ${{target.horizon}}
"""


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for num, (model, lr, rmse) in enumerate(
        [("tcn", 0.1, 3.0), ("lstm", 0.2, 1.0), ("x", 0.3, None)]
    ):
        config = CFG.format(model=model, target=f"pkg.{model}", lr=lr, out=root / str(num))
        _run(root / str(num), {"test/rmse": rmse, "val/loss_best": 0.5 + num}, config)
    (root / "3").mkdir()
    (root / "3" / "FAILED.json").write_text(json.dumps({"error_type": "E", "error": "bad"}))
    (root / "0" / "checkpoints").mkdir()  # a run's sub-folders are not searched
    return root


def test_tables_hold_metrics_and_only_differing_config(sweep: Path) -> None:
    records = find_runs([sweep])
    assert [r.name for r in records] == ["0", "1", "2"]
    assert records[0].config["backtest.execution_lag"] == 1  # interpolation resolved
    # output paths differ between runs but are not settings; _target_ is named by `model`
    assert differing_config(records) == ["model.module.lr"]
    table = comparison_table(records)
    assert list(table.index) == ["1", "0", "2"]  # by test/rmse, missing value (null) last
    assert math.isnan(table.loc["2", "test/rmse"])
    assert list(table.columns) == [
        "model",
        "test/rmse",
        "val/loss_best",
        "model.module.lr",
        "path",
    ]
    desc = comparison_table(records, sort="val/loss_best", descending=True)
    assert list(desc.index) == ["2", "1", "0"]
    md = to_markdown(table)
    assert md.splitlines()[0] == "| run | model | test/rmse | val/loss_best | model.module.lr |"
    assert "| 2 | x | - | 2.5 | 0.3 |" in md
    assert find_failed([sweep]) == [(sweep / "3", "E: bad")]
    assert metric_filename("test/rmse") == "comparison_test_rmse.png"


def test_keys_only_some_runs_have_count_when_overridden(tmp_path: Path) -> None:
    base = CFG.format(model="m", target="t", lr=0.1, out=tmp_path)
    _run(tmp_path / "a", {"test/rmse": 1.0}, base)
    _run(tmp_path / "b", {"test/rmse": 1.0}, base + "extra:\n  k: 1\n", "['+extra.k=1']")
    _run(tmp_path / "c", {"test/rmse": 1.0}, base + "other: 2\n")
    assert differing_config(find_runs([tmp_path])) == ["extra.k"]


def test_benchmark_rows_map_onto_run_metrics(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "model": ["naive", "tcn"],
            "rmse": [2.0, 1.5],
            "mae": [1.0, 0.9],
            "dm_vs_naive_p": [1, 0.2],
        }
    ).to_csv(tmp_path / "benchmark.csv", index=False)
    records = find_runs([tmp_path / "benchmark.csv"])
    assert [r.name for r in records] == ["naive", "tcn"]
    tcn = records[1].metrics
    assert tcn["test/rmse"] == 1.5 and tcn["baseline/rmse"] == 2.0
    assert tcn["benchmark/dm_vs_naive_p"] == 0.2
    table = comparison_table(records, metrics=["benchmark/dm_vs_naive_p"])
    assert list(table.index) == ["tcn", "naive"] and "benchmark/dm_vs_naive_p" in table.columns


def test_cli_errors_without_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(tmp_path)]) == 1
    assert "no run" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "missing")]) == 1


# ---------------------------------------------------------------- real train.py / benchmark.py


@pytest.mark.slow
def test_compare_a_real_multirun(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tiny_runs(tmp_path_factory.getbasetemp())
    out = tmp_path / "report"
    assert main(["compare", str(sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for model in TINY_MODELS:
        assert model in printed
    table = pd.read_csv(out / "comparison.csv", index_col="run")
    assert sorted(table["model"]) == sorted(TINY_MODELS)
    assert table["test/rmse"].is_monotonic_increasing
    keys = ("test/mae", "baseline/rmse", "backtest/total_return", "backtest/n_trades")
    for key in (*keys, "backtest_sign/total_return", "ops/train_seconds"):
        assert table[key].notna().all(), key
    # the cost-aware rule may never trade: its Sharpe is then undefined (NaN), not 0
    flat = table["backtest/n_trades"] == 0
    assert table.loc[~flat, "backtest/sharpe"].notna().all()
    assert "features.lookback" in table.columns  # tcn_attention runs with lookback 128
    assert not any(c.startswith(("paths.", "hydra.")) for c in table.columns)
    assert (out / "comparison_test_rmse.png").read_bytes()[:8] == PNG
    assert (out / "comparison.md").read_text().startswith("| run | model | test/rmse |")
    # default --out: the first PATH; --desc reverses the order
    assert main(["compare", str(sweep), "--sort", "backtest_sign/total_return", "--desc"]) == 0
    desc = pd.read_csv(sweep / "comparison.csv", index_col="run")
    assert desc["backtest_sign/total_return"].is_monotonic_decreasing
    assert (sweep / "comparison_backtest_sign_total_return.png").read_bytes()[:8] == PNG


@pytest.mark.slow
def test_compare_a_real_benchmark_beside_a_multirun(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    bench = tmp_path / "bench"
    cmd = [
        sys.executable,
        "benchmark.py",
        "data.days=30",
        "features=minimal",
        "split.n_folds=2",
        "split.val_bars=96",
        "split.test_bars=96",
        "split.train_bars=200",
        "benchmark.models=[naive,lightgbm]",
        "benchmark.profile_samples=5",
        f"hydra.run.dir={bench}",
    ]
    res = subprocess.run(
        cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, env=one_thread_env()
    )
    assert res.returncode == 0, res.stderr[-3000:]
    records = find_runs([bench])
    assert [r.name for r in records] == ["naive", "lightgbm"]
    naive, lgbm = (r.metrics for r in records)
    assert naive["test/rmse"] == naive["baseline/rmse"] == lgbm["baseline/rmse"]
    assert lgbm["ops/train_seconds"] > 0 and math.isfinite(lgbm["backtest/total_return"])
    sweep = tiny_runs(tmp_path_factory.getbasetemp())
    out = tmp_path / "both"
    assert main(["compare", str(bench), str(sweep), "--out", str(out)]) == 0
    table = pd.read_csv(out / "comparison.csv", index_col="run")
    assert len(table) == 5 and table.index.is_unique
    assert {"bench/naive", "bench/lightgbm"} <= set(table.index)
