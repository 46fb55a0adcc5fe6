"""Targets: the ONLY module that looks forward in time.

``y[t, h] = log(close[t + lag + h] / close[t + lag])``: a forecast made at the close of bar ``t``
can be executed at the close of bar ``t + lag`` (``execution_lag``, default 1) and is judged on
the return from there to ``h`` bars later. ``kind="direction"`` turns that into 1.0 (up) / 0.0
(not up; an exactly flat return counts as not up). A label whose bars ``t .. t+lag+h`` are not
consecutive (a data gap) is NaN, so no sample is ever judged across an outage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoforecast.data.schema import DataError

KINDS = ("return", "direction")


@dataclass(frozen=True)
class TargetSpec:
    """What to predict. Built from the ``target`` node of the config.

    Args:
        horizon: bars ahead (an int, or a list of ints for one head per horizon).
        execution_lag: bars between the forecast (close of t) and the execution bar's close.
        kind: ``return`` (log return, regression) or ``direction`` (up/not up, classification).
    """

    horizon: int | list[int] = 1
    execution_lag: int = 1
    kind: str = "return"

    def __post_init__(self) -> None:
        hs = self.horizons
        if not hs or any(int(h) != h or h < 1 for h in hs):
            raise DataError(
                f"target.horizon must be positive integers (bars ahead), got {self.horizon!r}: "
                "use e.g. target.horizon=1, or target.horizon=[1,4,24] for one head per horizon"
            )
        if len(set(hs)) != len(hs):
            raise DataError(f"target.horizon has duplicates: {self.horizon!r}")
        if self.execution_lag < 0:
            raise DataError(f"target.execution_lag must be >= 0, got {self.execution_lag}")
        if self.kind not in KINDS:
            raise DataError(f"target.kind={self.kind!r}; choose one of {', '.join(KINDS)}")

    @property
    def horizons(self) -> list[int]:
        """The horizons as a list, in config order."""
        if isinstance(self.horizon, int):
            return [self.horizon]
        return [int(h) for h in self.horizon]

    @property
    def reach(self) -> int:
        """Bars after t that the longest label touches: ``execution_lag + max(horizon)``."""
        return self.execution_lag + max(self.horizons)


def make_targets(close: pd.Series, spec: TargetSpec) -> tuple[np.ndarray, np.ndarray]:
    """Compute the label matrix and the execution-bar close for every bar.

    Args:
        close: closes of a canonical candle frame (UTC DatetimeIndex at a fixed step, gaps kept).
        spec: horizons, execution lag and kind.

    Returns:
        ``(y, base)``: ``y`` float64 ``[N, H]`` (NaN where the label runs past the data or across
        a gap) and ``base`` float64 ``[N]``, the close at ``t + lag`` that the returns start from
        (NaN likewise), used to express forecasts in price units.
    """
    values = close.to_numpy(dtype="float64")
    n, lag = len(values), spec.execution_lag
    idx = close.index
    step = _step(idx)
    pos = (idx.as_unit("ns").asi8 - idx.as_unit("ns").asi8[0]) // step.value if n else np.array([])
    log_c = np.log(values)
    y = np.full((n, len(spec.horizons)), np.nan)
    base = np.full(n, np.nan)
    if n > lag:
        ok = pos[lag:] - pos[: n - lag] == lag  # t .. t+lag consecutive
        base[: n - lag] = np.where(ok, values[lag:], np.nan)
    for j, h in enumerate(spec.horizons):
        reach = lag + h
        if n <= reach:
            continue
        ok = pos[reach:] - pos[: n - reach] == reach  # t .. t+lag+h consecutive, no gap
        ret = log_c[reach:] - log_c[lag : n - h]  # log(close[t+lag+h] / close[t+lag])
        y[: n - reach, j] = np.where(ok, ret, np.nan)
    if spec.kind == "direction":
        y = np.where(np.isnan(y), np.nan, (y > 0).astype("float64"))
    return y, base


def _step(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The bar length of a frame with gaps: the smallest positive step."""
    if len(index) < 2:
        return pd.Timedelta(hours=1)
    return pd.Timedelta(int(np.diff(index.as_unit("ns").asi8).min()), unit="ns")
