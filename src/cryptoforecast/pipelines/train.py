"""``python train.py``: load, check, featurise, split, train, test, and write the run folder.

Writes into the Hydra run folder: ``metrics.json`` (flat), ``predictions.parquet`` (the
PredictionFrame of the test segment(s)), ``data_quality.json``, ``splits.json``, ``scaler.json``,
model artefacts (checkpoints, LightGBM importance), ``equity.png``, ``pred_vs_actual.png``
(attention models also ``attention_heads.png`` and ``attention_by_lag.png``) and logger files
(``logger=wandb``: ``wandb/offline-run-*`` when not logged in to W&B); Hydra adds
``.hydra/config.yaml``. With ``split=walk_forward`` each fold trains a fresh model and scaler in
``fold_<k>/``.

Multi-asset runs (``data.symbols=[BTCUSDT,ETHUSDT]``) train one model on all symbols (one-hot
symbol columns, see :func:`cryptoforecast.data.datamodule.stack_samples`). Metrics then hold the
pooled ``test/*`` (all symbols' predictions together; price-unit errors such as ``rmse`` and
``mae`` are dominated by the highest-priced symbol) and per symbol ``test/<SYMBOL>/*`` and
``baseline[_last]/<SYMBOL>/*`` (walk-forward also ``fold<k>/test/<SYMBOL>/*`` and
``wf/<SYMBOL>/*``); the backtest runs per symbol on its own candles (``backtest/<SYMBOL>/*``,
``equity_<SYMBOL>.png``) and ``backtest/*`` is their equal-weight portfolio
(:mod:`cryptoforecast.backtest.portfolio`, ``equity.png``). ``data_quality.json`` is keyed by
symbol, ``backtest_bars.parquet`` and ``backtest_trades.parquet`` gain a ``symbol`` column and
``pred_vs_actual_<SYMBOL>.png`` shows each symbol's forecasts.
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
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cryptoforecast.backtest.engine import BacktestResult, BacktestSpec, run_backtest
from cryptoforecast.backtest.plots import plot_equity
from cryptoforecast.backtest.portfolio import equal_weight_portfolio
from cryptoforecast.data.datamodule import SampleSet
from cryptoforecast.data.from_config import RunData, run_data
from cryptoforecast.data.loader import Candles
from cryptoforecast.data.splits import Fold
from cryptoforecast.evaluation.predictions import make_prediction_frame, score, score_by_symbol
from cryptoforecast.evaluation.profiling import profile_forecaster
from cryptoforecast.evaluation.stats import summary_tests
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
from cryptoforecast.utils.errors import ConfigError
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
    """:func:`prepare_run` for single-symbol callers: ``(candles, samples, folds)``.

    Raises:
        DataError: the config is a multi-symbol run (use :func:`prepare_run`).
    """
    data = prepare_run(cfg, out_dir)
    return data.candles, data.samples, data.folds


def prepare_run(cfg: DictConfig, out_dir: Path) -> RunData:
    """Build the run's data once, then save the quality report and the splits in the run folder.

    See :func:`cryptoforecast.data.from_config.run_data`. Multi-symbol runs write one quality
    report per symbol (keyed by symbol) and per-symbol segment sizes in ``splits.json``.
    """
    data = run_data(cfg)
    data.folds = limit_test_windows(data.folds, cfg.get("limit_test_windows"))
    quality = out_dir / "data_quality.json"
    if len(data.candles_by_symbol) == 1:
        data.candles.report.save(quality)
    else:
        reports = {s: c.report.to_dict() for s, c in data.candles_by_symbol.items()}
        quality.write_text(json.dumps(reports, indent=2) + "\n")
    (out_dir / "splits.json").write_text(
        json.dumps([describe_fold(data.samples, f) for f in data.folds], indent=2) + "\n"
    )
    return data


def limit_test_windows(folds: list[Fold], limit: int | None) -> list[Fold]:
    """Keep only the first ``limit`` test samples of each fold (None: all). For smoke tests
    (``debug=fdr``): the metrics of so few windows are no result."""
    if limit is None:
        return folds
    if int(limit) < 1:
        raise ConfigError(f"limit_test_windows={limit}; use a positive number or null (all)")
    log.warning("limit_test_windows=%d: each fold predicts only its first test windows", limit)
    return [dataclasses.replace(f, test=f.test[: int(limit)]) for f in folds]


def describe_fold(samples: SampleSet, fold: Fold) -> dict[str, object]:
    """:meth:`Fold.describe`, plus each symbol's segment sizes in multi-symbol runs."""
    out = fold.describe(samples.windows.timestamps)
    if len(samples.symbols) > 1:
        out["symbols"] = {
            sym: {
                f"n_{part}": int((samples.sample_symbols(getattr(fold, part)) == sym).sum())
                for part in ("train", "val", "test")
            }
            for sym in samples.symbols
        }
    return out


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


