"""Signal -> target position rules: small pure functions on numpy arrays.

A target position is ``+1.0`` (long, all capital), ``-1.0`` (short, all capital) or ``0.0``
(flat). The rules only map one forecast to one position; *when* that position is held (execution
lag, hold time, gaps) is the engine's business.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

RULES: tuple[str, ...] = ("sign", "probability")

__all__ = ["RULES", "probability", "sign"]


def sign(y_pred: npt.ArrayLike, threshold: float = 0.0, long_short: bool = False) -> FloatArray:
    """Trade the sign of a forecast log return, with a dead band of ``threshold``.

    Long where ``y_pred > threshold``; short where ``y_pred < -threshold`` if ``long_short``,
    otherwise flat there; flat in between and where ``y_pred`` is NaN.

    Args:
        y_pred: forecast log returns.
        threshold: dead band (>= 0) in log-return units.
        long_short: allow short positions.

    Returns:
        Target positions in ``{-1, 0, 1}``, float64.

    Shapes:
        ``[N] -> [N]``.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    x = np.asarray(y_pred, dtype=np.float64)
    pos = np.where(x > threshold, 1.0, 0.0)
    if long_short:
        pos = np.where(x < -threshold, -1.0, pos)
    return pos


def probability(
    p_up: npt.ArrayLike, upper: float = 0.55, lower: float = 0.45, long_short: bool = False
) -> FloatArray:
    """Trade a classifier's probability of an up move.

    Long where ``p_up > upper``; short where ``p_up < lower`` if ``long_short``, otherwise flat
    there; flat in between and where ``p_up`` is NaN.

    Args:
        p_up: probabilities of an up move, in [0, 1].
        upper: go long above this.
        lower: go short (or stay flat) below this; ``0 <= lower <= upper <= 1``.
        long_short: allow short positions.

    Returns:
        Target positions in ``{-1, 0, 1}``, float64.

    Shapes:
        ``[N] -> [N]``.
    """
    if not 0.0 <= lower <= upper <= 1.0:
        raise ValueError(f"need 0 <= lower <= upper <= 1, got lower={lower}, upper={upper}")
    p = np.asarray(p_up, dtype=np.float64)
    pos = np.where(p > upper, 1.0, 0.0)
    if long_short:
        pos = np.where(p < lower, -1.0, pos)
    return pos
