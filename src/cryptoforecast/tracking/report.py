"""Glue between the train pipeline and W&B: run lifecycle, names, results, figures, attention.

One W&B run per training job; under walk-forward one run per fold (``<name>-fold<k>``) plus an
aggregate run (``<name>-aggregate``), all in the configured group (``${task_name}``). Every run
is finished before the next starts (the pipeline also finishes whatever is open in a ``finally``),
so folds and multirun jobs never share a run.

The figures are written as PNGs into the run (or fold) folder whatever the logger, so users
without W&B see them too; with W&B they are also logged as ``wandb.Image`` under ``plots/``.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from cryptoforecast.tracking.importance import write_variable_importance
from cryptoforecast.tracking.plots import (
    plot_attention_by_lag,
    plot_attention_heads,
    plot_pred_vs_actual,
)
from cryptoforecast.tracking.wandb_setup import is_wandb_logger

if TYPE_CHECKING:
    from wandb.sdk.wandb_run import Run

    from cryptoforecast.data.datamodule import SampleSet
    from cryptoforecast.data.splits import Fold

log = logging.getLogger(__name__)

TABLE_ROWS = 500  # rows of the predictions sample logged as a wandb.Table
MAX_TAG = 64  # W&B rejects longer tags


def wandb_node(cfg: DictConfig) -> DictConfig | None:
    """The W&B entry of ``cfg.logger`` (``logger=wandb``), or None when W&B is not in use."""
    for node in (cfg.get("logger") or {}).values():
        if node and is_wandb_logger(node):
            return node  # type: ignore[no-any-return]
    return None


def _split_name(cfg: DictConfig) -> str:
    target = str((cfg.get("split") or {}).get("_target_", "split")).rsplit(".", 1)[-1]
    target = target.removesuffix("Split") or "split"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", target).lower()  # WalkForward -> walk_forward


def _descriptors(cfg: DictConfig) -> dict[str, str]:
    """Model, variant, symbol, interval, days and split of the config (what names a run)."""
    data = cfg.get("data") or {}
    model = cfg.get("model") or {}
    days = data.get("days")
    parts = {
        "model": model.get("name"),
        "variant": model.get("variant"),
        "symbol": data.get("symbol"),
        "interval": data.get("interval"),
        "days": f"{days}d" if days is not None else "all",
        "split": _split_name(cfg),
    }
    return {k: str(v) for k, v in parts.items() if v is not None}


def run_name(cfg: DictConfig, fold: int | None = None, aggregate: bool = False) -> str:
    """``<model>-<variant>-<symbol>-<interval>-<days>d-<split>[-fold<k>|-aggregate]``.

    ``logger.wandb.name``, when set, replaces the part before the suffix.
    """
    node = wandb_node(cfg)
    base = (node.get("name") if node is not None else None) or "-".join(_descriptors(cfg).values())
    if fold is not None:
        return f"{base}-fold{fold}"
    return f"{base}-aggregate" if aggregate else str(base)


def run_tags(cfg: DictConfig) -> list[str]:
    """``cfg.tags`` (via the logger node) plus model, variant, symbol, interval, days, split."""
    node = wandb_node(cfg)
    given = [str(t) for t in ((node.get("tags") if node is not None else None) or [])]
    auto = [f"{k}:{v}" if k == "variant" else v for k, v in _descriptors(cfg).items()]
    tags: list[str] = []
    for tag in (*given, *auto):
        tag = tag[:MAX_TAG]
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def flatten_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as flat dot keys (``model.module.net.dropout``); lists stay values.

    Interpolations that cannot resolve outside a Hydra app (``${hydra:...}``) are kept as
    written rather than failing the run; ``???`` stays ``???``.
    """
    if isinstance(cfg, DictConfig):
        try:
            tree: Any = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        except Exception:  # e.g. a ${hydra:...} resolver without a Hydra app
            tree = OmegaConf.to_container(cfg, resolve=False)
    else:
        tree = dict(cfg)
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        elif prefix:
            flat[prefix] = node

    walk(tree, "")
    return flat