def refuse_misleading(cfg: DictConfig) -> None:
    """Refuse a config that would run to a normal-looking table but mean nothing.

    Raises:
        ConfigError: ``trainer.max_epochs=0`` (or below -1) for a model trained by Lightning:
            it would score an untrained net as if it were a result; or a GPU trainer where
            torch sees no CUDA device (Lightning's own error says nothing about the fix).
    """
    module = cfg.model.get("module") or {}
    trains = "net" in module or str(module.get("_target_", "")).endswith(".StackingEnsemble")
    epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    if trains and epochs is not None and (epochs == 0 or epochs < -1):
        raise ConfigError(
            f"trainer.max_epochs={epochs} would score an untrained {cfg.model.name} as if it "
            "were a result; use trainer.max_epochs=1 or more (debug=fdr for a one-batch smoke "
            "test, model=naive for the no-training baseline)"
        )
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="cpu"))
    if trains and accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} (trainer=gpu or trainer=ddp), but torch "
            f"{torch.__version__} sees no CUDA GPU: on this machine use trainer=cpu; on a GPU "
            "machine install a CUDA build of torch (README, 'Training on a GPU')"
        )


def _run(cfg: DictConfig) -> dict[str, float]:
    refuse_misleading(cfg)
    if OmegaConf.select(cfg, "trainer.fast_dev_run", default=False):
        log.warning("fast_dev_run: one training batch; the metrics below are a smoke test")
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet_lightning_console()
    L.seed_everything(cfg.seed, workers=True)
    data = prepare_run(cfg, out_dir)
    samples, folds = data.samples, data.folds

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
        fold_scores = {**score(frame, "test"), **score_by_symbol(frame, "test")} if multi else {}
        metrics.update({f"fold{fold.number}/{k}": v for k, v in fold_scores.items()})
        title = f"{cfg.model.name} ({samples.symbol})" + (f" fold {fold.number}" if multi else "")
        images: dict[str, Path] = {}
        if cfg.get("plots", True):
            images = fold_figures(model, samples, fold, frame, fold_dir, title)
            images.update(symbol_figures(frame, fold_dir, title))
        log_fit_curves(fold_run, model)
        if multi:
            fold_metrics = dict(fit_metrics, **fold_scores)
            for name in BASELINES:
                fold_metrics.update(score(frames[name][-1], name))
                fold_metrics.update(score_by_symbol(frames[name][-1], name))
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
    metrics.update(score_by_symbol(predictions, "test"))
    for name in BASELINES:
        baseline = pd.concat(frames[name], ignore_index=True)
        metrics.update(score(baseline, name))
        metrics.update(score_by_symbol(baseline, name))
        if name == "baseline":  # DM vs zero-return persistence, binomial p of the hit rate
            metrics.update(summary_tests(predictions, baseline))
    if cfg.get("profile", True):  # size, warm latency, peak RSS of the (last fold's) model
        log.info(
            "profiling %s: 100 single + 10 batch predictions (profile=false skips this)",
            cfg.model.name,
        )
        ops.update(profile_forecaster(model, samples, folds[-1].test, n_single=100, n_batch=10))
    metrics.update({k: round(v, 3) if k == "ops/train_seconds" else v for k, v in ops.items()})
    metrics["data/n_features"] = samples.n_features
    for part in ("train", "val", "test"):
        metrics[f"data/n_{part}"] = int(sum(len(getattr(f, part)) for f in folds))
    if len(samples.symbols) > 1:
        for sym in samples.symbols:
            for part in ("train", "val", "test"):
                n = sum(
                    int((samples.sample_symbols(getattr(f, part)) == sym).sum()) for f in folds
                )
                metrics[f"data/{sym}/n_{part}"] = n
    metrics.update(backtest_metrics(cfg, predictions, data.candles_by_symbol, out_dir))
    write_metrics(metrics, out_dir / "metrics.json")
    several = len(samples.symbols) > 1
    print_summary(
        metrics,
        title=f"{cfg.model.name} vs persistence ({samples.symbol})"
        + (
            "\nfirst rows: all symbols pooled; backtest: equal-weight portfolio" if several else ""
        ),
        symbols=samples.symbols if several else (),
    )
    if multi:  # the pooled out-of-sample figure (each fold's is in fold_<k>/) and its own run
        images = {}
        if cfg.get("plots", True):
            images["pred_vs_actual"] = plot_pred_vs_actual(
                predictions, out_dir / "pred_vs_actual.png", f"{cfg.model.name}: all folds"
            )
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
        samples.symbol if len(samples.symbols) == 1 else samples.sample_symbols(pos),
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


