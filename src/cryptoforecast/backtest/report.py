"""Trading metrics on per-bar simple returns: numpy only, no pandas.

Conventions (the same as empyrical's, so numbers are comparable with pyfolio-style reports):

- Inputs are per-bar **simple** returns ``r`` (equity grows by ``1 + r`` each bar), starting
  capital 1.0, risk-free rate 0, ``periods_per_year`` bars per year (crypto trades 24/7: 8760
  for 1h bars, 2190 for 4h, 365 for 1d).
- ``sharpe = mean(r) / std(r, ddof=1) * sqrt(periods_per_year)``; ``annual_volatility =
  std(r, ddof=1) * sqrt(periods_per_year)``.
- ``sortino = mean(r) * sqrt(periods_per_year) / sqrt(mean(min(r, 0) ** 2))`` (downside deviation
  over *all* bars, target 0).
- ``annual_return`` is the CAGR ``equity_end ** (periods_per_year / n_bars) - 1`` (-1.0 once the
  equity is wiped out).
- ``max_drawdown`` is the most negative ``equity / running_peak - 1`` with the starting capital
  1.0 counted as a peak: a negative fraction (-0.23 = 23 % below the peak), 0.0 without losses.

Undefined values are NaN, never inf, so they survive JSON (the pipelines write NaN as null): the
Sharpe ratio and volatility with fewer than 2 bars or zero variance, the Sortino ratio with no
losing bar, the win rate with no trade, and the profit factor with no trade or no losing trade
(read ``n_trades`` and ``win_rate`` beside it).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# A standard deviation this small is zero variance up to rounding: the ratio is undefined.
_ZERO_STD = 1e-14

METRIC_KEYS: tuple[str, ...] = (
    "total_return",
    "annual_return",
    "annual_volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "win_rate",
    "profit_factor",
    "n_trades",
    "n_bars",
    "turnover",
    "exposure",
    "cost_paid",
    "bh_total_return",
    "bh_sharpe",
    "bh_max_drawdown",
)

__all__ = [
    "METRIC_KEYS",
    "annual_return",
    "annual_volatility",
    "equity_curve",
    "max_drawdown",
    "profit_factor",
    "sharpe_ratio",
    "sortino_ratio",
    "total_return",
    "trading_metrics",
    "win_rate",
]


def _as_returns(returns: npt.ArrayLike) -> FloatArray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"expected 1-D returns, got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("returns contain NaN or inf")
    return r


def equity_curve(returns: npt.ArrayLike) -> FloatArray:
    """Equity after each bar from starting capital 1.0. Shapes: ``[N] -> [N]``."""
    return np.asarray(np.cumprod(1.0 + _as_returns(returns)), dtype=np.float64)


def total_return(returns: npt.ArrayLike) -> float:
    """Compounded return over all bars, ``prod(1 + r) - 1`` (0.0 for no bars)."""
    return float(np.prod(1.0 + _as_returns(returns)) - 1.0)


def annual_return(returns: npt.ArrayLike, periods_per_year: float) -> float:
    """CAGR: ``prod(1 + r) ** (periods_per_year / n) - 1``.

    -1.0 once the equity has touched zero (a short losing over 100 % in a bar); NaN for no bars
    or when the power overflows (absurd returns over a few bars).
    """
    r = _as_returns(returns)
    if r.size == 0:
        return math.nan
    equity = np.cumprod(1.0 + r)
    if (equity <= 0.0).any():  # ruined once is ruined: no recovery through a second sign flip
        return -1.0
    with np.errstate(over="ignore"):
        cagr = float(np.power(equity[-1], periods_per_year / r.size) - 1.0)
    return cagr if math.isfinite(cagr) else math.nan


def annual_volatility(returns: npt.ArrayLike, periods_per_year: float) -> float:
    """``std(r, ddof=1) * sqrt(periods_per_year)``; NaN with fewer than 2 bars."""
    r = _as_returns(returns)
    if r.size < 2:
        return math.nan
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year))


def sharpe_ratio(returns: npt.ArrayLike, periods_per_year: float) -> float:
    """Annualised Sharpe ratio, rf 0: ``mean / std(ddof=1) * sqrt(periods_per_year)``.

    NaN with fewer than 2 bars or zero variance (e.g. a strategy that never traded).
    """
    r = _as_returns(returns)
    if r.size < 2:
        return math.nan
    sd = float(np.std(r, ddof=1))
    if sd <= _ZERO_STD:
        return math.nan
    return float(np.mean(r) / sd * math.sqrt(periods_per_year))


def sortino_ratio(returns: npt.ArrayLike, periods_per_year: float) -> float:
    """Annualised Sortino ratio: ``mean * sqrt(ppy) / sqrt(mean(min(r, 0)^2))``.

    NaN for no bars or when no bar lost money (zero downside deviation).
    """
    r = _as_returns(returns)
    if r.size == 0:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if downside <= _ZERO_STD:
        return math.nan
    return float(np.mean(r) * math.sqrt(periods_per_year) / downside)


def max_drawdown(returns: npt.ArrayLike) -> float:
    """Largest fall from a running peak (starting capital 1.0 included), as a fraction <= 0."""
    eq = np.concatenate([[1.0], equity_curve(returns)])
    peak = np.maximum.accumulate(eq)
    return float(np.min(eq / peak - 1.0))


def win_rate(trade_returns: npt.ArrayLike) -> float:
    """Share of trades with a strictly positive return; NaN with no trade."""
    r = _as_returns(trade_returns)
    return float(np.mean(r > 0.0)) if r.size else math.nan


def profit_factor(trade_returns: npt.ArrayLike) -> float:
    """Sum of winning trades' returns / |sum of losing trades' returns|.

    NaN with no trade or no losing trade (the ratio would be inf; NaN keeps JSON valid).
    """
    r = _as_returns(trade_returns)
    losses = -float(np.sum(r[r < 0.0]))
    if losses <= 0.0:
        return math.nan
    return float(np.sum(r[r > 0.0])) / losses


def trading_metrics(
    net: npt.ArrayLike,
    benchmark: npt.ArrayLike,
    position: npt.ArrayLike,
    cost: npt.ArrayLike,
    trade_returns: npt.ArrayLike,
    periods_per_year: float,
) -> dict[str, float]:
    """All backtest metrics, flat and without prefix (the caller adds ``backtest/``).

    Args:
        net: per-bar net simple returns of the strategy (after costs).
        benchmark: per-bar simple returns of buy and hold over the same bars.
        position: per-bar position (the position held over each bar's return).
        cost: per-bar costs as a fraction of equity.
        trade_returns: net return of each trade.
        periods_per_year: bars per year.

    Returns:
        The keys of :data:`METRIC_KEYS`. ``turnover`` is ``sum |position change|`` per year
        (entering from flat counts; no forced exit at the end), ``exposure`` the share of bars
        with a non-zero position, ``cost_paid`` the plain sum of per-bar cost fractions.

    Shapes:
        ``net, benchmark, position, cost: [N]``; ``trade_returns: [T]``.
    """
    if periods_per_year <= 0:
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year}")
    r, b, pos, c = (_as_returns(x) for x in (net, benchmark, position, cost))
    if not r.size == b.size == pos.size == c.size:
        raise ValueError(
            f"misaligned bars: net {r.size}, benchmark {b.size}, position {pos.size}, "
            f"cost {c.size}"
        )
    trades = _as_returns(trade_returns)
    n = r.size
    changes = np.abs(np.diff(pos, prepend=0.0))
    return {
        "total_return": total_return(r),
        "annual_return": annual_return(r, periods_per_year),
        "annual_volatility": annual_volatility(r, periods_per_year),
        "sharpe": sharpe_ratio(r, periods_per_year),
        "sortino": sortino_ratio(r, periods_per_year),
        "max_drawdown": max_drawdown(r),
        "win_rate": win_rate(trades),
        "profit_factor": profit_factor(trades),
        "n_trades": float(trades.size),
        "n_bars": float(n),
        "turnover": float(changes.sum() * periods_per_year / n) if n else math.nan,
        "exposure": float(np.mean(pos != 0.0)) if n else math.nan,
        "cost_paid": float(c.sum()),
        "bh_total_return": total_return(b),
        "bh_sharpe": sharpe_ratio(b, periods_per_year),
        "bh_max_drawdown": max_drawdown(b),
    }
