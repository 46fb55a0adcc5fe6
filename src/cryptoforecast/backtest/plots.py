"""Equity curve figures of backtests (matplotlib imported lazily, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from cryptoforecast.backtest.engine import BacktestResult

__all__ = ["plot_equity", "plot_equity_comparison"]

_STYLE: dict[str, tuple[str, str]] = {  # label -> (line style, colour), the same in both panels
    "strategy (net)": ("-", "tab:blue"),
    "strategy (gross)": ("--", "tab:orange"),
    "buy and hold": ("-", "tab:green"),
}


def _drawdown(equity: np.ndarray) -> np.ndarray:
    """``equity / running peak - 1``, the starting capital 1.0 counted as a peak."""
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return np.asarray(equity / peak - 1.0, dtype=np.float64)


def _x_axis(bars: pd.DataFrame) -> pd.DatetimeIndex:
    """Plot times: the first trade's bar, then each return's end (the next bar's open time)."""
    times = pd.DatetimeIndex(bars["timestamp"])
    if len(times) == 0:
        return times
    step = times.to_series().diff().min() if len(times) > 1 else pd.Timedelta(hours=1)
    return times.insert(0, times[0] - step) + step


def plot_equity(result: BacktestResult, path: str | Path, title: str) -> Path:
    """Write a PNG: net and gross strategy equity and buy and hold; drawdowns below.

    Each point is the equity after a bar's return, plotted at that return's closing time
    (the open time of the next candle), with the starting capital 1.0 at the first trade.

    Args:
        result: a :class:`~cryptoforecast.backtest.engine.BacktestResult`.
        path: where to write the PNG (parent folders are created).
        title: figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: runs and tests have no display
    import matplotlib.pyplot as plt

    bars = result.bars
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    x = _x_axis(bars)
    curves = {
        "strategy (net)": bars["equity"].to_numpy(dtype=np.float64),
        "strategy (gross)": bars["gross_equity"].to_numpy(dtype=np.float64),
        "buy and hold": bars["benchmark_equity"].to_numpy(dtype=np.float64),
    }
    fig, (ax_eq, ax_dd) = plt.subplots(
        2, 1, figsize=(9.0, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    try:
        for label, eq in curves.items():
            style, color = _STYLE[label]
            ax_eq.plot(x, np.concatenate([[1.0], eq]), style, color=color, label=label, lw=1.0)
        ax_eq.axhline(1.0, color="grey", linewidth=0.5)
        ax_eq.set_ylabel("equity (start = 1)")
        ax_eq.set_title(title)
        ax_eq.legend(loc="best", fontsize=8)
        for label in ("strategy (net)", "buy and hold"):
            dd = _drawdown(np.concatenate([[1.0], curves[label]]))
            ax_dd.plot(x, dd, _STYLE[label][0], color=_STYLE[label][1], label=label, lw=1.0)
        ax_dd.set_ylabel("drawdown")
        ax_dd.legend(loc="lower left", fontsize=8)
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out


def plot_equity_comparison(
    results: dict[str, BacktestResult], path: str | Path, title: str
) -> Path:
    """Write a PNG comparing several strategies' net equity (and drawdowns) with buy and hold.

    Buy and hold is drawn from the first result; the strategies are expected to trade the same
    bars (e.g. models on identical walk-forward test folds).

    Args:
        results: label -> backtest result, in legend order.
        path: where to write the PNG (parent folders are created).
        title: figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: runs and tests have no display
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("plot_equity_comparison needs at least one result")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_eq, ax_dd) = plt.subplots(
        2, 1, figsize=(10.0, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    try:
        first = next(iter(results.values())).bars
        bh = np.concatenate([[1.0], first["benchmark_equity"].to_numpy(dtype=np.float64)])
        ax_eq.plot(_x_axis(first), bh, "--", color="black", lw=1.2, label="buy and hold")
        # tab20's dark shades, skipping its greys, so no strategy looks like buy and hold
        palette = [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i % 2 == 0 and i != 14]
        for i, (label, result) in enumerate(results.items()):
            eq = np.concatenate([[1.0], result.bars["equity"].to_numpy(dtype=np.float64)])
            x = _x_axis(result.bars)
            color = palette[i % len(palette)]
            ax_eq.plot(x, eq, lw=1.0, label=label, color=color)
            ax_dd.plot(x, _drawdown(eq), lw=0.8, color=color)
        ax_eq.axhline(1.0, color="grey", linewidth=0.5)
        ax_eq.set_ylabel("net equity (start = 1)")
        ax_eq.set_title(title)
        ax_eq.legend(loc="best", fontsize=8)
        ax_dd.set_ylabel("drawdown")
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out
