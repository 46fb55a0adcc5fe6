"""debug=fdr is a fast smoke test; the speed profile runs only with profile=true; quick mode."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from cryptoforecast.paths import CONF_DIR
from cryptoforecast.pipelines.benchmark import smoke_note
from cryptoforecast.pipelines.train import run

from .conftest import FAST

PROFILE_KEYS = ("ops/size_mb", "ops/latency_single_p50_ms", "ops/peak_rss_mb")


def test_debug_fdr_predicts_a_handful_and_skips_profile_and_figures(
    make_cfg: Callable[..., DictConfig],
) -> None:
    cfg = make_cfg(*FAST, "debug=fdr")
    assert cfg.plots is False and cfg.limit_test_windows == 64
    run(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    assert not [k for k in PROFILE_KEYS if k in saved]
    assert saved["data/n_test"] == 64 and "ops/params" in saved  # fit's own ops keys stay
    assert len(pd.read_parquet(out / "predictions.parquet")) == 64
    assert json.loads((out / "splits.json").read_text())[0]["n_test"] == 64
    for png in ("pred_vs_actual.png", "attention_heads.png", "attention_by_lag.png"):
        assert not (out / png).exists()
    assert (out / "equity.png").exists()


def test_profile_true_says_so_and_records_the_ops_keys(
    make_cfg: Callable[..., DictConfig], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg = make_cfg(*FAST, "model=lstm", "trainer.fast_dev_run=true", "limit_test_windows=32")
    cfg.profile = True
    run(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert all(saved[k] > 0 for k in PROFILE_KEYS)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("profiling lstm: 100 single + 10 batch") for m in messages)
    assert any(m.startswith("profile TorchForecaster: size") for m in messages)  # its result


def test_profile_is_off_in_the_sweeps_and_debug_presets(tmp_path: Path) -> None:
    def compose_train(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(
                config_name="train", overrides=[f"paths.output_dir={tmp_path}", *overrides]
            )

    assert compose_train().profile is True
    for override in ("debug=default", "debug=fdr", "hparams_search=tcn_optuna"):
        assert compose_train(override).profile is False, override


def test_quick_benchmark_is_small_and_labelled_a_smoke_preset(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="benchmark",
            overrides=[f"paths.output_dir={tmp_path}", "benchmark=quick"],
            return_hydra_config=False,
        )
        default = compose(config_name="benchmark", overrides=[f"paths.output_dir={tmp_path}"])
    assert len(cfg.benchmark.models) < len(default.benchmark.models)
    assert cfg.split.n_folds < default.split.n_folds and cfg.data.days < default.data.days
    assert cfg.trainer.max_epochs <= 2 and cfg.benchmark.variant == "lightweight"
    note = smoke_note(cfg)
    assert note is not None and "NOT A RESULT" in note and "120 days, 2 folds" in note
    assert smoke_note(default) is None
