"""``python train.py``: load, check, featurise, split, train, test, and write the run folder.

Writes into the Hydra run folder: ``metrics.json`` (flat), ``predictions.parquet`` (the
PredictionFrame of the test segment(s)), ``data_quality.json``, ``splits.json``, ``scaler.json``,
model artefacts (checkpoints, LightGBM importance), ``equity.png``, ``pred_vs_actual.png``
(attention models also ``attention_heads.png`` and ``attention_by_lag.png``) and logger files
(``logger=wandb``: ``wandb/offline-run-*`` when not logged in to W&B); Hydra adds
``.hydra/config.yaml``. With ``split=walk_forward`` each fold trains a fresh model and scaler in
``fold_<k>/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from cryptoforecast.backtest.engine import BacktestSpec, run_backtest
from cryptoforecast.backtest.plots import plot_equity
from cryptoforecast.data.datamodule import SampleSet
from cryptoforecast.data.from_config import run_data
from cryptoforecast.data.loader import Candles
from cryptoforecast.data.splits import Fold
from cryptoforecast.evaluation.predictions import make_prediction_frame, score
from cryptoforecast.evaluation.profiling import profile_forecaster
from cryptoforecast.models.baselines import NaiveForecaster
from cryptoforecast.models.factory import build_forecaster
from cryptoforecast.tracking.plots import plot_pred_vs_actual
from cryptoforecast.tracking.report import (
    finish_open_run,
    finish_run,
    fold_figures,
    log_fit_curves,
    log_results,
    start_run,
)
from cryptoforecast.utils.report import print_summary

log = logging.getLogger(__name__)

# name in metrics.json -> naive method; computed beside every model on the same samples
BASELINES = {"baseline": "zero", "baseline_last": "last"}


def quiet_lightning_console() -> None:
    """Drop Lightning's own console handler when the root logger has handlers (under Hydra:
    console + the run's log file), so each Lightning message is printed once, not twice."""
    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()


