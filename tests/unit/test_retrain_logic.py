"""The pure parts of ``pipelines.retrain``: config building, overrides, scoring, decision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig, OmegaConf

from cryptoforecast.evaluation import metrics
from cryptoforecast.pipelines.retrain import (
    RetrainError,
    apply_overrides,
    challenger_config,
    decide,
    dm_tests,
    overlap_with_training,
    point_losses,
    score,
)


def registered_config(split_target: str = "cryptoforecast.data.splits.HoldoutSplit") -> DictConfig:
    """A resolved config as a bundle's config.yaml holds it (the parts retrain touches)."""
    cfg = OmegaConf.create(
        {
            "data": {"source": "bundled", "symbol": "BTCUSDT", "days": 30, "start": "2025-01-01",
                     "end": "2026-03-06", "path": None, "interval": "1h"},
            "split": {"_target_": split_target, "val_fraction": 0.15, "n_folds": 2},
            "model": {"name": "lstm", "module": {"net": {"n_features": "???"}}},
            "callbacks": {"model_checkpoint": {"dirpath": "/old/run/checkpoints"}},
            "trainer": {"default_root_dir": "/old/run"},
            "paths": {"log_dir": "outputs", "output_dir": "/old/run"},
            "ckpt_path": "/old/run/checkpoints/last.ckpt",
            "other": "/old/runner/x",
        }
    )  # fmt: skip
    assert isinstance(cfg, DictConfig)
    return cfg


def test_challenger_config_moves_the_window_and_the_paths() -> None:
    cfg, notes = challenger_config(registered_config(), Path("/new/run"), ["data.days=20"])
    assert cfg.data.start is None and cfg.data.end is None and cfg.data.days == 20
    assert cfg.paths.output_dir == "/new/run" and cfg.trainer.default_root_dir == "/new/run"
    assert cfg.callbacks.model_checkpoint.dirpath == "/new/run/checkpoints"
    assert cfg.other == "/old/runner/x"  # only the run folder itself is a prefix
    assert cfg.ckpt_path is None and any("starts fresh" in n for n in notes)
    assert OmegaConf.is_missing(cfg.model.module.net, "n_features")  # filled at runtime
    # a holdout champion: walk-forward defaults from conf/split/walk_forward.yaml
    assert cfg.split._target_.endswith("WalkForwardSplit") and cfg.split.n_folds == 4
    assert cfg.split.val_bars == 720 and "val_fraction" not in cfg.split
    assert any("holdout" in n for n in notes)
    # a walk-forward champion keeps its own settings
    wf = "cryptoforecast.data.splits.WalkForwardSplit"
    cfg, notes = challenger_config(registered_config(wf), Path("/new/run"))
    assert cfg.split.n_folds == 2 and not any("holdout" in n for n in notes)


def test_apply_overrides_refuses_unknown_keys_and_group_choices() -> None:
    cfg = registered_config()
    apply_overrides(cfg, ["data.source=file", "data.path='/tmp/a b.csv'", "+data.extra=[1,2]"])
    assert cfg.data.source == "file" and cfg.data.path == "/tmp/a b.csv"
    assert list(cfg.data.extra) == [1, 2]
    apply_overrides(cfg, ["~data.extra", "data.end=null", "++data.new=1.5"])
    assert "extra" not in cfg.data and cfg.data.end is None and cfg.data.new == 1.5
    with pytest.raises(RetrainError, match=r"no key data\.dayz .*\+data\.dayz=3"):
        apply_overrides(cfg, ["data.dayz=3"])
    with pytest.raises(RetrainError, match="config group"):
        apply_overrides(cfg, ["model=tcn"])
    with pytest.raises(RetrainError, match="exists"):
        apply_overrides(cfg, ["+data.days=3"])
    with pytest.raises(RetrainError, match="sweeps"):
        apply_overrides(cfg, ["data.days=3,4"])
    with pytest.raises(RetrainError, match="cannot parse"):
        apply_overrides(cfg, ["data.days=[1"])


def test_decide_is_strict_and_honours_the_margin() -> None:
    assert decide(0.010, 0.009, 0.0, "mae")[:2] == (True, pytest.approx(0.1))
    assert decide(1.0, 0.75, 0.25, "mae")[0] is False  # 25% is not more than 25%
    assert decide(1.0, 0.74, 0.25, "mae")[0] is True
    promote, improvement, reason = decide(0.010, 0.010, 0.0, "mae")
    assert not promote and improvement == 0.0 and "production unchanged" in reason
    assert decide(0.010, 0.0, 1.0, "mae")[0] is False  # min_improvement=1: never promote


def test_overlap_counts_bars_inside_the_champions_training_and_purge() -> None:
    stamps = pd.date_range("2026-03-01", periods=10, freq="1h", tz="UTC")
    out = overlap_with_training(stamps, stamps[3], reach=2, step=pd.Timedelta(hours=1))
    assert out["n_in_champion_training"] == 4  # t0..t3
    assert out["n_within_purge"] == 6 and out["in_sample"] is True  # + t4, t5
    hour = pd.Timedelta(hours=1)
    clean = overlap_with_training(stamps, stamps[0] - 3 * hour, 2, hour)
    assert clean["n_within_purge"] == 0 and clean["in_sample"] is False


def test_scores_and_dm_for_regression_and_classification() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(0.0, 0.01, size=(200, 2))
    good, bad = y + rng.normal(0, 0.002, y.shape), y + rng.normal(0, 0.02, y.shape)
    s = score(y, good, [1, 4], "regression")
    assert s["mae"] == pytest.approx(
        np.mean([metrics.mae(y[:, 0], good[:, 0]), metrics.mae(y[:, 1], good[:, 1])])
    )
    assert s["per_horizon"]["4"]["directional_accuracy"] > 0.8
    dm = dm_tests(y, good, bad, [1, 4], "regression")
    assert dm["1"]["statistic"] < 0 and dm["1"]["p_value"] < 1e-6 and dm["4"]["n"] == 200
    assert dm_tests(y[:5], good[:5], bad[:5], [1, 4], "regression")["1"]["error"]

    labels = (y[:, :1] > 0).astype(float)
    p = np.clip(0.5 + 20 * good[:, :1], 0.01, 0.99)
    c = score(labels, p, [1], "classification")
    ref = metrics.classification_report(labels[:, 0], p[:, 0])
    assert c["log_loss"] == pytest.approx(ref["log_loss"])
    assert c["directional_accuracy"] == pytest.approx(ref["accuracy"])
    assert point_losses(labels[:, 0], p[:, 0], "classification").mean() == pytest.approx(
        ref["log_loss"]
    )
    coin = score(labels, np.full_like(p, 0.5), [1], "classification")
    assert coin["log_loss"] == pytest.approx(np.log(2.0))
