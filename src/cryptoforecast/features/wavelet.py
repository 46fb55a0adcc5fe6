"""Causal wavelet features: a discrete wavelet transform of the trailing window at each bar.

At every bar ``t`` the window ``close[t-window+1 .. t]`` is turned into
``x = log(close_window) - log(close[t])`` (log price relative to the window's last close, so the
features are invariant to the price scale and ``x[-1] == 0``) and decomposed with PyWavelets
(``db4``, level 3, ``symmetric`` boundary extension inside the window). Nothing outside the window
is used, so the transform is causal by construction; the series is never transformed as a whole.

Outputs per bar:

- ``wav_denoise_{w}``: the soft-threshold denoised log price at the window's last bar relative to
  close, i.e. ``log(denoised / close)``. Universal threshold ``sigma * sqrt(2 ln n)`` with
  ``sigma = median(|cD1|) / 0.6745`` (Donoho-Johnstone MAD of the finest details, taken about
  zero) and ``n = window``; details are thresholded, the approximation is kept.
- ``wav_energy_a{L}_{w}``, ``wav_energy_d{L}_{w}`` .. ``wav_energy_d1_{w}``: relative wavelet
  energy of each level, ``sum(c**2) / total`` (sums to 1; all 0 on a flat window).

All windows are built with ``sliding_window_view`` and transformed in row chunks with one
``wavedec`` call per chunk along ``axis=-1``. Reconstruction is linear in the coefficients and we
need only its last sample, so instead of a full ``waverec`` per window we precompute, once, the
weight of every coefficient in that sample (``waverec`` applied to unit coefficient vectors) and
keep the few non-zero ones (about 24 for db4/level 3): the same value as ``waverec(...)[-1]`` up to
rounding, checked against the textbook per-window path in the tests.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
import pywt
from numpy.lib.stride_tricks import sliding_window_view

from cryptoforecast.features.transforms import TransformBase, candle_column

logger = logging.getLogger(__name__)

# Rows of windows transformed at once: bounds memory (~8 MB per array at window 128).
_CHUNK_ROWS = 8192
_MAD_TO_SIGMA = 0.6745


def median_last_axis(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=-1)`` of a float array bit for bit (NaN rows give NaN), faster.

    ``np.median`` partitions too, then averages the middle element(s) with ``np.mean`` and checks
    for NaN; doing the same directly is about 4x faster on ``[8192, 67]``.
    """
    n = a.shape[-1]
    if n == 0:
        raise ValueError("median of an empty axis")
    k = n // 2
    if n % 2:
        out = np.partition(a, k, axis=-1)[..., k]
    else:  # np.mean of the two middle values: their sum divided by 2
        part = np.partition(a, (k - 1, k), axis=-1)
        out = (part[..., k - 1] + part[..., k]) / 2.0
    out = np.array(out)  # a copy that owns its data
    out[np.isnan(a).any(axis=-1)] = np.nan
    return out


class WaveletFeatures(TransformBase):
    """Trailing-window DWT denoised value and relative level energies.

    Args:
        window: bars in each trailing window (the current bar included).
        wavelet: PyWavelets discrete wavelet name.
        level: decomposition depth; must not exceed ``pywt.dwt_max_level(window, wavelet)``.
        mode: PyWavelets signal-extension mode at the window edges.

    Warm-up ``window - 1`` (windowed: the first full window ends at row ``window - 1``).
    ``windowed = True``: row ``t`` is a function of rows ``[t - warmup, t]`` alone (no recursion),
    so serving computes it on the last ``warmup + lookback`` bars only (``serving/predictor.py``).

    """

    windowed = True

    def __init__(
        self, window: int = 128, wavelet: str = "db4", level: int = 3, mode: str = "symmetric"
    ) -> None:
        self.window = int(window)
        self.wavelet = str(wavelet)
        self.level = int(level)
        self.mode = str(mode)
        self._wavelet = pywt.Wavelet(self.wavelet)
        if self.mode not in pywt.Modes.modes:
            raise ValueError(f"unknown wavelet mode {self.mode!r}; known: {pywt.Modes.modes}")
        max_level = pywt.dwt_max_level(self.window, self._wavelet.dec_len)
        if not 1 <= self.level <= max_level:
            raise ValueError(
                f"level must be in [1, {max_level}] for window {self.window} and {self.wavelet}, "
                f"got {self.level}"
            )
        w = self.window
        self._names = [f"wav_denoise_{w}", f"wav_energy_a{self.level}_{w}"]
        self._names += [f"wav_energy_d{k}_{w}" for k in range(self.level, 0, -1)]
        self._warmup = w - 1
        self._threshold_factor = math.sqrt(2.0 * math.log(w))
        self._last_weights = self._last_sample_weights()

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            "window": self.window,
            "wavelet": self.wavelet,
            "level": self.level,
            "mode": self.mode,
        }

    def _last_sample_weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per level, ``(indices, weights)`` of the coefficients reaching the last sample."""
        zero = pywt.wavedec(np.zeros(self.window), self._wavelet, mode=self.mode, level=self.level)
        lengths = [len(c) for c in zero]
        out = []
        for i, n in enumerate(lengths):
            basis = [np.zeros((n, m)) for m in lengths]  # n unit vectors in level i, rest zero
            basis[i] = np.eye(n)
            recon = pywt.waverec(basis, self._wavelet, mode=self.mode, axis=-1)  # [n, >= window]
            weight = recon[:, self.window - 1]
            support = np.flatnonzero(weight)
            out.append((support, weight[support]))
        return out

    def _transform_windows(self, x: np.ndarray) -> np.ndarray:
        """Features for a block of windows: ``[N, window] -> [N, 2 + level]``."""
        coeffs = pywt.wavedec(x, self._wavelet, mode=self.mode, level=self.level, axis=-1)
        energy = np.stack([np.sum(c * c, axis=-1) for c in coeffs], axis=-1)  # [N, level + 1]
        total = energy.sum(axis=-1, keepdims=True)  # [N, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            energy = np.where(total > 0.0, energy / total, 0.0)
        sigma = median_last_axis(np.abs(coeffs[-1])) / _MAD_TO_SIGMA  # [N]
        thr = (sigma * self._threshold_factor)[:, None]  # [N, 1]
        support, weight = self._last_weights[0]
        denoised = coeffs[0][:, support] @ weight  # the approximation is kept as is
        for c, (support, weight) in zip(coeffs[1:], self._last_weights[1:], strict=True):
            tail = c[:, support]  # [N, k]: only these coefficients reach the last sample
            denoised += (np.sign(tail) * np.maximum(np.abs(tail) - thr, 0.0)) @ weight
        return np.column_stack([denoised, energy])

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        log_close = np.log(candle_column(candles, "close"))
        n, w = len(log_close), self.window
        out = np.full((n, len(self._names)), np.nan)
        if n >= w:
            windows = sliding_window_view(log_close, w)  # [n - w + 1, w], a view
            for start in range(0, len(windows), _CHUNK_ROWS):
                block = windows[start : start + _CHUNK_ROWS]
                x = block - block[:, -1:]  # [rows, w], log price relative to the last close
                out[w - 1 + start : w - 1 + start + len(block)] = self._transform_windows(x)
        return {name: out[:, i] for i, name in enumerate(self._names)}
