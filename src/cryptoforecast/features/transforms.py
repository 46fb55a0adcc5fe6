"""Causal feature transforms on the canonical candle frame (see ``data/schema.py``).

Every transform is a small class with an explicit typed constructor and the :class:`Transform`
contract: ``warmup``, ``names()`` and ``__call__(candles) -> DataFrame`` (same index, float64
columns equal to ``names()``). The value at bar ``t`` uses rows ``<= t`` only: TA-Lib, trailing
pandas windows and backward shifts; never centred windows, ``bfill``, negative shifts or
full-sample statistics. ``tests/unit/test_features_causal.py`` checks this on real and random data.

Warm-up (``warmup``): the value at row ``t`` (0-based) no longer depends on where the history
starts once ``t >= warmup``.

- Windowed transforms depend on rows ``[t - warmup, t]`` only: ``warmup`` is the window span minus
  one, plus any shifts (a 1-bar log return costs one row).
- Recursive (EMA/Wilder) transforms never forget their start completely. The start's influence
  shrinks by ``(1 - alpha)`` a bar, so we declare ``warmup = seed + decay_bars(alpha)`` with
  ``decay_bars(alpha) = ceil(ln(DECAY_TOL) / ln(1 - alpha))`` and ``DECAY_TOL = 1e-6``, where
  ``seed`` is TA-Lib's lookback (bars spent building the first, SMA-seeded, value). For Wilder's
  RSI-200 (``alpha = 1/200``) that is ``200 + 2757 = 2957`` bars.

Units are scale-free on purpose (no raw price levels): distances are ``close / ma - 1``, MACD is
divided by close, RSI and stochastic are divided by 100 into ``[0, 1]``, returns are logarithmic
unless named otherwise. Rows are bars, not clock time: a missing hour in the source is simply not
a row, so "24 bars" is 24 hours only where the data has no gap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import talib

logger = logging.getLogger(__name__)

#: Relative influence of the starting point below which a recursive indicator counts as warm.
DECAY_TOL: float = 1e-6

_STATS: tuple[str, ...] = ("mean", "std", "min", "max", "skew")


@runtime_checkable
class Transform(Protocol):
    """What :class:`~cryptoforecast.features.pipeline.FeatureSet` needs from a transform."""

    @property
    def warmup(self) -> int:
        """Bars before the value stops depending on where the history starts."""
        ...

    def names(self) -> list[str]:
        """Output column names, in a stable order."""
        ...

    def __call__(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Compute the features: same index as ``candles``, float64 columns ``names()``."""
        ...


def decay_bars(alpha: float, tol: float = DECAY_TOL) -> int:
    """Bars after which a recursive filter's starting state weighs less than ``tol``.

    Args:
        alpha: smoothing factor of ``s[t] = (1 - alpha) * s[t-1] + alpha * x[t]``.
        tol: relative influence to fall below.

    Returns:
        ``ceil(ln(tol) / ln(1 - alpha))``.

    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return math.ceil(math.log(tol) / math.log1p(-alpha))


def ema_warmup(period: int) -> int:
    """Warm-up of TA-Lib's EMA(period): SMA seed (period - 1) + decay with alpha = 2/(period+1)."""
    return (period - 1) + decay_bars(2.0 / (period + 1))


def wilder_warmup(period: int) -> int:
    """Warm-up of TA-Lib's Wilder RSI(period): ``period`` seed bars + decay, alpha = 1/period."""
    return period + decay_bars(1.0 / period)


def _positive_ints(values: Sequence[int], what: str, minimum: int = 1) -> tuple[int, ...]:
    out = tuple(int(v) for v in values)
    if not out:
        raise ValueError(f"{what} must not be empty")
    if any(v < minimum for v in out):
        raise ValueError(f"{what} must all be >= {minimum}, got {list(out)}")
    if len(set(out)) != len(out):
        raise ValueError(f"{what} must be unique, got {list(out)}")
    return out


