"""``train.py model=tft`` on real bundled data writes its variable importances and attention.

Holdout: ``variable_importance.csv`` / ``.png`` in the run folder. Walk-forward with W&B
(offline): the same files in every ``fold_<k>/`` and the figure in each fold's W&B run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig

from cryptoforecast.pipelines.train import run
from cryptoforecast.tracking.importance import IMPORTANCE_CSV, IMPORTANCE_PNG
from cryptoforecast.tracking.wandb_setup import read_offline_run

from .conftest import FAST

ONE_EPOCH = ("model=tft", "trainer.max_epochs=1", "trainer.limit_train_batches=4")


def _check_importance(folder: Path) -> pd.DataFrame:
    table = pd.read_csv(folder / IMPORTANCE_CSV)
    assert list(table.columns) == ["feature", "importance", "importance_last_step", "rank"]
    assert table["importance"].sum() == pytest.approx(1.0, abs=1e-6)
    assert table["importance_last_step"].sum() == pytest.approx(1.0, abs=1e-6)
    assert table["importance"].is_monotonic_decreasing and (table["importance"] > 0).all()
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert (folder / IMPORTANCE_PNG).read_bytes()[:4] == b"\x89PNG"
    return table


def test_tft_trains_and_writes_variable_importance(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg(*FAST, *ONE_EPOCH)
    assert cfg.model.variant == "lightweight"
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    pred = pd.read_parquet(out / "predictions.parquet")
    assert len(pred) == metrics["data/n_test"] and np.isfinite(pred["y_pred"]).all()
    table = _check_importance(out)
    assert len(table) == metrics["data/n_features"]
    names = json.loads((out / "scaler.json").read_text())["feature_names"]
    assert sorted(table["feature"]) == sorted(names)
    for png in ("attention_heads.png", "attention_by_lag.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_tft_walk_forward_logs_importance_per_fold_to_wandb(
    make_cfg: Callable[..., DictConfig],
) -> None:
    fast = tuple(o for o in FAST if not o.startswith("logger="))
    walk_forward = (
        "split=walk_forward",
        "split.n_folds=2",
        "split.val_bars=72",
        "split.test_bars=72",
        "split.train_bars=200",
    )
    cfg = make_cfg(*fast, "logger=wandb", *ONE_EPOCH, *walk_forward)
    run(cfg)
    out = Path(cfg.paths.output_dir)
    tables = [_check_importance(out / f"fold_{k}") for k in (0, 1)]
    assert not tables[0]["importance"].equals(tables[1]["importance"]), "a fresh model per fold"
    runs = [read_offline_run(d, wait_s=10) for d in sorted((out / "wandb").glob("offline-run-*"))]
    by_name = {r["run"]["name"]: r for r in runs}
    for k in (0, 1):
        saved = by_name[f"tft-lightweight-BTCUSDT-1h-30d-walk_forward-fold{k}"]
        for key in ("variable_importance", "attention_heads", "attention_by_lag"):
            assert saved["summary"][f"plots/{key}"]["_type"] == "image-file", key
