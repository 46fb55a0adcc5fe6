"""Persistence baselines computed from the same samples as the models (no fitting)."""

from __future__ import annotations

import numpy as np

from cryptoforecast.data.datamodule import SampleSet


def zero_return(samples: SampleSet, positions: np.ndarray) -> np.ndarray:
    """Random-walk persistence: the price stays where it is, so every return forecast is 0.

    Its direction forecast is always "not up", so its directional accuracy is the share of
    non-up bars and its F1 is 0: it is the error baseline, not a direction baseline.
    """
    return np.zeros((len(positions), len(samples.target.horizons)))


def last_change(samples: SampleSet, positions: np.ndarray) -> np.ndarray:
    """Momentum persistence: the next h-bar log return equals the last one observed at t."""
    ends = samples.windows.ends[positions]
    log_c = np.log(samples.close)
    out = np.empty((len(positions), len(samples.target.horizons)))
    for j, h in enumerate(samples.target.horizons):
        prev = ends - h
        out[:, j] = np.where(prev >= 0, log_c[ends] - log_c[np.maximum(prev, 0)], 0.0)
    return out
