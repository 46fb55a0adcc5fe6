"""``python train.py``: load, check, featurise, split, train, test, and write the run folder.

Writes into the Hydra run folder: ``metrics.json`` (flat), ``predictions.parquet`` (the
PredictionFrame of the test segment(s)), ``data_quality.json``, ``splits.json``, ``scaler.json``,
checkpoints and logger files; Hydra adds ``.hydra/config.yaml``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cryptoforecast.data.datamodule import ForecastDataModule, SampleSet, build_samples
from cryptoforecast.data.loader import load_candles
from cryptoforecast.data.schema import DataError
from cryptoforecast.data.splits import Fold
from cryptoforecast.data.targets import TargetSpec
from cryptoforecast.evaluation.predictions import make_prediction_frame, score
from cryptoforecast.models import baselines
from cryptoforecast.models.factory import build_model
from cryptoforecast.utils.report import print_summary

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and evaluate one configuration; return the flat metrics dict."""
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Lightning adds its own console handler; under Hydra the root handlers (console + the run's
    # log file) already print its records, so drop Lightning's to avoid every line twice.
    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()
    L.seed_everything(cfg.seed, workers=True)
    feature_set = instantiate(cfg.features)
    target = TargetSpec(**OmegaConf.to_container(cfg.target, resolve=True))  # type: ignore[arg-type]
    if target.kind == "direction" and cfg.model.module.get("task") != "classification":
        raise DataError(
            "target.kind=direction gives 0/1 labels, but model.module.task is "
            f"{cfg.model.module.get('task')!r}; train a classifier (task=classification with "
            "BCEWithLogitsLoss) or use target.kind=return"
        )
    candles = load_candles(instantiate(cfg.data), history_bars=feature_set.min_history)
    candles.report.save(out_dir / "data_quality.json")
    samples = build_samples(candles, feature_set, target)
    folds = instantiate(cfg.split).folds(samples.windows.timestamps, samples.step, target.reach)
    (out_dir / "splits.json").write_text(
        json.dumps([f.describe(samples.windows.timestamps) for f in folds], indent=2) + "\n"
    )

    metrics: dict[str, float] = {}
    frames, train_seconds = [], 0.0
    for fold in folds:
        frame, fold_metrics = _fit_fold(cfg, samples, fold, out_dir, multi=len(folds) > 1)
        frames.append(frame)
        train_seconds += fold_metrics.pop("ops/train_seconds")
        metrics.update(fold_metrics)
    predictions = pd.concat(frames, ignore_index=True)
    predictions.to_parquet(out_dir / "predictions.parquet", index=False)
    metrics.update(score(predictions, "test"))
    for name, fn in (
        ("baseline", baselines.zero_return),
        ("baseline_last", baselines.last_change),
    ):
        base = pd.concat(
            [_frame(samples, f, fn(samples, f.test)) for f in folds], ignore_index=True
        )
        metrics.update(score(base, name))
    metrics["ops/train_seconds"] = round(train_seconds, 3)
    metrics["data/n_features"] = samples.n_features
    for part in ("train", "val", "test"):
        metrics[f"data/n_{part}"] = int(sum(len(getattr(f, part)) for f in folds))
    write_metrics(metrics, out_dir / "metrics.json")
    print_summary(metrics, title=f"{cfg.model.name} vs persistence ({samples.symbol})")
    log.info("run folder: %s", out_dir)
    return metrics


def _fit_fold(
    cfg: DictConfig, samples: SampleSet, fold: Fold, out_dir: Path, multi: bool
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Fresh scaler, fresh model, fit on train, early-stop on val, predict the test segment."""
    fold_dir = out_dir / f"fold_{fold.number}" if multi else out_dir
    dm = ForecastDataModule(samples, fold, **cfg.datamodule)
    dm.setup("fit")
    (fold_dir).mkdir(parents=True, exist_ok=True)
    (fold_dir / "scaler.json").write_text(json.dumps(dm.state(), indent=1) + "\n")
    model = build_model(cfg.model, samples.n_features, len(samples.target.horizons))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    for cb in callbacks:  # per-fold checkpoint folders
        if hasattr(cb, "dirpath") and cb.dirpath and multi:
            cb.dirpath = str(fold_dir / "checkpoints")
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    seconds = time.perf_counter() - start
    val_best = trainer.callback_metrics.get("val/loss_best")
    best = "best" if trainer.checkpoint_callback and not trainer.fast_dev_run else None
    trainer.test(model, datamodule=dm, ckpt_path=best, verbose=False)
    batches = trainer.predict(model, datamodule=dm, ckpt_path=best)
    y_pred = dm.unscale_predictions(np.concatenate([b.float().numpy() for b in batches]))
    positions = fold.test[: len(y_pred)]  # fast_dev_run predicts one batch only
    frame = _frame(samples, fold, y_pred, positions)
    n_params = sum(p.numel() for p in model.parameters())
    result: dict[str, float] = {"ops/train_seconds": seconds, "ops/params": n_params}
    if val_best is not None:
        result["val/loss_best" if not multi else f"fold{fold.number}/val/loss_best"] = float(
            val_best
        )
    if multi:
        result.update(score(frame, f"fold{fold.number}/test"))
    return frame, result


def _frame(
    samples: SampleSet, fold: Fold, y_pred: np.ndarray, positions: np.ndarray | None = None
) -> pd.DataFrame:
    """PredictionFrame for the test samples at ``positions`` (default: the whole test segment)."""
    pos = fold.test if positions is None else positions
    rows = samples.windows.ends[pos]
    return make_prediction_frame(
        samples.windows.timestamps[pos],
        samples.symbol,
        fold.number,
        samples.target.horizons,
        samples.targets[rows],
        y_pred[: len(pos)],
        samples.base_close[rows],
    )


def write_metrics(metrics: dict[str, float], path: Path) -> None:
    """Write the flat metrics as strict JSON (NaN, e.g. the IC of a constant forecast, -> null)."""
    clean = {
        k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in metrics.items()
    }
    path.write_text(json.dumps(clean, indent=2, sort_keys=True, allow_nan=False) + "\n")


def metric_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value Hydra sweepers optimise (``optimized_metric``), or None."""
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric {name!r} not in metrics; have {sorted(metrics)}")
    return float(metrics[name])
