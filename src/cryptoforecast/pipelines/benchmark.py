"""``python benchmark.py``: every model on identical walk-forward folds, compared honestly.

For each model and fold: a fresh model (and scaler) fitted on the fold's train segment,
early-stopped on its val segment, predicting its test segment. Then, on the pooled out-of-sample
predictions: the metrics, Diebold-Mariano tests against persistence (``naive``) and against the
reference model (CNN-LSTM), a binomial test of directional accuracy against 50 %, the backtest
after costs with a block-bootstrap interval for its Sharpe ratio, and the operational profile.
Two backtests per model, same costs: ``backtest_*`` / ``n_trades`` trade the configured rule
(default ``cost``: only forecasts whose expected move clears the round-trip cost) and
``sign_*`` the plain sign of every forecast, so the tables show how much of a loss is turnover;
``benchmark.md`` and ``benchmark.json`` (``rules``) name both.

Writes ``benchmark.csv``, ``benchmark.json``, ``benchmark.md``, ``predictions_<model>.parquet``,
``mae_by_model.png`` and ``equity_by_model.png`` into the run folder.

``benchmark=quick`` is a smoke preset (``benchmark.smoke: true``): a few minutes on 2 cores, to
check that everything runs. The console, ``benchmark.md`` and ``benchmark.json`` then say that
its figures are not a result.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cryptoforecast.backtest.engine import BacktestResult, run_backtest
from cryptoforecast.backtest.plots import plot_equity_comparison
from cryptoforecast.evaluation.predictions import score
from cryptoforecast.evaluation.profiling import profile_forecaster
from cryptoforecast.evaluation.stats import block_bootstrap_sharpe_ci, direction_test, dm_vs
from cryptoforecast.models.factory import base_forecaster
from cryptoforecast.pipelines.train import (
    backtest_spec,
    prediction_frame,
    prepare,
    quiet_lightning_console,
    sign_spec,
    write_metrics,
)
from cryptoforecast.utils.report import fmt_value, json_clean

log = logging.getLogger(__name__)

SMOKE_NOTE = (
    "SMOKE PRESET (benchmark=quick), NOT A RESULT: {days:g} days, {folds} folds, at most {epochs} "
    "epochs, lightweight models. It shows that the benchmark runs; for figures to compare models "
    "run `python benchmark.py` (default) or benchmark=full."
)

# columns of benchmark.csv / benchmark.md, in order
HEADLINE = [
    "mae",
    "rmse",
    "directional_accuracy",
    "dir_p_value",
    "dm_vs_naive_p",
    "dm_vs_ref_p",
    "backtest_sharpe",
    "sharpe_lo",
    "sharpe_hi",
    "backtest_total_return",
    "backtest_max_drawdown",
    "n_trades",
    "sign_total_return",
    "sign_n_trades",
    "train_seconds",
    "train_samples_per_s",
    "params",
    "size_mb",
    "latency_single_p99_ms",
]


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the benchmark described by ``cfg.benchmark`` and write its reports."""
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet_lightning_console()
    if cfg.data.get("symbols"):
        raise ValueError(
            f"benchmark.py compares models on one symbol; data.symbols={list(cfg.data.symbols)} "
            "is a multi-asset run (use train.py, or run the benchmark once per data.symbol)"
        )
    note = smoke_note(cfg)
    if note:
        log.warning(note)
    L.seed_everything(cfg.seed, workers=True)
    candles, samples, folds = prepare(cfg, out_dir)
    models = list(cfg.benchmark.models)
    variant = cfg.benchmark.get("variant")
    spec = backtest_spec(cfg, samples.target.kind)
    plain = sign_spec(spec, samples.target.kind)
    rules = {"backtest": spec.rule, "sign": plain.rule}
    frames: dict[str, pd.DataFrame] = {}
    rows: dict[str, dict[str, Any]] = {}
    backtests: dict[str, BacktestResult] = {}
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with progress:
        task = progress.add_task("benchmark", total=len(models) * len(folds))
        for name in models:
            parts, ops, fold_mae = [], {"train_seconds": 0.0, "samples": 0.0}, []
            for fold in folds:
                progress.update(task, description=f"{name} fold {fold.number}")
                L.seed_everything(cfg.seed, workers=True)
                model = base_forecaster(cfg, name, variant)
                fitted = model.fit(samples, fold, out_dir / name / f"fold_{fold.number}")
                pred = model.predict(samples, fold.test)
                frame = prediction_frame(samples, fold, pred)
                parts.append(frame)
                fold_mae.append(score(frame, "f")["f/mae"] if "p_up" not in frame else np.nan)
                ops["train_seconds"] += fitted.get("ops/train_seconds", 0.0)
                ops["samples"] += len(fold.train) * max(fitted.get("ops/epochs", 1.0), 1.0)
                ops["params"] = fitted.get("ops/params", 0.0)
                progress.advance(task)
            frames[name] = pd.concat(parts, ignore_index=True)
            frames[name].to_parquet(out_dir / f"predictions_{name}.parquet", index=False)
            prof = profile_forecaster(
                model, samples, folds[-1].test, n_single=int(cfg.benchmark.profile_samples)
            )
            backtests[name] = run_backtest(frames[name], candles.frame, spec)
            signed = run_backtest(frames[name], candles.frame, plain)
            rows[name] = _row(frames[name], backtests[name], ops, prof, fold_mae, signed)
    _add_tests(rows, frames, models, str(cfg.benchmark.reference))
    summary = _criteria(rows)
    _write(out_dir, rows, summary, backtests, models, samples.symbol, rules, note)
    _print(rows, summary, models, rules, note)
    return {"rows": rows, "criteria": summary, "note": note}


