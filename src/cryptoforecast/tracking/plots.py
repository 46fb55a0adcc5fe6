"""Run figures: predicted vs actual, attention per head and by lag, variable importances.

Pure functions of arrays or a PredictionFrame; matplotlib is imported lazily with the Agg backend
(runs and tests have no display). Every function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "plot_attention_by_lag",
    "plot_attention_heads",
    "plot_pred_vs_actual",
    "plot_variable_importance",
]

MAX_HORIZON_ROWS = 4  # figure rows for multi-horizon frames; more would be unreadable


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


def plot_pred_vs_actual(frame: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Write a PNG: forecast and realised target over time (left), scatter (right), per horizon.

    Regression frames plot ``y_pred`` against ``y_true`` (log returns) with the Spearman
    information coefficient in the panel title; classifier frames (with ``p_up``) plot ``p_up``
    against the 0/1 outcome.

    Args:
        frame: a PredictionFrame (``timestamp, horizon, y_true, y_pred`` [+ ``p_up``]).
        path: where to write the PNG.
        title: figure title.

    Returns:
        The path written.
    """
    plt = _pyplot()
    classifier = "p_up" in frame.columns
    pred_col = "p_up" if classifier else "y_pred"
    horizons = sorted(frame["horizon"].unique())[:MAX_HORIZON_ROWS] if len(frame) else [1]
    fig, axes = plt.subplots(
        len(horizons),
        2,
        figsize=(11.0, 3.2 * len(horizons)),
        squeeze=False,
        gridspec_kw={"width_ratios": [3, 1]},
    )
    try:
        for row, h in zip(axes, horizons, strict=True):
            part = frame[frame["horizon"] == h].sort_values("timestamp")
            t = pd.DatetimeIndex(part["timestamp"])
            y_true = part["y_true"].to_numpy(dtype=np.float64)
            y_pred = part[pred_col].to_numpy(dtype=np.float64)
            ax_t, ax_s = row
            ax_t.plot(t, y_true, lw=0.6, color="tab:grey", label="actual")
            ax_t.plot(t, y_pred, lw=0.9, color="tab:blue", label="predicted")
            ax_t.set_ylabel("P(up) / outcome" if classifier else f"log return, h={h}")
            ax_t.legend(loc="upper left", fontsize=8)
            ax_s.scatter(y_true, y_pred, s=4, alpha=0.4, color="tab:blue")
            if not classifier and len(y_true):
                lim = float(np.nanmax(np.abs(np.concatenate([y_true, y_pred])))) or 1.0
                ax_s.plot([-lim, lim], [-lim, lim], lw=0.6, color="black")
            ax_s.set_xlabel("actual")
            ax_s.set_ylabel("predicted")
            if len(part) > 2 and np.std(y_pred) > 0 and np.std(y_true) > 0:
                ic = pd.Series(y_true).corr(pd.Series(y_pred), method="spearman")
                ax_s.set_title(f"IC {ic:.3f}", fontsize=9)
            for label in ax_t.get_xticklabels():
                label.set_rotation(25)
                label.set_horizontalalignment("right")
        axes[0][0].set_title(title)
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_attention_heads(attn: np.ndarray, path: str | Path, title: str) -> Path:
    """Write a PNG with one heatmap per head for one window's attention weights.

    Args:
        attn: ``[heads, L, L]`` weights; row ``i`` (query step) sums to 1 over key steps.
        path: where to write the PNG.
        title: figure title (e.g. which window).

    Returns:
        The path written.
    """
    if attn.ndim != 3 or attn.shape[1] != attn.shape[2]:
        raise ValueError(f"attention must be [heads, L, L], got {attn.shape}")
    plt = _pyplot()
    heads, steps = attn.shape[0], attn.shape[1]
    cols = min(heads, 4)
    rows = -(-heads // cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(3.6 * cols + 1.0, 3.4 * rows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    # The first query steps attend to few keys (weights near 1) and would wash out the colour
    # scale; cap it at the 99th percentile of the non-zero (causal) weights.
    positive = attn[attn > 0]
    vmax = float(np.quantile(positive, 0.99)) if positive.size else 1.0
    try:
        image = None
        for k, ax in enumerate(axes.flat):
            if k >= heads:
                ax.axis("off")
                continue
            image = ax.imshow(attn[k], cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
            ax.set_title(f"head {k}", fontsize=9)
            ax.set_xlabel(f"key step (0 = t-{steps - 1}, {steps - 1} = t)", fontsize=8)
            ax.set_ylabel("query step", fontsize=8)
        if image is not None:
            fig.colorbar(image, ax=axes, shrink=0.8, label="weight (capped at 99th pct)")
        fig.suptitle(title, fontsize=10)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)  # constrained layout already placed the colorbar
        return out
    finally:
        plt.close(fig)


def plot_attention_by_lag(by_lag: np.ndarray, path: str | Path, title: str) -> Path:
    """Write a PNG: mean attention of the forecast step on each lag, relative to uniform.

    Weights are drawn as multiples of uniform attention (``weight * L``; 1 = every bar of the
    window weighted ``1/L``), on an axis from 0 to at least 2 x uniform, so a profile within
    a fraction of a percent of uniform reads as flat, as it is, rather than filling the plot.
    The uniform reference is a labelled line; the title's side notes the largest deviation.

    Args:
        by_lag: ``[heads, L]`` mean weights, column ``k`` = attention on the bar ``k`` bars
            before ``t`` (``k = 0`` is bar ``t`` itself).
        path: where to write the PNG.
        title: figure title.

    Returns:
        The path written.
    """
    if by_lag.ndim != 2:
        raise ValueError(f"attention by lag must be [heads, L], got {by_lag.shape}")
    plt = _pyplot()
    n_lags = by_lag.shape[1]
    lags = np.arange(n_lags)
    rel = by_lag * n_lags  # 1.0 = uniform
    fig, ax = plt.subplots(figsize=(9.0, 3.8))
    try:
        for k, weights in enumerate(rel):
            ax.plot(lags, weights, lw=1.0, label=f"head {k}")
        ax.plot(lags, rel.mean(axis=0), lw=2.0, color="black", label="mean over heads")
        ax.axhline(1.0, color="grey", lw=1.2, ls="--", label=f"uniform (1/L = 1/{n_lags})")
        top = float(np.nanmax(rel)) if rel.size else 1.0
        ax.set_ylim(0.0, max(2.0, 1.1 * top))
        ax.set_xlabel("lag k (bars before t)")
        ax.set_ylabel("attention weight / uniform")
        dev = float(np.nanmax(np.abs(rel - 1.0))) if rel.size else 0.0
        ax.set_title(f"{title}\nlargest deviation from uniform: {100 * dev:.1f} %", fontsize=10)
        ax.legend(loc="upper right", fontsize=8, ncol=2)
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_variable_importance(
    table: pd.DataFrame, path: str | Path, title: str, top: int = 30
) -> Path:
    """Write a PNG: horizontal bars of the ``top`` features by mean selection weight.

    Args:
        table: ``feature``, ``importance`` (and ``importance_last_step``), most important first,
            as from ``tracking.importance.importance_table``.
        path: where to write the PNG.
        title: figure title.
        top: how many features to draw.

    Returns:
        The path written.
    """
    missing = {"feature", "importance"} - set(table.columns)
    if missing:
        raise ValueError(f"importance table lacks columns {sorted(missing)}")
    plt = _pyplot()
    head = table.head(top).iloc[::-1]  # barh draws bottom-up: largest on top
    y = np.arange(len(head))
    fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.28 * len(head)))
    try:
        ax.barh(y, head["importance"], color="tab:blue", label="mean over steps")
        if "importance_last_step" in head.columns:
            ax.scatter(head["importance_last_step"], y, s=12, color="black", label="at bar t")
        ax.axvline(1.0 / len(table), color="grey", lw=0.6, ls="--", label="uniform")
        ax.set_yticks(y, head["feature"], fontsize=8)
        ax.set_xlabel("mean selection weight (sums to 1 over features)")
        shown = f" (top {len(head)} of {len(table)})" if len(head) < len(table) else ""
        ax.set_title(title + shown, fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        return _save(fig, path)
    finally:
        plt.close(fig)
