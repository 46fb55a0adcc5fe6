"""Every model trains through the same pipeline, in both tasks; resume and determinism hold."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import DictConfig

from cryptoforecast.models.factory import create_model, known_models
from cryptoforecast.pipelines.train import run

from .conftest import FAST

MODELS = known_models()
TORCH = [m for m in MODELS if m not in ("naive", "lightgbm", "ensemble")]


def _small(model: str) -> tuple[str, ...]:
    extra = ("+model.module.n_estimators=20",) if model == "lightgbm" else ()
    return (*FAST, f"model={model}", "features.lookback=32", *extra)


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_through_train_py(
    make_cfg: Callable[..., DictConfig], model: str, task: str
) -> None:
    cfg = make_cfg(*_small(model), "trainer.fast_dev_run=true", f"task={task}")
    metrics = run(cfg)
    pred = pd.read_parquet(Path(cfg.paths.output_dir) / "predictions.parquet")
    assert len(pred) == metrics["data/n_test"] and np.isfinite(pred["y_pred"]).all()
    if task == "classification":
        assert pred["p_up"].between(0, 1).all() and set(pred["y_true"]) <= {0.0, 1.0}
        assert {"test/accuracy", "test/precision", "test/recall", "test/f1", "test/auc"} <= set(
            metrics
        )
    else:
        assert "p_up" not in pred.columns and {"test/rmse", "test/r2"} <= set(metrics)


def test_unknown_model_lists_the_known_ones(make_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(Exception, match=r"Available options in 'model':"):
        make_cfg("model=transformerx")
    with pytest.raises(ValueError, match=r"known models: attention_lstm, "):
        create_model("transformerx", (64, 10))


@pytest.mark.parametrize("model", TORCH)
def test_create_model_matches_the_report_api(model: str) -> None:
    lit = create_model(model, input_shape=(48, 10), variant="lightweight", horizons=3)
    assert lit(torch.randn(7, 48, 10)).shape == (7, 3)


def test_create_model_builds_a_usable_ensemble() -> None:
    from cryptoforecast.models.ensemble import StackingEnsemble

    ens = create_model("ensemble", input_shape=(64, 34))
    assert isinstance(ens, StackingEnsemble) and ens.make_base is not None
    assert ens.base_models == ["attention_lstm", "tcn", "lightgbm"]


def test_resume_from_checkpoint_equals_uninterrupted_run(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    base = (*FAST, "trainer.limit_train_batches=4", "callbacks.early_stopping=null")
    run(make_cfg(*base, "trainer.max_epochs=3", out=tmp_path / "full"))
    run(make_cfg(*base, "trainer.max_epochs=1", out=tmp_path / "part"))
    last = tmp_path / "part" / "checkpoints" / "last.ckpt"
    assert last.exists()
    run(make_cfg(*base, "trainer.max_epochs=3", f"ckpt_path={last}", out=tmp_path / "resumed"))

    def weights(name: str) -> dict[str, torch.Tensor]:
        ckpt = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
        return ckpt["state_dict"]

    full, resumed = weights("full"), weights("resumed")
    assert full.keys() == resumed.keys()
    for key in full:
        torch.testing.assert_close(full[key], resumed[key], rtol=0, atol=0)
    m_full, m_res = (
        json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("full", "resumed")
    )
    for key in ("test/rmse", "test/directional_accuracy", "val/loss_best"):
        assert m_full[key] == m_res[key]


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_same_seed_same_metrics_for_every_model(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, model: str
) -> None:
    short = (*_small(model), "trainer.max_epochs=2", "trainer.limit_train_batches=3")
    out = []
    for name in ("a", "b"):
        run(make_cfg(*short, out=tmp_path / name))
        saved = json.loads((tmp_path / name / "metrics.json").read_text())
        # timing and memory vary run to run; everything else must be identical
        for key in [k for k in saved if k.startswith(("ops/latency", "ops/peak_rss"))]:
            saved.pop(key)
        saved.pop("ops/train_seconds")
        out.append(saved)
    assert out[0] == out[1]


def test_naive_methods_are_models_with_the_same_metrics(
    make_cfg: Callable[..., DictConfig],
) -> None:
    results = {}
    for method in ("zero", "last", "drift", "ma"):
        cfg = make_cfg(*FAST, "model=naive", f"model.module.method={method}")
        results[method] = run(cfg)
    # naive=zero is exactly the zero-return baseline computed beside every model
    assert results["zero"]["test/rmse"] == results["zero"]["baseline/rmse"]
    assert results["last"]["test/rmse"] == results["last"]["baseline_last/rmse"]
    assert results["drift"]["ops/params"] == 1.0 and results["ma"]["test/rmse"] > 0


def test_lookback_shorter_than_tcn_receptive_field_warns(
    make_cfg: Callable[..., DictConfig], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_cfg(*FAST, "model=tcn", "features.lookback=32", "trainer.fast_dev_run=true")
    assert make_cfg(*FAST, "model=tcn").features.lookback == 128  # model=tcn's own default
    run(cfg)
    assert "receptive field is 125 bars but the lookback is 32" in caplog.text