def smoke_note(cfg: DictConfig) -> str | None:
    """The "not a result" note of a smoke preset (``benchmark.smoke: true``), else None."""
    if not cfg.benchmark.get("smoke"):
        return None
    return SMOKE_NOTE.format(
        days=float(cfg.data.days or 0), folds=cfg.split.n_folds, epochs=cfg.trainer.max_epochs
    )


def _row(
    frame: pd.DataFrame,
    bt: BacktestResult,
    ops: dict[str, float],
    prof: dict[str, float],
    fold_mae: list[float],
    signed: BacktestResult,
) -> dict[str, Any]:
    """One model's pooled metrics, direction test, backtests and ops figures (first horizon).

    ``bt`` trades the configured rule, ``signed`` the plain sign rule (``sign_*`` columns).
    """
    h = int(frame["horizon"].min())
    part = frame[frame["horizon"] == h]
    metrics = {k.split("/", 1)[1]: v for k, v in score(part, "m").items()}
    direction = direction_test(part)[h]
    net = bt.bars["net"].to_numpy()
    ppy = bt.metrics["periods_per_year"]
    _, lo, hi = block_bootstrap_sharpe_ci(net, ppy) if len(net) > 20 else (
        np.nan, np.nan, np.nan)  # fmt: skip
    row: dict[str, Any] = {
        **metrics,
        "dir_p_value": direction.p_value,
        "backtest_sharpe": bt.metrics["sharpe"],
        "sharpe_lo": lo,
        "sharpe_hi": hi,
        "backtest_total_return": bt.metrics["total_return"],
        "backtest_max_drawdown": bt.metrics["max_drawdown"],
        "n_trades": bt.metrics["n_trades"],
        "sign_total_return": signed.metrics["total_return"],
        "sign_sharpe": signed.metrics["sharpe"],
        "sign_n_trades": signed.metrics["n_trades"],
        "bh_total_return": bt.metrics["bh_total_return"],
        "train_seconds": ops["train_seconds"],
        "train_samples_per_s": ops["samples"] / ops["train_seconds"]
        if ops["train_seconds"] > 0
        else np.nan,
        "params": ops.get("params", 0.0),
        "size_mb": prof["ops/size_mb"],
        "latency_single_p50_ms": prof["ops/latency_single_p50_ms"],
        "latency_single_p99_ms": prof["ops/latency_single_p99_ms"],
        "latency_batch_p99_ms": prof["ops/latency_batch_p99_ms"],
        "peak_rss_mb": prof["ops/peak_rss_mb"],
        "fold_mae": fold_mae,
        "backtest": bt.metrics,
        "backtest_sign": signed.metrics,
    }
    return row


def _add_tests(
    rows: dict[str, dict[str, Any]], frames: dict[str, pd.DataFrame], models: list[str], ref: str
) -> None:
    """DM p-values (squared loss, two-sided) vs persistence and vs the reference model."""
    for name in models:
        for key, other in (("dm_vs_naive", "naive"), ("dm_vs_ref", ref)):
            if other not in frames or other == name or "p_up" in frames[name]:
                rows[name][f"{key}_p"] = np.nan
                rows[name][f"{key}_stat"] = np.nan
                continue
            h = int(frames[name]["horizon"].min())
            res = dm_vs(frames[name], frames[other], loss="squared", horizon=h)[h]
            rows[name][f"{key}_p"] = res.p_value
            rows[name][f"{key}_stat"] = res.statistic


