"""Best iteration / best epoch per fold in metrics.json, and the summary's warning about them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from cryptoforecast.pipelines.train import run
from cryptoforecast.utils.report import print_summary, stopped_at_start

from .conftest import FAST

WF = ("split=walk_forward", "split.n_folds=2", "split.val_bars=96", "split.test_bars=96")


@pytest.mark.slow  # ~8 s: two walk-forward folds
def test_lightgbm_that_never_beats_its_first_iteration_is_reported(
    make_cfg: Callable[..., DictConfig], caplog: pytest.LogCaptureFixture
) -> None:
    # leaves need more rows than there are: every tree is the constant, so round 1 stays best
    cfg = make_cfg(
        *FAST,
        *WF,
        "split.train_bars=300",
        "model=lightgbm",
        "+model.module.n_estimators=20",
        "model.module.early_stopping_rounds=5",
        "model.module.min_data_in_leaf=100000",
    )
    with caplog.at_level(logging.WARNING, logger="cryptoforecast.utils.report"):
        run(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["fold0/train/best_iteration_h1"] == 1.0
    assert saved["fold1/train/best_iteration_h1"] == 1.0
    warned = [r.getMessage() for r in caplog.records if "early stopping kept" in r.getMessage()]
    assert warned == [
        "early stopping kept the first iteration (h1) in 2 fit(s) (fold0, fold1): the model "
        "never beat its start on validation data"
    ]


def test_torch_runs_report_the_epoch_they_restored(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(
        *FAST,
        "model=lstm",
        "features.lookback=32",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
    )
    metrics = run(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["train/best_epoch"] == metrics["train/best_epoch"]
    assert saved["train/best_epoch"] in (1.0, 2.0) and saved["train/epochs"] == 2.0


def test_summary_warns_only_about_fits_stuck_at_their_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fine = {"test/rmse": 1.0, "fold0/train/best_iteration_h1": 40.0, "train/best_epoch": 3.0}
    assert stopped_at_start(fine) == []
    stuck = {
        "test/rmse": 1.0,
        "train/best_epoch": 1.0,
        "fold0/lightgbm/train/best_iteration_h4": 1.0,
        "fold1/lightgbm/train/best_iteration_h4": 7.0,
    }
    lines = stopped_at_start(stuck)
    assert len(lines) == 2
    assert "first iteration (h4) in 1 fit(s) (fold0/lightgbm)" in lines[0]
    assert "first epoch in 1 fit(s) (the model)" in lines[1]
    one_epoch = {"train/best_epoch": 1.0, "train/epochs": 1.0}  # nothing later to prefer
    assert stopped_at_start(one_epoch) == []
    assert len(stopped_at_start({**one_epoch, "train/epochs": 5.0})) == 1
    print_summary(stuck, title="t")
    assert "early stopping kept the first epoch" in capsys.readouterr().out