def current_run() -> Run | None:
    """The W&B run open in this process (``wandb.run``), if wandb is importable."""
    try:
        import wandb
    except ImportError:
        return None
    return wandb.run


def start_run(cfg: DictConfig, fold: int | None = None, aggregate: bool = False) -> Run | None:
    """Open the W&B run of a job, a fold or a walk-forward aggregate; None without W&B.

    The logger comes from ``cfg.logger`` (``conf/logger/wandb.yaml``); the pipeline adds the
    run name, tags and job type (``train``, ``fold``, ``aggregate``), and writes the flattened
    resolved config plus ``fold`` and ``job_type`` into the run config. A run left open in this
    process is finished first, so two jobs never share a run.
    """
    node = wandb_node(cfg)
    if node is None:
        return None
    from hydra.utils import instantiate

    previous = current_run()
    if previous is not None:
        log.warning("finishing the W&B run %r left open, so this job gets its own", previous.name)
        finish_run(previous)
    job_type = "fold" if fold is not None else "aggregate" if aggregate else "train"
    logger = instantiate(
        node, name=run_name(cfg, fold, aggregate), tags=run_tags(cfg), job_type=job_type
    )
    run: Run = logger.experiment  # wandb.init happens here
    config = {**flatten_config(cfg), "fold": fold, "job_type": job_type}
    run.config.update(config, allow_val_change=True)
    log.info("W&B run %s (%s, group %s)", run.name, run.settings.mode, node.get("group"))
    return run


def finish_run(run: Run | None, failed: bool = False) -> None:
    """Finish ``run`` (exit code 1 if ``failed``); for an offline run log its ``wandb sync``."""
    if run is None:
        return
    offline = run.settings.mode == "offline"
    sync_dir, name = run.settings.sync_dir, run.name
    run.finish(exit_code=1 if failed else 0)
    if offline:
        log.info("W&B run %s saved offline; upload it with: wandb sync %s", name, sync_dir)


def finish_open_run(cfg: DictConfig, failed: bool = False) -> None:
    """``wandb.finish()`` for the job's ``finally`` (template ``task_wrapper``); W&B jobs only.

    Jobs without a W&B logger leave alone any run the caller (e.g. a notebook) opened.
    """
    if wandb_node(cfg) is not None:
        finish_run(current_run(), failed=failed)