def candle_column(candles: pd.DataFrame, name: str) -> np.ndarray:
    """Column ``name`` of the candle frame as a contiguous float64 array (KeyError if absent)."""
    if name not in candles.columns:
        raise KeyError(f"candle frame has no {name!r} column (columns: {list(candles.columns)})")
    return np.ascontiguousarray(candles[name].to_numpy(dtype=np.float64))


def _log_returns(close: np.ndarray) -> np.ndarray:
    """1-bar log returns; row 0 is NaN (no previous close)."""
    out = np.full(close.shape, np.nan)
    out[1:] = np.diff(np.log(close))
    return out


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` moved ``k >= 1`` rows later (row t holds ``x[t - k]``): the only direction allowed."""
    out = np.full(x.shape, np.nan)
    out[k:] = x[:-k]
    return out


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0`` (a flat window), NaN kept where either is NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    out[den == 0.0] = 0.0
    return out


class TransformBase:
    """Shared plumbing: subclasses set ``_warmup`` and ``_names`` and implement ``_compute``."""

    _warmup: int
    _names: list[str]

    @property
    def warmup(self) -> int:
        """Bars before the value stops depending on where the history starts."""
        return self._warmup

    def names(self) -> list[str]:
        """Output column names, in a stable order."""
        return list(self._names)

    def params(self) -> dict[str, Any]:
        """Constructor arguments as JSON-serialisable values (for ``FeatureSet.to_spec``)."""
        raise NotImplementedError

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __call__(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Compute the features: same index as ``candles``, float64 columns ``names()``."""
        columns = self._compute(candles)
        return pd.DataFrame(
            {name: np.asarray(columns[name], dtype=np.float64) for name in self._names},
            index=candles.index,
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class RSI(TransformBase):
    """Wilder's relative strength index (TA-Lib ``RSI``) scaled to ``[0, 1]``.

    Columns ``rsi_{p}``. Warm-up ``max(p + decay_bars(1/p))``: 201 for 14, 438 for 30 and 2957
    for 200.
    """

    def __init__(self, periods: Sequence[int] = (14, 30, 200)) -> None:
        self.periods = _positive_ints(periods, "RSI periods", minimum=2)
        self._names = [f"rsi_{p}" for p in self.periods]
        self._warmup = max(wilder_warmup(p) for p in self.periods)

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"periods": list(self.periods)}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        close = candle_column(candles, "close")
        return {f"rsi_{p}": talib.RSI(close, timeperiod=p) / 100.0 for p in self.periods}


class MACD(TransformBase):
    """MACD line, signal and histogram (TA-Lib ``MACD``) divided by close, so scale-free.

    Columns ``macd_{f}_{s}_{g}``, ``macd_signal_{f}_{s}_{g}``, ``macd_hist_{f}_{s}_{g}``. Warm-up
    (conservative: seeds and decays of the slow and signal EMAs added) is
    ``(slow - 1) + (signal - 1) + decay_bars(2/(slow+1)) + decay_bars(2/(signal+1))``, 275 for
    12/26/9.
    """

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self.fast, self.slow, self.signal = int(fast), int(slow), int(signal)
        if not 2 <= self.fast < self.slow or self.signal < 1:
            raise ValueError(f"MACD needs 2 <= fast < slow and signal >= 1, got {self.params()}")
        tag = f"{self.fast}_{self.slow}_{self.signal}"
        self._names = [f"macd_{tag}", f"macd_signal_{tag}", f"macd_hist_{tag}"]
        self._warmup = ema_warmup(self.slow) + (self.signal - 1)
        if self.signal > 1:
            self._warmup += decay_bars(2.0 / (self.signal + 1))

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"fast": self.fast, "slow": self.slow, "signal": self.signal}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        close = candle_column(candles, "close")
        line, signal, hist = talib.MACD(
            close, fastperiod=self.fast, slowperiod=self.slow, signalperiod=self.signal
        )
        return dict(zip(self._names, (line / close, signal / close, hist / close), strict=True))


class Momentum(TransformBase):
    """Momentum as a simple return ``close / close.shift(p) - 1`` (TA-Lib ``ROCP``).

    Columns ``mom_{p}``. Warm-up ``max(p)``.
    """

    def __init__(self, periods: Sequence[int] = (30,)) -> None:
        self.periods = _positive_ints(periods, "momentum periods")
        self._names = [f"mom_{p}" for p in self.periods]
        self._warmup = max(self.periods)

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"periods": list(self.periods)}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        close = candle_column(candles, "close")
        return {f"mom_{p}": talib.ROCP(close, timeperiod=p) for p in self.periods}


class Stochastic(TransformBase):
    """Slow stochastic %K and %D (TA-Lib ``STOCH``, SMA smoothing) scaled to ``[0, 1]``.

    Columns ``stoch_k_{fk}_{sk}`` and ``stoch_d_{fk}_{sk}_{sd}``. Windowed: warm-up
    ``(fastk - 1) + (slowk - 1) + (slowd - 1)``, 17 for 14/3/3 (TA-Lib's lookback).
    """

    def __init__(
        self, fastk_period: int = 14, slowk_period: int = 3, slowd_period: int = 3
    ) -> None:
        self.fastk_period = int(fastk_period)
        self.slowk_period = int(slowk_period)
        self.slowd_period = int(slowd_period)
        if self.fastk_period < 1 or self.slowk_period < 1 or self.slowd_period < 1:
            raise ValueError(f"stochastic periods must be >= 1, got {self.params()}")
        k_tag = f"{self.fastk_period}_{self.slowk_period}"
        self._names = [f"stoch_k_{k_tag}", f"stoch_d_{k_tag}_{self.slowd_period}"]
        self._warmup = self.fastk_period + self.slowk_period + self.slowd_period - 3

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            "fastk_period": self.fastk_period,
            "slowk_period": self.slowk_period,
            "slowd_period": self.slowd_period,
        }

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        k, d = talib.STOCH(
            candle_column(candles, "high"),
            candle_column(candles, "low"),
            candle_column(candles, "close"),
            fastk_period=self.fastk_period,
            slowk_period=self.slowk_period,
            slowk_matype=talib.MA_Type.SMA,
            slowd_period=self.slowd_period,
            slowd_matype=talib.MA_Type.SMA,
        )
        return dict(zip(self._names, (k / 100.0, d / 100.0), strict=True))


class EMADistance(TransformBase):
    """Relative distance of close from its EMA: ``close / EMA(p) - 1`` (TA-Lib ``EMA``).

    Columns ``ema_dist_{p}``. Warm-up ``max((p - 1) + decay_bars(2/(p+1)))``: 78 for 10, 237 for
    30, 1581 for 200.
    """

    def __init__(self, periods: Sequence[int] = (10, 30, 200)) -> None:
        self.periods = _positive_ints(periods, "EMA periods", minimum=2)
        self._names = [f"ema_dist_{p}" for p in self.periods]
        self._warmup = max(ema_warmup(p) for p in self.periods)

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"periods": list(self.periods)}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        close = candle_column(candles, "close")
        return {
            f"ema_dist_{p}": close / talib.EMA(close, timeperiod=p) - 1.0 for p in self.periods
        }


class SMADistance(TransformBase):
    """Relative distance of close from its SMA: ``close / SMA(p) - 1`` (TA-Lib ``SMA``).

    Columns ``sma_dist_{p}``. Windowed: warm-up ``max(p) - 1``.
    """

    def __init__(self, periods: Sequence[int] = (10, 30, 200)) -> None:
        self.periods = _positive_ints(periods, "SMA periods", minimum=2)
        self._names = [f"sma_dist_{p}" for p in self.periods]
        self._warmup = max(self.periods) - 1

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"periods": list(self.periods)}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        close = candle_column(candles, "close")
        return {
            f"sma_dist_{p}": close / talib.SMA(close, timeperiod=p) - 1.0 for p in self.periods
        }


class LogReturns(TransformBase):
    """Log returns over ``k`` bars: ``log(close[t] / close[t - k])``.

    Columns ``logret_{k}``. Warm-up ``max(k)``.
    """

    def __init__(self, lags: Sequence[int] = (1, 2, 4, 8, 24)) -> None:
        self.lags = _positive_ints(lags, "log-return lags")
        self._names = [f"logret_{k}" for k in self.lags]
        self._warmup = max(self.lags)

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"lags": list(self.lags)}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        log_close = np.log(candle_column(candles, "close"))
        return {f"logret_{k}": log_close - _shift(log_close, k) for k in self.lags}


class RealizedVolatility(TransformBase):
    """Realised volatility: root mean square of the last ``w`` 1-bar log returns (per bar).

    Not demeaned (the usual realised-variance convention). Columns ``rvol_{w}``. Warm-up
    ``max(w)`` (``w - 1`` for the window plus one for the return).
    """

    def __init__(self, windows: Sequence[int] = (12, 24, 168)) -> None:
        self.windows = _positive_ints(windows, "volatility windows", minimum=2)
        self._names = [f"rvol_{w}" for w in self.windows]
        self._warmup = max(self.windows)

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"windows": list(self.windows)}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        sq = pd.Series(_log_returns(candle_column(candles, "close")) ** 2)
        return {
            f"rvol_{w}": np.sqrt(sq.rolling(w).mean().clip(lower=0.0).to_numpy())
            for w in self.windows
        }


class VolumeZScore(TransformBase):
    """Z-score of volume against its trailing window (the current bar included).

    ``(x[t] - mean(x[t-w+1..t])) / std(...)`` with ``x = log1p(volume)`` when ``log_volume``
    (volume is heavy-tailed) and 0 where the window is flat. Column ``volume_z_{w}``. Warm-up
    ``w - 1``.
    """

    def __init__(self, window: int = 168, log_volume: bool = True) -> None:
        self.window = int(window)
        self.log_volume = bool(log_volume)
        if self.window < 2:
            raise ValueError(f"volume z-score window must be >= 2, got {self.window}")
        self._names = [f"volume_z_{self.window}"]
        self._warmup = self.window - 1

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"window": self.window, "log_volume": self.log_volume}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        x = candle_column(candles, "volume")
        if self.log_volume:
            x = np.log1p(x)
        rolling = pd.Series(x).rolling(self.window)
        mean, std = rolling.mean().to_numpy(), rolling.std(ddof=0).to_numpy()
        return {self._names[0]: _safe_ratio(x - mean, std)}


class HighLowRange(TransformBase):
    """The bar's range ``log(high / low)``. Column ``hl_range``. Warm-up 0."""

    def __init__(self) -> None:
        self._names = ["hl_range"]
        self._warmup = 0

    def params(self) -> dict[str, Any]:
        """Constructor arguments (none)."""
        return {}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        return {"hl_range": np.log(candle_column(candles, "high") / candle_column(candles, "low"))}


class Calendar(TransformBase):
    """Hour of day and day of week (Monday = 0) of the bar's UTC open time, as sin/cos pairs.

    Columns ``hour_sin, hour_cos, dow_sin, dow_cos``. Warm-up 0.
    """

    def __init__(self) -> None:
        self._names = ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]
        self._warmup = 0

    def params(self) -> dict[str, Any]:
        """Constructor arguments (none)."""
        return {}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        index = candles.index
        if not isinstance(index, pd.DatetimeIndex):
            raise TypeError(f"Calendar needs a DatetimeIndex, got {type(index).__name__}")
        if index.tz is not None:
            index = index.tz_convert("UTC")
        hour = 2.0 * np.pi * index.hour.to_numpy(dtype=np.float64) / 24.0
        dow = 2.0 * np.pi * index.day_of_week.to_numpy(dtype=np.float64) / 7.0
        return {
            "hour_sin": np.sin(hour),
            "hour_cos": np.cos(hour),
            "dow_sin": np.sin(dow),
            "dow_cos": np.cos(dow),
        }


class LagReturns(TransformBase):
    """Lagged 1-bar log returns ``r[t - j]`` for ``j = 1..n_lags`` (``r[t]`` is ``logret_1``).

    Columns ``ret_lag_{j}``. Warm-up ``n_lags + 1``.
    """

    def __init__(self, n_lags: int = 24) -> None:
        self.n_lags = int(n_lags)
        if self.n_lags < 1:
            raise ValueError(f"n_lags must be >= 1, got {self.n_lags}")
        self._names = [f"ret_lag_{j}" for j in range(1, self.n_lags + 1)]
        self._warmup = self.n_lags + 1

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"n_lags": self.n_lags}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        r = _log_returns(candle_column(candles, "close"))
        return {f"ret_lag_{j}": _shift(r, j) for j in range(1, self.n_lags + 1)}


class RollingStats(TransformBase):
    """Trailing statistics of 1-bar log returns over each window.

    ``stats`` from ``mean, std, min, max, skew`` (std with ddof=1, skew bias-corrected, as
    pandas). Columns ``roll_{stat}_{w}`` ordered by window then stat. Warm-up ``max(w)``.
    """

    def __init__(
        self,
        windows: Sequence[int] = (24, 168),
        stats: Sequence[str] = _STATS,
    ) -> None:
        self.windows = _positive_ints(windows, "rolling windows", minimum=3)
        self.stats = tuple(str(s) for s in stats)
        unknown = sorted(set(self.stats) - set(_STATS))
        if unknown or not self.stats or len(set(self.stats)) != len(self.stats):
            raise ValueError(f"stats must be unique names from {list(_STATS)}, got {self.stats}")
        self._names = [f"roll_{s}_{w}" for w in self.windows for s in self.stats]
        self._warmup = max(self.windows)

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"windows": list(self.windows), "stats": list(self.stats)}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        r = pd.Series(_log_returns(candle_column(candles, "close")))
        out: dict[str, np.ndarray] = {}
        for w in self.windows:
            rolling = r.rolling(w)
            for s in self.stats:
                out[f"roll_{s}_{w}"] = getattr(rolling, s)().to_numpy()
        return out


class MomentumBlock(TransformBase):
    """Log returns over several horizons and, optionally, their risk-adjusted version.

    ``mom_logret_{h} = log(close[t] / close[t-h])``; with ``risk_adjusted``, also
    ``mom_radj_{h} = mom_logret_{h} / sqrt(sum of the h squared 1-bar returns)`` (a t-stat-like
    trend strength in ``[-sqrt(h), sqrt(h)]``, 0 on a flat window). Warm-up ``max(h)``.
    """

    def __init__(
        self, horizons: Sequence[int] = (48, 96, 168, 336, 720), risk_adjusted: bool = True
    ) -> None:
        self.horizons = _positive_ints(horizons, "momentum horizons", minimum=2)
        self.risk_adjusted = bool(risk_adjusted)
        self._names = [f"mom_logret_{h}" for h in self.horizons]
        if self.risk_adjusted:
            self._names += [f"mom_radj_{h}" for h in self.horizons]
        self._warmup = max(self.horizons)

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"horizons": list(self.horizons), "risk_adjusted": self.risk_adjusted}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        log_close = np.log(candle_column(candles, "close"))
        sq = pd.Series(_log_returns(candle_column(candles, "close")) ** 2)
        out: dict[str, np.ndarray] = {}
        for h in self.horizons:
            ret = log_close - _shift(log_close, h)
            out[f"mom_logret_{h}"] = ret
            if self.risk_adjusted:
                energy = sq.rolling(h).sum().clip(lower=0.0).to_numpy()
                out[f"mom_radj_{h}"] = _safe_ratio(ret, np.sqrt(energy))
        return out
