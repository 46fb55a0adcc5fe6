"""Naive forecasts as models in their own right (``model=naive``), fitted on train rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryptoforecast.data.datamodule import SampleSet, train_rows
from cryptoforecast.data.splits import Fold

METHODS = ("zero", "last", "drift", "ma")


class NaiveForecaster:
    """Persistence-style forecasts of the h-bar log return from bar t.

    Methods:
        zero: random-walk persistence, the price stays put (return 0). The error baseline; it
            never predicts "up", so its directional accuracy is the share of non-up bars.
        last: last change persists: the last observed h-bar return ``log(c[t] / c[t-h])``.
        drift: the mean 1-bar log return of the training rows times h (a random walk with drift).
        ma: the mean of the last ``window`` 1-bar log returns up to t, times h.

    For ``target.kind == "direction"`` the forecast becomes ``p_up`` = 1.0 when the return
    forecast is positive, else 0.0 (for ``zero``: the training share of up labels, a constant).

    Args:
        method: one of ``zero``, ``last``, ``drift``, ``ma``.
        window: bars averaged by ``ma``.
    """

    def __init__(self, method: str = "zero", window: int = 24) -> None:
        if method not in METHODS:
            raise ValueError(f"naive method {method!r}; choose one of {', '.join(METHODS)}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.method, self.window = method, window
        self._drift: dict[int, float] = {}  # symbol block -> mean 1-bar log return
        self._up_share = 0.5

    def fit(self, samples: SampleSet, fold: Fold, out_dir: Path) -> dict[str, float]:
        """Estimate the drift (and the up share) from the training rows only."""
        rows = train_rows(samples, fold.train)
        steps = np.diff(np.log(samples.close[rows]))
        same = np.diff(_block_ids(samples, rows)) == 0  # never a step from one symbol to another
        self._drift = {
            int(b): float(np.mean(steps[same & (_block_ids(samples, rows[1:]) == b)]))
            for b in np.unique(_block_ids(samples, rows[1:])[same])
        }
        labels = samples.targets[samples.windows.ends[fold.train]]
        self._up_share = float(np.mean(labels > 0)) if labels.size else 0.5
        return {"ops/train_seconds": 0.0, "ops/params": 1.0 if self.method == "drift" else 0.0}

    def predict(self, samples: SampleSet, positions: np.ndarray) -> np.ndarray:
        """Return forecasts (or p_up) ``[S, H]`` for the samples at ``positions``."""
        ends = samples.windows.ends[positions]
        horizons = samples.target.horizons
        log_c = np.log(samples.close)
        out = np.zeros((len(ends), len(horizons)))
        for j, h in enumerate(horizons):
            if self.method == "last":
                out[:, j] = log_c[ends] - log_c[np.maximum(ends - h, 0)]
            elif self.method == "drift":  # per symbol; a symbol unseen in training: 0
                blocks = _block_ids(samples, ends)
                out[:, j] = np.array([self._drift.get(int(b), 0.0) for b in blocks]) * h
            elif self.method == "ma":
                lo = np.maximum(ends - self.window, 0)
                out[:, j] = (log_c[ends] - log_c[lo]) / np.maximum(ends - lo, 1) * h
        if samples.target.kind == "direction":
            if self.method == "zero":
                return np.full_like(out, self._up_share)
            return (out > 0).astype("float64")
        return out


def _block_ids(samples: SampleSet, rows: np.ndarray) -> np.ndarray:
    """The symbol block of each row (all 0 for a single-symbol set)."""
    if not samples.blocks:
        return np.zeros(len(rows), dtype=np.int64)
    starts = np.array([b.start for b in samples.blocks])
    return np.searchsorted(starts, rows, side="right") - 1
