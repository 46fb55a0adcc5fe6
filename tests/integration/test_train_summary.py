"""The console summary of a real ``train.py`` run: per-horizon metrics with their tests."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from cryptoforecast.evaluation.stats import dm_vs

from .conftest import FAST


def test_multi_horizon_run_prints_forecast_metrics_and_tests(
    make_cfg: Callable[..., DictConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    from cryptoforecast.pipelines.train import run

    cfg = make_cfg(*FAST, "model=lightgbm", "target.horizon=[1,4]")
    metrics = run(cfg)
    out = capsys.readouterr().out
    lines = out.splitlines()
    table = [line for line in lines if line.strip().startswith(("h1 ", "h4 "))]
    for h in (1, 4):  # before: a multi-horizon run printed backtest rows only
        for label in ("RMSE (price)", "MAE (price)", "dir. accuracy", "IC (Spearman)"):
            assert sum(line.strip().startswith(f"h{h} {label} ") for line in table) == 1
        assert math.isfinite(metrics[f"test/h{h}/dm_p"])
        assert math.isfinite(metrics[f"test/h{h}/hit_p"])
        rmse_row = next(line for line in table if line.strip().startswith(f"h{h} RMSE"))
        assert f"DM {metrics[f'test/h{h}/dm_stat']:+.2f}" in rmse_row
    # the DM numbers are those of evaluation.stats on the saved predictions
    pred = pd.read_parquet(Path(cfg.paths.output_dir) / "predictions.parquet")
    dm = dm_vs(pred, pred.assign(y_pred=0.0), horizon=4)[4]
    assert metrics["test/h4/dm_p"] == pytest.approx(dm.p_value)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["test/h4/dm_stat"] == pytest.approx(dm.statistic)
    assert any(line.strip().startswith("buy & hold") for line in lines)
