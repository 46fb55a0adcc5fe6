"""Equal-weight portfolio of per-symbol backtests (multi-asset runs: ``backtest/*``).

The capital is split equally across the symbols' strategies and rebalanced to equal weights
every bar, so the portfolio's per-bar simple return is the mean of the symbols' per-bar returns
(net, gross, cost and buy and hold alike). A symbol without a bar at some time (an outage, or
history that starts later) counts as flat cash over it. Rebalancing between the symbols is not
charged (each symbol's own trades pay their costs in full). ``position`` is the mean position,
so ``exposure`` is the share of bars with any symbol invested and ``turnover`` that of the mean
position (opposite moves of two symbols in one bar net out).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoforecast.backtest.engine import BAR_COLUMNS, TRADE_COLUMNS, BacktestResult
from cryptoforecast.backtest.report import trading_metrics

_SUMMED = ("position", "gross", "cost", "net", "benchmark")


def _bar_returns(bars: pd.DataFrame) -> pd.DataFrame:
    """Per-bar simple returns of one backtest, indexed by bar time (buy and hold included)."""
    bench_equity = bars["benchmark_equity"].to_numpy(dtype=np.float64)
    bench = bench_equity / np.concatenate([[1.0], bench_equity[:-1]]) - 1.0
    out = bars[["position", "gross", "cost", "net"]].astype(np.float64)
    return out.assign(benchmark=bench).set_index(pd.DatetimeIndex(bars["timestamp"]))


def equal_weight_portfolio(results: dict[str, BacktestResult]) -> BacktestResult:
    """Combine per-symbol backtests into one equal-weight portfolio (see the module doc).

    Args:
        results: symbol -> that symbol's backtest (same bar length and annualisation).

    Returns:
        A :class:`BacktestResult` whose ``bars`` have :data:`BAR_COLUMNS` (``signal_time`` is
        NaT: there is no single signal) and whose ``trades`` are all symbols' trades with a
        leading ``symbol`` column.

    Raises:
        ValueError: no results, or results annualised differently.
    """
    if not results:
        raise ValueError("equal_weight_portfolio needs at least one backtest")
    ppy = {float(r.metrics["periods_per_year"]) for r in results.values()}
    if len(ppy) != 1:
        raise ValueError(f"backtests with different periods_per_year {sorted(ppy)}")
    periods = ppy.pop()
    parts = [_bar_returns(r.bars) for r in results.values()]
    times = parts[0].index
    for part in parts[1:]:
        times = times.union(part.index)
    mean = sum(p.reindex(times, fill_value=0.0) for p in parts) / len(parts)
    assert isinstance(mean, pd.DataFrame)
    r = {name: mean[name].to_numpy(dtype=np.float64) for name in _SUMMED}
    bars = pd.DataFrame(
        {
            "timestamp": times,
            "signal_time": pd.Series(pd.NaT, index=range(len(times)), dtype="datetime64[ns, UTC]"),
            "position": r["position"],
            "asset_return": np.log1p(r["benchmark"]),
            "gross": r["gross"],
            "cost": r["cost"],
            "net": r["net"],
            "equity": np.cumprod(1.0 + r["net"]),
            "gross_equity": np.cumprod(1.0 + r["gross"]),
            "benchmark_equity": np.cumprod(1.0 + r["benchmark"]),
        }
    )[list(BAR_COLUMNS)]
    trades = pd.concat(
        [t.trades.assign(symbol=s)[["symbol", *TRADE_COLUMNS]] for s, t in results.items()],
        ignore_index=True,
    )
    metrics = trading_metrics(
        r["net"],
        r["benchmark"],
        r["position"],
        r["cost"],
        trades["net_return"].to_numpy(dtype=np.float64),
        periods,
    )
    metrics["periods_per_year"] = periods
    return BacktestResult(bars=bars.reset_index(drop=True), trades=trades, metrics=metrics)
