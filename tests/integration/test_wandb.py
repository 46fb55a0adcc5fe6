"""``logger=wandb`` through the real pipeline, checked by reading the offline runs from disk.

W&B is offline here (tests/conftest.py sets WANDB_MODE=offline and temp W&B folders); runs land
in ``<run folder>/wandb/offline-run-*`` and are read back with ``read_offline_run`` (the
``.wandb`` transaction log that ``wandb sync`` uploads).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig

from cryptoforecast.pipelines.train import run
from cryptoforecast.tracking.wandb_setup import read_offline_run

from .conftest import FAST, WALK_FORWARD

WANDB_FAST = tuple(o for o in FAST if not o.startswith("logger=")) + ("logger=wandb",)
# a real (tiny) fit, so Lightning logs epochs: fast_dev_run disables loggers
SHORT_FIT = ("trainer.max_epochs=2", "trainer.limit_train_batches=2")
ATTENTION_PNGS = ("attention_heads.png", "attention_by_lag.png")


def offline_runs(out: Path) -> dict[str, dict[str, Any]]:
    """Every offline run under ``out/wandb``, by run name."""
    runs = [read_offline_run(d, wait_s=10) for d in sorted((out / "wandb").glob("offline-run-*"))]
    return {r["run"]["name"]: r for r in runs}


def image_file(saved: dict[str, Any], out_run: Path, key: str) -> Path:
    """The PNG a ``wandb.Image`` summary entry points to, inside the offline run folder."""
    entry = saved["summary"][key]
    assert entry["_type"] == "image-file", entry
    return out_run / "files" / entry["path"]


def test_attention_model_run_holds_metrics_images_config_and_table(
    make_cfg: Callable[..., DictConfig], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_cfg(*WANDB_FAST, *SHORT_FIT, "tags=[unit]")
    with caplog.at_level(logging.INFO, logger="cryptoforecast.tracking.report"):
        metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    (run_dir,) = sorted((out / "wandb").glob("offline-run-*"))
    saved = read_offline_run(run_dir, wait_s=10)

    name = "attention_lstm-lightweight-BTCUSDT-1h-30d-holdout"
    assert saved["run"]["name"] == name and saved["run"]["group"] == "train"
    assert saved["run"]["project"] == "cryptoforecast" and saved["run"]["job_type"] == "train"
    assert saved["run"]["tags"] == [
        "unit",
        "attention_lstm",
        "variant:lightweight",
        "BTCUSDT",
        "1h",
        "30d",
        "holdout",
    ]
    assert saved["exit_code"] == 0

    # final numbers in the summary, equal to metrics.json (price-unit test/*, not Lightning's)
    summary = saved["summary"]
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("test/rmse", "test/mae", "baseline/rmse", "baseline_last/rmse", "ops/params"):
        assert summary[key] == pytest.approx(on_disk[key]) == pytest.approx(metrics[key])
    keys = ("backtest/total_return", "backtest/n_trades", "backtest_sign/sharpe")
    for key in (*keys, "ops/train_seconds", "data/n_test"):
        assert summary[key] == pytest.approx(on_disk[key])
    if on_disk["backtest/sharpe"] is None:  # the cost rule never traded: undefined, not logged
        assert on_disk["backtest/n_trades"] == 0 and "backtest/sharpe" not in summary
    else:
        assert summary["backtest/sharpe"] == pytest.approx(on_disk["backtest/sharpe"])

    # per-epoch curves from Lightning's WandbLogger, in this same run
    train_rows = [h for h in saved["history"] if "train/loss" in h]
    val_rows = [h for h in saved["history"] if "val/loss" in h]
    assert [h["epoch"] for h in train_rows] == [0, 1] and len(val_rows) == 2
    assert [h["trainer/global_step"] for h in train_rows] == [1, 3]

    # the resolved config, flattened to dot keys
    config = saved["config"]
    assert config["model.module.net.dropout"] == 0.1 and config["model.name"] == "attention_lstm"
    assert config["data.days"] == 30 and config["split._target_"].endswith("HoldoutSplit")
    assert config["paths.output_dir"] == str(out) and config["fold"] is None

    # figures: wandb.Image files in the run, and the same PNGs in the run folder
    for key in ("pred_vs_actual", "attention_heads", "attention_by_lag", "equity"):
        assert image_file(saved, run_dir, f"plots/{key}").read_bytes()[:4] == b"\x89PNG"
        assert (out / f"{key}.png").read_bytes()[:4] == b"\x89PNG"

    # a predictions table (every test row: fewer than 500)
    table = summary["predictions"]
    assert table["_type"] == "table-file" and table["nrows"] == on_disk["data/n_test"]
    rows = json.loads((run_dir / "files" / table["path"]).read_text())
    assert rows["columns"][:6] == ["timestamp", "symbol", "fold", "horizon", "y_true", "y_pred"]

    assert f"wandb sync {run_dir}" in caplog.text


def test_consecutive_jobs_get_separate_runs_and_lstm_has_no_attention(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    import wandb

    ids = []
    for name in ("a", "b"):
        cfg = make_cfg(*WANDB_FAST, "model=lstm", "trainer.fast_dev_run=true", out=tmp_path / name)
        run(cfg)
        assert wandb.run is None  # finished before the next job starts
        (saved,) = offline_runs(tmp_path / name).values()
        ids.append(saved["run"]["id"])
        assert saved["run"]["name"] == "lstm-lightweight-BTCUSDT-1h-30d-holdout"
        assert "plots/pred_vs_actual" in saved["summary"]
        assert not any(k.startswith("plots/attention") for k in saved["summary"])
        assert (tmp_path / name / "pred_vs_actual.png").exists()
        assert not any((tmp_path / name / png).exists() for png in ATTENTION_PNGS)
    assert ids[0] != ids[1]


def test_walk_forward_logs_a_run_per_fold_and_an_aggregate(
    make_cfg: Callable[..., DictConfig],
) -> None:
    cfg = make_cfg(*WANDB_FAST, *WALK_FORWARD, "trainer.fast_dev_run=true")
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    runs = offline_runs(out)
    base = "attention_lstm-lightweight-BTCUSDT-1h-30d-walk_forward"
    assert set(runs) == {f"{base}-fold0", f"{base}-fold1", f"{base}-aggregate"}
    assert {r["run"]["group"] for r in runs.values()} == {"train"}
    assert len({r["run"]["id"] for r in runs.values()}) == 3
    for k in (0, 1):
        fold = runs[f"{base}-fold{k}"]
        assert fold["run"]["job_type"] == "fold" and fold["config"]["fold"] == k
        assert fold["summary"]["test/rmse"] == pytest.approx(metrics[f"fold{k}/test/rmse"])
        assert "baseline/rmse" in fold["summary"] and "ops/params" in fold["summary"]
        assert {"plots/pred_vs_actual", "plots/attention_heads"} <= set(fold["summary"])
        for png in ("pred_vs_actual.png", *ATTENTION_PNGS):
            assert (out / f"fold_{k}" / png).exists()
    agg = runs[f"{base}-aggregate"]
    assert agg["run"]["job_type"] == "aggregate" and agg["exit_code"] == 0
    for key in ("wf/mae_mean", "wf/mae_std", "test/rmse", "baseline/rmse", "baseline_last/mae"):
        assert agg["summary"][key] == pytest.approx(metrics[key])
    assert agg["summary"]["backtest_sign/sharpe"] == pytest.approx(metrics["backtest_sign/sharpe"])
    assert agg["summary"]["backtest/n_trades"] == metrics["backtest/n_trades"]
    assert {"plots/pred_vs_actual", "plots/equity", "predictions"} <= set(agg["summary"])
    assert (out / "pred_vs_actual.png").exists()


def test_lightgbm_run_logs_importance_and_boosting_curves(
    make_cfg: Callable[..., DictConfig],
) -> None:
    cfg = make_cfg(*WANDB_FAST, "model=lightgbm", "+model.module.n_estimators=5")
    run(cfg)
    out = Path(cfg.paths.output_dir)
    (run_dir,) = sorted((out / "wandb").glob("offline-run-*"))
    saved = read_offline_run(run_dir, wait_s=10)
    assert image_file(saved, run_dir, "plots/feature_importance").exists()
    curve = [h for h in saved["history"] if "lgbm/h1/val" in h]
    assert [h["lgbm/round"] for h in curve] == [1, 2, 3, 4, 5]
    assert not any((out / png).exists() for png in ATTENTION_PNGS)


def test_a_failing_job_still_finishes_its_run(
    make_cfg: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    def broken(*args: object, **kwargs: object) -> dict[str, float]:
        raise RuntimeError("backtest broke")

    monkeypatch.setattr("cryptoforecast.pipelines.train.backtest_metrics", broken)
    cfg = make_cfg(*WANDB_FAST, "model=lstm", "trainer.fast_dev_run=true")
    with pytest.raises(RuntimeError, match="backtest broke"):
        run(cfg)
    assert wandb.run is None
    (saved,) = offline_runs(Path(cfg.paths.output_dir)).values()
    assert saved["exit_code"] == 1


def test_csv_and_none_loggers_write_no_wandb_files(make_cfg: Callable[..., DictConfig]) -> None:
    for logger in ("csv", "none"):
        cfg = make_cfg(*FAST, "model=lstm", f"logger={logger}", *SHORT_FIT)
        cfg.paths.output_dir = str(Path(cfg.paths.output_dir).with_name(f"run_{logger}"))
        run(cfg)
        out = Path(cfg.paths.output_dir)
        assert not (out / "wandb").exists() and (out / "pred_vs_actual.png").exists()
        assert (out / "csv" / "metrics.csv").exists() == (logger == "csv")
