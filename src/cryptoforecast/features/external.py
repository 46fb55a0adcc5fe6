"""Features from external daily series: Fear & Greed index and BTC on-chain metrics.

Both align a daily file to the bars with :func:`cryptoforecast.data.external.align_to_bars`:
the value for day ``D`` is usable from ``D + 24 h + delay_hours``; bar ``t`` (open time) sees
what was published by its close ``t + interval``; a lag of ``k`` hours is a further delay (bar
``t`` sees what was usable at ``t + interval - k``), not a shift by rows, so it does not depend on
gaps in the candles. Values older than ``max_age_hours`` since publication are stale and give NaN.

Warm-up: the alignment reads clock time only, never earlier candles, so it does not depend on
where the candle history starts (warm-up 0). Only the optional volatility weight of
:class:`FearGreed` reads earlier candles; its window is the declared warm-up.

Default delays are assumptions, not provider facts: 1 h for Fear & Greed (alternative.me stamps
a value with its day, and we treat it as known only after that day) and 4 h for the on-chain
metrics (a daily job after the day closes). Raise them if your feed is slower.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cryptoforecast.data.external import (
    DEFAULT_MAX_AGE_HOURS,
    DailySeries,
    align_to_bars,
    load_daily_series,
    warn_if_uncovered,
)
from cryptoforecast.data.schema import DataError, interval_to_timedelta
from cryptoforecast.features.transforms import TransformBase, candle_column

logger = logging.getLogger(__name__)

ONCHAIN_METRICS: tuple[str, ...] = ("mvrv", "nupl", "realized_price")
_ONCHAIN_NAMES = {
    "mvrv": "onchain_mvrv",
    "nupl": "onchain_nupl",
    "realized_price": "onchain_rp_dist",
}


def _lags(values: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(v) for v in values)
    if not out or any(v < 0 for v in out) or len(set(out)) != len(out):
        raise ValueError(f"lags_hours must be unique integers >= 0, got {list(values)}")
    return out


def _suffix(lag: int) -> str:
    return "" if lag == 0 else f"_lag{lag}"


def _check_common(delay_hours: float, max_age_hours: float, interval: str) -> None:
    if delay_hours < 0:
        raise ValueError(f"delay_hours must be >= 0, got {delay_hours}")
    if max_age_hours <= 0:
        raise ValueError(f"max_age_hours must be > 0, got {max_age_hours}")
    interval_to_timedelta(interval)  # DataError for an unknown interval


def volatility_weight(
    close: np.ndarray, vol_window: int, median_window: int, max_weight: float
) -> np.ndarray:
    """Causal weight that grows with recent volatility.

    ``w[t] = clip(rv[t] / median(rv[t - median_window + 1 .. t]), 0, max_weight)`` where
    ``rv[t] = sqrt(mean(r[t - vol_window + 1 .. t] ** 2))`` over 1-bar log returns ``r``; 0 where
    the median is 0 (a flat market). First finite value at row
    ``vol_window + median_window - 1``.
    """
    log_ret = np.diff(np.log(close), prepend=np.nan)  # row 0: no previous close
    rv = pd.Series(np.sqrt(pd.Series(log_ret**2).rolling(vol_window).mean().clip(lower=0.0)))
    med = rv.rolling(median_window).median().to_numpy()
    rv_now = rv.to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = rv_now / med
    ratio[med == 0.0] = 0.0
    return np.clip(ratio, 0.0, max_weight)


class _DailyMixin:
    """Plumbing shared by the daily-series transforms: align, warn once (not a transform)."""

    _series: DailySeries
    _warned: bool = False
    delay_hours: float
    max_age_hours: float
    interval: str

    def _align(self, column: str, candles: pd.DataFrame, lag_hours: float) -> np.ndarray:
        index = candles.index
        if not isinstance(index, pd.DatetimeIndex):
            raise TypeError(f"{type(self).__name__} needs a DatetimeIndex, got {type(index)}")
        return align_to_bars(
            self._series.values[column],
            index,
            self.interval,
            self.delay_hours,
            self.max_age_hours,
            lag_hours=lag_hours,
        )

    def _warn_coverage(self, candles: pd.DataFrame) -> None:
        if self._warned or not isinstance(candles.index, pd.DatetimeIndex):
            return
        self._warned = warn_if_uncovered(
            self._series, candles.index, self.interval, self.delay_hours, self.max_age_hours
        )


class FearGreed(_DailyMixin, TransformBase):
    """Crypto Fear & Greed index (daily, 0..100) scaled to ``[0, 1]``, aligned without look-ahead.

    Columns per lag ``k`` in ``lags_hours`` (suffix ``_lag{k}``, none for ``k = 0``):

    - ``fg``: ``value / 100`` usable at the bar's close minus ``k`` hours.
    - ``fg_chg24`` (``change_24h``): ``fg`` minus its value 24 hours earlier (day-over-day).
    - ``fg_volw`` (``vol_weighted``): volatility-weighted fusion ``(fg - 0.5) * w[t]`` with
      :func:`volatility_weight` (``w = rv_24 / trailing 720-bar median of rv_24``, clipped to
      ``[0, max_weight]``): the centred sentiment counts more when the market is more volatile
      than usual and fades to 0 in a calm one.

    Args:
        delay_hours: publication delay after the day closes.
        lags_hours: further delays, in hours (0 = none).
        change_24h: add the day-over-day change.
        vol_weighted: add the volatility-weighted fusion.
        vol_window: bars in the realised-volatility window.
        vol_median_window: bars in the trailing median the volatility is compared with.
        max_weight: upper clip of the weight.
        max_age_hours: staleness limit (see ``data/external.py``).
        path: a CSV with ``date`` and ``column`` (``None``: the bundled alternative.me file).
        column: the value column (0..100).
        interval: the bar length of the candles (``${data.interval}`` in the configs).

    Warm-up 0, or ``vol_window + vol_median_window - 1`` (743) with ``vol_weighted``.

    Raises:
        DataError: the file is invalid or a value lies outside ``[0, 100]`` (names file and date).

    """

    def __init__(
        self,
        delay_hours: float = 1.0,
        lags_hours: Sequence[int] = (0,),
        change_24h: bool = True,
        vol_weighted: bool = False,
        vol_window: int = 24,
        vol_median_window: int = 720,
        max_weight: float = 3.0,
        max_age_hours: float = DEFAULT_MAX_AGE_HOURS,
        path: str | None = None,
        column: str = "value",
        interval: str = "1h",
    ) -> None:
        self.delay_hours, self.max_age_hours = float(delay_hours), float(max_age_hours)
        self.interval, self.path, self.column = str(interval), path, str(column)
        _check_common(self.delay_hours, self.max_age_hours, self.interval)
        self.lags_hours = _lags(lags_hours)
        self.change_24h, self.vol_weighted = bool(change_24h), bool(vol_weighted)
        self.vol_window, self.vol_median_window = int(vol_window), int(vol_median_window)
        self.max_weight = float(max_weight)
        if self.vol_window < 2 or self.vol_median_window < 1 or self.max_weight <= 0:
            raise ValueError(f"bad volatility-weight settings {self.params()}")
        self._series = self._load()
        self._names = []
        for k in self.lags_hours:
            self._names.append(f"fg{_suffix(k)}")
            if self.change_24h:
                self._names.append(f"fg_chg24{_suffix(k)}")
            if self.vol_weighted:
                self._names.append(f"fg_volw{_suffix(k)}")
        self._warmup = self.vol_window + self.vol_median_window - 1 if self.vol_weighted else 0

    def _load(self) -> DailySeries:
        series = load_daily_series(self.path or "fear_greed", [self.column])
        raw = series.values[self.column]
        outside = raw[(raw < 0) | (raw > 100)]
        if len(outside):
            raise DataError(
                f"{series.source}: Fear & Greed {self.column!r} must lie in [0, 100]; date "
                f"{outside.index[0].date()} has {outside.iloc[0]}"
            )
        return DailySeries(values=series.values / 100.0, source=series.source)

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            "delay_hours": self.delay_hours,
            "lags_hours": list(self.lags_hours),
            "change_24h": self.change_24h,
            "vol_weighted": self.vol_weighted,
            "vol_window": self.vol_window,
            "vol_median_window": self.vol_median_window,
            "max_weight": self.max_weight,
            "max_age_hours": self.max_age_hours,
            "path": None if self.path is None else str(self.path),
            "column": self.column,
            "interval": self.interval,
        }

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        self._warn_coverage(candles)
        weight = None
        if self.vol_weighted:
            weight = volatility_weight(
                candle_column(candles, "close"),
                self.vol_window,
                self.vol_median_window,
                self.max_weight,
            )
        out: dict[str, np.ndarray] = {}
        for k in self.lags_hours:
            fg = self._align(self.column, candles, k)
            out[f"fg{_suffix(k)}"] = fg
            if self.change_24h:
                out[f"fg_chg24{_suffix(k)}"] = fg - self._align(self.column, candles, k + 24)
            if weight is not None:
                out[f"fg_volw{_suffix(k)}"] = (fg - 0.5) * weight
        return out


class OnChain(_DailyMixin, TransformBase):
    """Daily BTC on-chain metrics aligned without look-ahead.

    Columns, in ``metrics`` order: ``onchain_mvrv`` (market value / realised value),
    ``onchain_nupl`` (net unrealised profit/loss, a fraction of market cap) and
    ``onchain_rp_dist = close / realized_price - 1`` (the bar's close against the last published
    realised price: scale-free, no raw price level).

    Args:
        metrics: any of ``mvrv``, ``nupl``, ``realized_price``.
        delay_hours: publication delay after the day closes.
        max_age_hours: staleness limit (see ``data/external.py``).
        path: a CSV with ``date`` and the metric columns (``None``: the bundled file).
        interval: the bar length of the candles.

    Warm-up 0 (clock-time alignment only).

    """

    def __init__(
        self,
        metrics: Sequence[str] = ONCHAIN_METRICS,
        delay_hours: float = 4.0,
        max_age_hours: float = DEFAULT_MAX_AGE_HOURS,
        path: str | None = None,
        interval: str = "1h",
    ) -> None:
        self.metrics = tuple(str(m) for m in metrics)
        unknown = sorted(set(self.metrics) - set(ONCHAIN_METRICS))
        if unknown or not self.metrics or len(set(self.metrics)) != len(self.metrics):
            raise ValueError(
                f"metrics must be unique names from {list(ONCHAIN_METRICS)}, got {self.metrics}"
            )
        self.delay_hours, self.max_age_hours = float(delay_hours), float(max_age_hours)
        self.interval, self.path = str(interval), path
        _check_common(self.delay_hours, self.max_age_hours, self.interval)
        self._series = load_daily_series(self.path or "btc_onchain", list(self.metrics))
        if "realized_price" in self.metrics:
            rp = self._series.values["realized_price"]
            if (rp <= 0).any():
                raise DataError(
                    f"{self._series.source}: realized_price must be > 0; date "
                    f"{rp[rp <= 0].index[0].date()} has {rp[rp <= 0].iloc[0]}"
                )
        self._names = [_ONCHAIN_NAMES[m] for m in self.metrics]
        self._warmup = 0

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            "metrics": list(self.metrics),
            "delay_hours": self.delay_hours,
            "max_age_hours": self.max_age_hours,
            "path": None if self.path is None else str(self.path),
            "interval": self.interval,
        }

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        self._warn_coverage(candles)
        out: dict[str, np.ndarray] = {}
        for m in self.metrics:
            aligned = self._align(m, candles, 0.0)
            if m == "realized_price":
                aligned = candle_column(candles, "close") / aligned - 1.0
            out[_ONCHAIN_NAMES[m]] = aligned
        return out