def _criteria(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The research report's claims (listed in ARCHITECTURE.md), computed from this run."""
    out: dict[str, Any] = {}
    if "attention_lstm" in rows and "cnn_lstm" in rows:
        a, c = rows["attention_lstm"]["mae"], rows["cnn_lstm"]["mae"]
        out["attention_lstm_mae_change_vs_cnn_lstm_pct"] = 100.0 * (a - c) / c
        out["attention_lstm_vs_cnn_lstm_dm_p"] = rows["attention_lstm"].get("dm_vs_ref_p")
    if "tcn" in rows and "lstm" in rows:
        out["tcn_vs_lstm_training_speed_x"] = (
            rows["tcn"]["train_samples_per_s"] / rows["lstm"]["train_samples_per_s"]
        )
    out["all_models_single_inference_p99_under_100ms"] = bool(
        all(r["latency_single_p99_ms"] < 100.0 for r in rows.values())
    )
    out["models_beating_persistence_dm_p_lt_0.05"] = [
        name for name, r in rows.items()
        if r.get("dm_vs_naive_stat", np.nan) < 0 and r.get("dm_vs_naive_p", 1.0) < 0.05
    ]  # fmt: skip
    out["models_with_positive_sharpe_ci_after_costs"] = [
        name for name, r in rows.items() if np.isfinite(r["sharpe_lo"]) and r["sharpe_lo"] > 0
    ]
    return out


def _write(
    out_dir: Path,
    rows: dict[str, dict[str, Any]],
    criteria: dict[str, Any],
    backtests: dict[str, BacktestResult],
    models: list[str],
    symbol: str,
    rules: dict[str, str],
    note: str | None = None,
) -> None:
    table = pd.DataFrame({m: {k: rows[m].get(k) for k in HEADLINE} for m in models}).T
    table.index.name = "model"
    table.to_csv(out_dir / "benchmark.csv")
    flat = {
        f"{m}/{k}": v
        for m in models
        for k, v in rows[m].items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    write_metrics(flat, out_dir / "benchmark_metrics.json")
    doc = json_clean({"models": rows, "criteria": criteria, "rules": rules, "smoke_preset": note})
    (out_dir / "benchmark.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    md = ["| model | " + " | ".join(HEADLINE) + " |", "|---" * (len(HEADLINE) + 1) + "|"]
    for m in models:
        md.append(f"| {m} | " + " | ".join(fmt_value(rows[m].get(k)) for k in HEADLINE) + " |")
    md += ["", rule_note(rules)]
    md += ["", "Criteria:", ""] + [f"- {k}: {fmt_value(v)}" for k, v in criteria.items()]
    if note:
        md = [f"**{note}**", "", *md]
    (out_dir / "benchmark.md").write_text("\n".join(md) + "\n")
    _plot_mae(rows, models, out_dir / "mae_by_model.png")
    plot_equity_comparison(
        {m: backtests[m] for m in models},
        out_dir / "equity_by_model.png",
        title=f"{symbol}: out-of-sample equity after costs, {rules['backtest']} rule "
        "(walk-forward test segments)",
    )


def rule_note(rules: dict[str, str]) -> str:
    """The sentence under a results table that names the trading rule of each column."""
    return (
        f"Backtests after fees and slippage: `backtest_*`, `sharpe_*` and `n_trades` trade the "
        f"`{rules['backtest']}` rule"
        + (
            " (only forecasts whose expected move clears the round-trip cost)"
            if rules["backtest"] == "cost"
            else ""
        )
        + f"; `sign_*` the `{rules['sign']}` rule (every forecast, whatever its size)."
    )


def _plot_mae(rows: dict[str, dict[str, Any]], models: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, m in enumerate(models):
        maes = np.array(rows[m]["fold_mae"], dtype=float)
        maes = maes[np.isfinite(maes)]
        if not len(maes):
            continue
        ax.errorbar(
            i,
            maes.mean(),
            yerr=maes.std(ddof=1) if len(maes) > 1 else 0,
            fmt="o",
            capsize=4,
            color="C0",
        )
        ax.scatter(np.full(len(maes), i + 0.15), maes, s=10, color="C1", alpha=0.7)
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
    ax.set_ylabel("test MAE (price units)")
    ax.set_title("MAE by model: mean +- std over walk-forward folds (dots: folds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print(
    rows: dict[str, dict[str, Any]],
    criteria: dict[str, Any],
    models: list[str],
    rules: dict[str, str],
    note: str | None = None,
) -> None:
    title = (
        "benchmark: pooled out-of-sample (first horizon), after costs; "
        f"Sharpe: {rules['backtest']} rule, sign ret: {rules['sign']} rule"
    )
    table = Table(title=f"{title}\n{note}" if note else title)
    cols = {
        "mae": "MAE",
        "directional_accuracy": "dir acc",
        "dm_vs_naive_p": "DM p naive",
        "dm_vs_ref_p": "DM p ref",
        "backtest_sharpe": "Sharpe",
        "sharpe_lo": "lo95",
        "sharpe_hi": "hi95",
        "n_trades": "trades",
        "sign_total_return": "sign ret",
        "sign_n_trades": "sign trades",
        "train_seconds": "train s",
        "latency_single_p99_ms": "p99 ms",
    }
    table.add_column("model")
    for header in cols.values():
        table.add_column(header, justify="right")
    for m in models:
        table.add_row(m, *(fmt_value(rows[m].get(c), 3) for c in cols))
    console = Console(width=max(Console().width, 110))
    console.print(table)
    for k, v in criteria.items():
        console.print(f"{k}: {fmt_value(v)}", highlight=False)
    if note:
        console.print(note, highlight=False)
