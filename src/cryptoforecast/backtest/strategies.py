"""Signal -> target position rules: small pure functions on numpy arrays.

A target position is ``+1.0`` (long, all capital), ``-1.0`` (short, all capital) or ``0.0``
(flat). The rules only map one forecast to one position; *when* that position is held (execution
lag, hold time, gaps) is the engine's business.

Rules (``backtest.rule``):

- ``cost`` (the default): trade only when the expected move clears the round-trip cost
  ``2 * (fee_bps + slippage_bps) / 1e4`` (entry plus exit, read as a log return). A regression
  forecast is the expected move itself; a classifier's expected move is
  ``(2 * p_up - 1) * typical_move``, with ``typical_move`` the mean absolute ``h``-bar log return
  measured on candles before the test period (training and validation data, never the bars
  traded), so ``p_up`` must exceed ``0.5 + round_trip / (2 * typical_move)`` to go long.
- ``sign``: trade the sign of a forecast return (dead band ``threshold``), whatever its size.
- ``probability``: trade a classifier's ``p_up`` against fixed bands ``upper`` / ``lower``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

RULES: tuple[str, ...] = ("cost", "sign", "probability")

__all__ = ["RULES", "cost_aware", "expected_move", "probability", "round_trip_cost", "sign"]


def round_trip_cost(fee_bps: float, slippage_bps: float) -> float:
    """Entry plus exit cost of one trade as a fraction: ``2 * (fee_bps + slippage_bps) / 1e4``."""
    return 2.0 * (fee_bps + slippage_bps) / 1e4


def expected_move(p_up: npt.ArrayLike, typical_move: float) -> FloatArray:
    """A classifier's implied expected log return: ``(2 * p_up - 1) * typical_move``.

    Args:
        p_up: probabilities of an up move, in [0, 1].
        typical_move: mean absolute log return over the horizon (> 0), measured on data before
            the bars traded.

    Returns:
        Expected moves, float64 (NaN where ``p_up`` is NaN).

    Shapes:
        ``[N] -> [N]``.
    """
    if not typical_move > 0 or not np.isfinite(typical_move):
        raise ValueError(f"typical_move must be a finite number > 0, got {typical_move}")
    return (2.0 * np.asarray(p_up, dtype=np.float64) - 1.0) * typical_move


def cost_aware(
    move: npt.ArrayLike, round_trip: float, threshold: float = 0.0, long_short: bool = False
) -> FloatArray:
    """Trade only an expected move that clears the round-trip cost (plus ``threshold``).

    Long where ``move > round_trip + threshold``; short where ``move < -(round_trip +
    threshold)`` if ``long_short``, otherwise flat there; flat in between and where ``move`` is
    NaN. A forecaster whose moves never clear the cost never trades.

    Args:
        move: expected log returns (a regression forecast, or :func:`expected_move`).
        round_trip: :func:`round_trip_cost` (>= 0).
        threshold: extra dead band (>= 0) on top of the cost.
        long_short: allow short positions.

    Returns:
        Target positions in ``{-1, 0, 1}``, float64.

    Shapes:
        ``[N] -> [N]``.
    """
    if round_trip < 0:
        raise ValueError(f"round_trip must be >= 0, got {round_trip}")
    return sign(move, round_trip + threshold, long_short)


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