def _clean(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Finite numbers only (NaN, e.g. the IC of a constant forecast, is left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value):
            out[key] = float(value)
    return out


def table_sample(predictions: pd.DataFrame, rows: int = TABLE_ROWS) -> pd.DataFrame:
    """At most ``rows`` rows spread evenly over the frame; times and strings as plain text."""
    if len(predictions) > rows:
        idx = np.unique(np.linspace(0, len(predictions) - 1, rows).round().astype(int))
        predictions = predictions.iloc[idx]
    out = predictions.reset_index(drop=True).copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = out[col].astype(str).astype(object)
    return out


def log_results(
    run: Run | None,
    metrics: Mapping[str, Any],
    images: Mapping[str, Path],
    predictions: pd.DataFrame | None = None,
) -> None:
    """Log figures (``plots/<name>``) and a predictions table, then ``metrics`` to the summary.

    The summary is written last so the final numbers (price-unit ``test/*``, ``baseline*/*``,
    ``backtest/*``, ``ops/*``) win over any same-named value logged during training.
    """
    if run is None:
        return
    import wandb

    payload: dict[str, Any] = {
        f"plots/{name}": wandb.Image(str(path)) for name, path in images.items() if path.exists()
    }
    if predictions is not None and len(predictions):
        payload["predictions"] = wandb.Table(dataframe=table_sample(predictions))
    if payload:
        run.log(payload)
    run.summary.update(_clean(metrics))


def log_fit_curves(run: Run | None, forecaster: Any) -> None:
    """LightGBM's recorded train/val curves as history (``lgbm/<h>/train``, ``.../val``).

    Torch models need nothing here: the Trainer's ``WandbLogger`` logs their epochs.
    """
    curves = getattr(forecaster, "eval_curves", None)
    if run is None or not curves:
        return
    run.define_metric("lgbm/round")
    run.define_metric("lgbm/*", step_metric="lgbm/round")
    rounds = max(len(c.get("val", [])) for c in curves.values())
    for i in range(rounds):
        row: dict[str, float] = {"lgbm/round": float(i + 1)}
        for h, curve in curves.items():
            for part in ("train", "val"):
                values = curve.get(part, [])
                if i < len(values):
                    row[f"lgbm/{h}/{part}"] = float(values[i])
        run.log(row)


def _attention_net(forecaster: Any) -> Any:
    module = getattr(forecaster, "module", None)
    net = getattr(module, "net", None)
    net = getattr(net, "_orig_mod", net)  # unwrap torch.compile
    if net is None or getattr(forecaster, "dm", None) is None:
        return None
    try:
        params = inspect.signature(net.forward).parameters
    except (TypeError, ValueError):
        return None
    return net if "return_attention" in params else None


def attention_maps(
    forecaster: Any, samples: SampleSet, positions: np.ndarray, last_step_only: bool = False
) -> np.ndarray | None:
    """Attention weights of a fitted attention model on the windows at ``positions``.

    Windows are cut from the fold's scaled features exactly as ``TorchForecaster.predict``
    does. Returns None for models without ``forward(x, return_attention=True)``.

    Args:
        forecaster: a fitted forecaster (``TorchForecaster`` with ``module`` and ``dm``).
        samples: the sample set the forecaster was fitted on.
        positions: indices into ``samples.windows.ends``.
        last_step_only: keep only the forecast step's row (query ``t``), which is what the
            head reads; saves memory over a whole test set.

    Shapes:
        ``[S, heads, L, L]``, or ``[S, heads, L]`` with ``last_step_only``.
    """
    net = _attention_net(forecaster)
    if net is None:
        return None
    import torch

    loader = forecaster.dm.windows_loader(positions)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    out: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for x, _ in loader:
                _, attn = net(x.to(device), return_attention=True)  # [B, heads, L, L]
                if last_step_only:
                    attn = attn[:, :, -1, :]  # [B, heads, L, L] -> [B, heads, L]
                out.append(attn.float().cpu().numpy())
    finally:
        net.train(was_training)
    if not out:
        return None
    return np.concatenate(out)


def fold_figures(
    forecaster: Any, samples: SampleSet, fold: Fold, frame: pd.DataFrame, out_dir: Path, title: str
) -> dict[str, Path]:
    """Write a fold's PNGs into ``out_dir`` and return them by name (for W&B).

    ``pred_vs_actual.png`` always; for attention models ``attention_heads.png`` (each head's
    weights on the first test window) and ``attention_by_lag.png`` (the forecast step's mean
    weight on each lag over the whole test segment); for nets with variable selection (TFT)
    ``variable_importance.png`` (+ ``.csv``: mean selection weight per feature over the test
    windows); ``feature_importance.png`` when the model wrote one (LightGBM).
    """
    images = {"pred_vs_actual": plot_pred_vs_actual(frame, out_dir / "pred_vs_actual.png", title)}
    if len(fold.test):
        images.update(write_variable_importance(forecaster, samples, fold.test, out_dir, title))
        first = attention_maps(forecaster, samples, fold.test[:1])
        if first is not None:
            when = pd.Timestamp(samples.windows.timestamps[fold.test[0]])
            images["attention_heads"] = plot_attention_heads(
                first[0],
                out_dir / "attention_heads.png",
                f"{title}: attention per head, window ending {when:%Y-%m-%d %H:%M}",
            )
            last = attention_maps(forecaster, samples, fold.test, last_step_only=True)
            assert last is not None
            by_lag = last.mean(axis=0)[:, ::-1]  # [heads, L] by key step -> by lag (0 = t)
            images["attention_by_lag"] = plot_attention_by_lag(
                by_lag,
                out_dir / "attention_by_lag.png",
                f"{title}: attention of the forecast step by lag ({len(fold.test)} test windows)",
            )
    importance = out_dir / "feature_importance.png"
    if importance.exists():
        images["feature_importance"] = importance
    return images
