"""Backtest: PredictionFrame -> positions -> PnL after fees and slippage, and trading metrics.

The backtest reads predictions and candles, never a model. See :mod:`.engine` for the timing
convention (decision at the close of t, execution at the close of t + execution_lag).
"""

from __future__ import annotations

from cryptoforecast.backtest.engine import (
    BacktestResult,
    BacktestSpec,
    periods_per_year_for,
    run_backtest,
)
from cryptoforecast.backtest.plots import plot_equity, plot_equity_comparison
from cryptoforecast.backtest.report import trading_metrics

__all__ = [
    "BacktestResult",
    "BacktestSpec",
    "periods_per_year_for",
    "plot_equity",
    "plot_equity_comparison",
    "run_backtest",
    "trading_metrics",
]