def sign_spec(spec: BacktestSpec, kind: str) -> BacktestSpec:
    """The plain rule beside the configured one: ``sign`` (classifiers: ``probability``)."""
    return dataclasses.replace(spec, rule="probability" if kind == "direction" else "sign")


def symbol_figures(frame: pd.DataFrame, out_dir: Path, title: str) -> dict[str, Path]:
    """Multi-symbol frames: ``pred_vs_actual_<SYMBOL>.png`` per symbol (else nothing)."""
    symbols = list(dict.fromkeys(frame["symbol"]))
    if len(symbols) < 2:
        return {}
    return {
        f"pred_vs_actual_{sym}": plot_pred_vs_actual(
            frame[frame["symbol"] == sym], out_dir / f"pred_vs_actual_{sym}.png", f"{title}: {sym}"
        )
        for sym in symbols
    }


def backtest_metrics(
    cfg: DictConfig, predictions: pd.DataFrame, candles: dict[str, Candles], out_dir: Path
) -> dict[str, float]:
    """Backtest the out-of-sample predictions after costs: ``backtest/*`` keys + equity PNG.

    ``backtest/*`` trades the configured rule (default ``cost``: only forecasts whose expected
    move clears the round-trip cost) and ``backtest_sign/*`` the plain sign of every forecast
    (classifiers: the ``probability`` bands) with the same costs, so a reader sees how much of a
    loss is turnover. Bars, trades and ``equity.png`` are those of the configured rule.

    One symbol: its backtest is ``backtest/*``. Several: each symbol's predictions trade its own
    candles (``backtest/<SYMBOL>/*``, ``equity_<SYMBOL>.png``) and ``backtest/*`` is their
    equal-weight portfolio; the bars and trades parquet files then carry a ``symbol`` column.
    """
    kind = "direction" if "p_up" in predictions.columns else "return"
    spec = backtest_spec(cfg, kind)
    plain = sign_spec(spec, kind)
    name = cfg.model.name
    if len(candles) == 1:
        frame = next(iter(candles.values())).frame
        result = run_backtest(predictions, frame, spec)
        _save_backtest(result, out_dir, f"{name}: out-of-sample, after costs ({spec.rule} rule)")
        signed = run_backtest(predictions, frame, plain)
        return {
            **{f"backtest/{k}": v for k, v in result.metrics.items()},
            **{f"backtest_sign/{k}": v for k, v in signed.metrics.items()},
        }
    results = {
        sym: run_backtest(predictions[predictions["symbol"] == sym], c.frame, spec)
        for sym, c in candles.items()
    }
    signed_results = {
        sym: run_backtest(predictions[predictions["symbol"] == sym], c.frame, plain)
        for sym, c in candles.items()
    }
    out: dict[str, float] = {}
    for sym, result in signed_results.items():
        out.update({f"backtest_sign/{sym}/{k}": v for k, v in result.metrics.items()})
    signed_portfolio = equal_weight_portfolio(signed_results)
    out.update({f"backtest_sign/{k}": v for k, v in signed_portfolio.metrics.items()})
    for sym, result in results.items():
        out.update({f"backtest/{sym}/{k}": v for k, v in result.metrics.items()})
        plot_equity(result, out_dir / f"equity_{sym}.png", f"{name} on {sym}: after costs")
    portfolio = equal_weight_portfolio(results)
    out.update({f"backtest/{k}": v for k, v in portfolio.metrics.items()})
    bars = pd.concat([r.bars.assign(symbol=s) for s, r in results.items()], ignore_index=True)
    combined = BacktestResult(bars=bars, trades=portfolio.trades, metrics=portfolio.metrics)
    _save_backtest(combined, out_dir, title=None)
    plot_equity(
        portfolio,
        out_dir / "equity.png",
        f"{name}: equal-weight {' + '.join(results)}, out-of-sample, after costs",
    )
    return out


def _save_backtest(result: BacktestResult, out_dir: Path, title: str | None) -> None:
    """Bars and trades as parquet (``symbol`` first when present); ``equity.png`` if titled."""
    for table, file in ((result.bars, "backtest_bars"), (result.trades, "backtest_trades")):
        if "symbol" in table.columns:
            table = table[["symbol", *(c for c in table.columns if c != "symbol")]]
        table.to_parquet(out_dir / f"{file}.parquet", index=False)
    if title is not None:
        plot_equity(result, out_dir / "equity.png", title=title)


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