def prepare(cfg: DictConfig, out_dir: Path) -> tuple[Candles, SampleSet, list[Fold]]:
    """Build the run's data once, then save the quality report and the splits in the run folder.

    See :func:`cryptoforecast.data.from_config.run_data`.
    """
    data = run_data(cfg)
    data.candles.report.save(out_dir / "data_quality.json")
    stamps = data.samples.windows.timestamps
    (out_dir / "splits.json").write_text(
        json.dumps([f.describe(stamps) for f in data.folds], indent=2) + "\n"
    )
    return data.candles, data.samples, data.folds


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and evaluate one configuration; return the flat metrics dict.

    With ``logger=wandb``: one W&B run for the job, or under walk-forward one run per fold plus
    an aggregate run (:mod:`cryptoforecast.tracking.report`). A run still open when the job
    ends, normally or not, is finished here, so folds and multirun jobs never share a run.
    """
    try:
        return _run(cfg)
    except BaseException:
        finish_open_run(cfg, failed=True)
        raise
    finally:
        finish_open_run(cfg)


def _run(cfg: DictConfig) -> dict[str, float]:
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet_lightning_console()
    L.seed_everything(cfg.seed, workers=True)
    candles, samples, folds = prepare(cfg, out_dir)

    multi = len(folds) > 1
    job_run = None if multi else start_run(cfg)  # walk-forward: per-fold runs + an aggregate
    metrics: dict[str, float] = {}
    frames: dict[str, list[pd.DataFrame]] = {"test": [], **{name: [] for name in BASELINES}}
    ops: dict[str, float] = {}
    for fold in folds:
        fold_dir = out_dir / f"fold_{fold.number}" if multi else out_dir
        fold_run = start_run(cfg, fold.number) if multi else job_run
        model = build_forecaster(cfg)
        fit_metrics = model.fit(samples, fold, fold_dir)
        frame = prediction_frame(samples, fold, model.predict(samples, fold.test))
        frames["test"].append(frame)
        for name, method in BASELINES.items():
            naive = NaiveForecaster(method)
            naive.fit(samples, fold, fold_dir)
            frames[name].append(prediction_frame(samples, fold, naive.predict(samples, fold.test)))
        for key, value in fit_metrics.items():
            if key.startswith("ops/"):
                ops[key] = ops.get(key, 0.0) + value if key != "ops/params" else value
            else:
                metrics[f"fold{fold.number}/{key}" if multi else key] = value
        fold_scores = score(frame, "test") if multi else {}
        metrics.update({f"fold{fold.number}/{k}": v for k, v in fold_scores.items()})
        title = f"{cfg.model.name} ({samples.symbol})" + (f" fold {fold.number}" if multi else "")
        images = fold_figures(model, samples, fold, frame, fold_dir, title)
        log_fit_curves(fold_run, model)
        if multi:
            fold_metrics = dict(fit_metrics, **fold_scores)
            for name in BASELINES:
                fold_metrics.update(score(frames[name][-1], name))
            log_results(fold_run, fold_metrics, images, frame)
            finish_run(fold_run)
    if multi:
        metrics.update(fold_aggregates(metrics, len(folds)))
    fold_val = [v for k, v in metrics.items() if k.endswith("/val/loss_best")]
    if fold_val:  # walk-forward: what a sweep optimises is the mean over folds (never test)
        metrics["val/loss_best"] = float(np.mean(fold_val))
    predictions = pd.concat(frames["test"], ignore_index=True)
    predictions.to_parquet(out_dir / "predictions.parquet", index=False)
    metrics.update(score(predictions, "test"))
    for name in BASELINES:
        metrics.update(score(pd.concat(frames[name], ignore_index=True), name))
    # Operational profile of the (last fold's) fitted model: size, warm latency, peak RSS.
    ops.update(profile_forecaster(model, samples, folds[-1].test, n_single=100, n_batch=10))
    metrics.update({k: round(v, 3) if k == "ops/train_seconds" else v for k, v in ops.items()})
    metrics["data/n_features"] = samples.n_features
    for part in ("train", "val", "test"):
        metrics[f"data/n_{part}"] = int(sum(len(getattr(f, part)) for f in folds))
    metrics.update(backtest_metrics(cfg, predictions, candles, out_dir))
    write_metrics(metrics, out_dir / "metrics.json")
    print_summary(metrics, title=f"{cfg.model.name} vs persistence ({samples.symbol})")
    if multi:  # the pooled out-of-sample figure (each fold's is in fold_<k>/) and its own run
        pooled = plot_pred_vs_actual(
            predictions, out_dir / "pred_vs_actual.png", f"{cfg.model.name}: all folds"
        )
        images = {"pred_vs_actual": pooled}
        job_run = start_run(cfg, aggregate=True)
    log_results(job_run, metrics, {**images, "equity": out_dir / "equity.png"}, predictions)
    finish_run(job_run)
    log.info("run folder: %s", out_dir)
    return metrics


def prediction_frame(samples: SampleSet, fold: Fold, y_pred: np.ndarray) -> pd.DataFrame:
    """PredictionFrame of a fold's test samples; classifiers' outputs are p_up."""
    pos = fold.test
    rows = samples.windows.ends[pos]
    common = (
        samples.windows.timestamps[pos],
        samples.symbol,
        fold.number,
        samples.target.horizons,
        samples.targets[rows],
    )
    if samples.target.kind == "direction":
        return make_prediction_frame(
            *common, (y_pred > 0.5).astype("float64"), samples.base_close[rows], p_up=y_pred
        )
    return make_prediction_frame(*common, y_pred, samples.base_close[rows])


def backtest_spec(cfg: DictConfig, kind: str) -> BacktestSpec:
    """The configured backtest; a classifier's frame trades on ``p_up`` (rule ``probability``)."""
    spec: BacktestSpec = instantiate(cfg.backtest)
    if kind == "direction" and spec.rule == "sign":
        spec = dataclasses.replace(spec, rule="probability")
    return spec


def backtest_metrics(
    cfg: DictConfig, predictions: pd.DataFrame, candles: Candles, out_dir: Path
) -> dict[str, float]:
    """Backtest the out-of-sample predictions after costs: ``backtest/*`` keys + equity PNG."""
    kind = "direction" if "p_up" in predictions.columns else "return"
    result = run_backtest(predictions, candles.frame, backtest_spec(cfg, kind))
    result.bars.to_parquet(out_dir / "backtest_bars.parquet", index=False)
    result.trades.to_parquet(out_dir / "backtest_trades.parquet", index=False)
    plot_equity(
        result, out_dir / "equity.png", title=f"{cfg.model.name}: out-of-sample, after costs"
    )
    return {f"backtest/{k}": v for k, v in result.metrics.items()}


def fold_aggregates(metrics: dict[str, float], n_folds: int) -> dict[str, float]:
    """``wf/<metric>_mean`` and ``wf/<metric>_std`` over ``fold<k>/test/<metric>`` keys."""
    out: dict[str, float] = {}
    names = {k.split("/test/", 1)[1] for k in metrics if k.startswith("fold0/test/")}
    for name in sorted(names):
        values = np.array([metrics.get(f"fold{k}/test/{name}", np.nan) for k in range(n_folds)])
        values = values[np.isfinite(values)]
        if len(values):
            out[f"wf/{name}_mean"] = float(values.mean())
            out[f"wf/{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


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
    if metrics.get(name) is None:  # e.g. naive and ensemble models have no validation loss
        log.warning("optimized_metric %r is not among this run's metrics; returning None", name)
        return None
    return float(metrics[name])
