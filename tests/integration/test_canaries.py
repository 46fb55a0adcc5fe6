"""Tests that catch self-deception: no skill on noise, real skill on a planted signal.

Every model is fitted on identical synthetic data through the same pipeline pieces the benchmark
uses; out-of-sample predictions are judged with the project's own statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import DictConfig

from cryptoforecast.data.synthetic import make_ohlcv
from cryptoforecast.evaluation.stats import direction_test, dm_vs
from cryptoforecast.models.factory import base_forecaster
from cryptoforecast.pipelines.train import prediction_frame, prepare

LEARNERS = [
    "lstm",
    "gru",
    "cnn_lstm",
    "attention_lstm",
    "tcn",
    "tcn_attention",
    "bilstm",
    "lightgbm",
]


def _evaluate(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, ar: float, models: list[str]
) -> dict[str, tuple[float, float, float]]:
    """{model: (directional accuracy, DM statistic vs zero, DM p-value)} on a holdout test."""
    path = tmp_path / f"syn_ar{ar}.csv"
    make_ohlcv(4000, seed=21, ar=ar).reset_index().to_csv(path, index=False)
    cfg = make_cfg(
        "data=file",
        f"data.path={path}",
        "data.days=null",
        "features=minimal",
        "features.lookback=32",
        "logger=none",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        "trainer.max_epochs=6",
        "split.test_fraction=0.25",
        out=tmp_path / "out",
    )
    _, samples, folds = prepare(cfg, tmp_path)
    fold = folds[0]
    zero = base_forecaster(cfg, "naive")
    zero.fit(samples, fold, tmp_path / "naive")
    ref = prediction_frame(samples, fold, zero.predict(samples, fold.test))
    out = {}
    for name in models:
        model = base_forecaster(cfg, name, variant="lightweight" if name != "naive" else None)
        model.fit(samples, fold, tmp_path / name)
        frame = prediction_frame(samples, fold, model.predict(samples, fold.test))
        dm = dm_vs(frame, ref, loss="squared", horizon=1)[1] if name != "naive" else None
        acc = direction_test(frame)[1].accuracy
        out[name] = (acc, dm.statistic if dm else 0.0, dm.p_value if dm else 1.0)
    return out


@pytest.mark.slow
def test_noise_canary_no_model_finds_skill_in_a_random_walk(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    res = _evaluate(make_cfg, tmp_path, ar=0.0, models=[*LEARNERS, "naive"])
    table = pd.DataFrame(res, index=["acc", "dm_stat", "dm_p"]).T
    # ~990 test samples: the hit rate's sd is 1.6 points, so 50 +- 5 points is about 3 sd
    assert table["acc"].between(0.45, 0.55).all(), table
    # nobody beats persistence significantly (two-sided DM on squared errors)
    assert not ((table["dm_stat"] < 0) & (table["dm_p"] < 0.01)).any(), table


@pytest.mark.slow
def test_planted_signal_every_learner_beats_persistence(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    # AR(1) returns with phi=0.6: with execution_lag=1 the label r[t+2] correlates 0.36 with r[t]
    res = _evaluate(make_cfg, tmp_path, ar=0.6, models=LEARNERS)
    table = pd.DataFrame(res, index=["acc", "dm_stat", "dm_p"]).T
    assert ((table["dm_stat"] < 0) & (table["dm_p"] < 0.01)).all(), table
    assert (table["acc"] > 0.56).all(), table
