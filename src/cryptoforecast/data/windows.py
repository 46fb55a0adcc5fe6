"""Sample windows: which bars ``t`` can end an input window, computed once for the whole history.

A sample ending at ``t`` uses feature rows ``[t-L+1, t]`` and the label ``y[t]``. It is valid
when all ``L`` input rows are consecutive bars (no data gap inside), every feature in them is
finite (warm-up over), its label exists (no gap, not past the data end), and ``t`` lies in the
requested span (warm-up history may feed inputs but never ends a sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class WindowIndex:
    """Valid window end positions (row numbers into the feature matrix) and their timestamps."""

    ends: np.ndarray  # int64 [S], sorted
    timestamps: pd.DatetimeIndex  # open time of bar t for each sample
    lookback: int

    def __len__(self) -> int:
        return len(self.ends)


def consecutive_run(index: pd.DatetimeIndex, step: pd.Timedelta) -> np.ndarray:
    """For each row, how many consecutive bars (no gap) end at it, itself included."""
    ns = index.as_unit("ns").asi8
    breaks = np.flatnonzero(np.diff(ns) != step.value) + 1  # rows that start a new run
    starts = np.zeros(len(ns), dtype=np.int64)
    starts[breaks] = breaks
    np.maximum.accumulate(starts, out=starts)
    return np.arange(len(ns), dtype=np.int64) - starts + 1


def build_window_index(
    index: pd.DatetimeIndex,
    step: pd.Timedelta,
    features: np.ndarray,
    targets: np.ndarray,
    lookback: int,
    sample_start: pd.Timestamp | None = None,
) -> WindowIndex:
    """Compute the valid sample ends.

    Args:
        index: bar open times (UTC), gaps kept.
        step: the bar length.
        features: ``[N, F]`` feature matrix (NaN inside warm-ups).
        targets: ``[N, H]`` labels from :func:`targets.make_targets` (NaN where unusable).
        lookback: window length ``L``.
        sample_start: first timestamp allowed to end a sample (the requested span's start).
    """
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1, got {lookback}")
    finite_row = np.isfinite(features).all(axis=1)
    # Consecutive finite rows ending at each row, computed like consecutive_run.
    bad = np.flatnonzero(~finite_row)
    last_bad = np.full(len(finite_row), -1, dtype=np.int64)
    last_bad[bad] = bad
    np.maximum.accumulate(last_bad, out=last_bad)
    finite_run = np.arange(len(finite_row)) - last_bad
    ok = (consecutive_run(index, step) >= lookback) & (finite_run >= lookback)
    ok &= np.isfinite(targets).all(axis=1)
    if sample_start is not None:
        ok &= index >= sample_start
    ends = np.flatnonzero(ok).astype(np.int64)
    return WindowIndex(ends=ends, timestamps=index[ends], lookback=lookback)
