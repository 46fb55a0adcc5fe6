"""PredictionFrame: the one table every model's forecasts are judged from.

Columns: ``timestamp`` (open time of the last input bar t; the forecast is made at its close),
``symbol``, ``fold``, ``horizon``, ``y_true``, ``y_pred``, ``base_close`` (the execution-bar close
the return is measured from), and ``p_up`` for classifiers. One row per sample and horizon.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoforecast.evaluation.metrics import classification_report, regression_report

COLUMNS = ["timestamp", "symbol", "fold", "horizon", "y_true", "y_pred", "base_close"]


def make_prediction_frame(
    timestamps: pd.DatetimeIndex,
    symbol: str | np.ndarray,
    fold: int,
    horizons: list[int],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    base_close: np.ndarray,
    p_up: np.ndarray | None = None,
) -> pd.DataFrame:
    """Long-format frame from ``[S, H]`` arrays (one row per sample and horizon).

    Args:
        timestamps: ``[S]`` last-input-bar open times.
        symbol: instrument, or ``[S]`` instruments (one per sample, multi-symbol runs).
        fold: fold number (0 for a holdout split).
        horizons: the ``H`` horizons, in column order.
        y_true: ``[S, H]`` realised targets.
        y_pred: ``[S, H]`` forecasts.
        base_close: ``[S]`` execution-bar closes.
        p_up: ``[S, H]`` probabilities of an up move (classifiers), or None.
    """
    n, h = y_true.shape
    symbols = np.full(n, symbol, dtype=object) if isinstance(symbol, str) else symbol
    if y_pred.shape != (n, h) or len(timestamps) != n or len(base_close) != n or len(symbols) != n:
        raise ValueError(
            f"misaligned predictions: timestamps {len(timestamps)}, y_true {y_true.shape}, "
            f"y_pred {y_pred.shape}, base_close {len(base_close)}, symbols {len(symbols)}"
        )
    frame = pd.DataFrame(
        {
            "timestamp": np.repeat(timestamps.to_numpy(), h),
            "symbol": np.repeat(np.asarray(symbols, dtype=object), h),
            "fold": fold,
            "horizon": np.tile(np.asarray(horizons, dtype=np.int64), n),
            "y_true": y_true.reshape(-1),  # [S, H] -> [S*H], sample-major
            "y_pred": y_pred.reshape(-1),
            "base_close": np.repeat(base_close, h),
        }
    )
    if p_up is not None:
        frame["p_up"] = p_up.reshape(-1)
    frame["timestamp"] = pd.DatetimeIndex(frame["timestamp"]).tz_convert("UTC")
    return validate(frame)


def validate(frame: pd.DataFrame) -> pd.DataFrame:
    """Check the schema and that no (symbol, fold, horizon, timestamp) appears twice."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"PredictionFrame lacks column(s) {missing}")
    if frame.duplicated(["symbol", "fold", "horizon", "timestamp"]).any():
        raise ValueError("PredictionFrame has duplicate (symbol, fold, horizon, timestamp) rows")
    if not np.isfinite(frame[["y_true", "y_pred", "base_close"]].to_numpy()).all():
        raise ValueError("PredictionFrame has non-finite y_true, y_pred or base_close")
    return frame


def score(frame: pd.DataFrame, prefix: str) -> dict[str, float]:
    """Metrics per horizon, computed by :mod:`evaluation.metrics` (classification if ``p_up``).

    Keys are ``{prefix}/{metric}`` for one horizon and ``{prefix}/h{h}/{metric}`` for several.
    """
    out: dict[str, float] = {}
    horizons = sorted(frame["horizon"].unique())
    for h in horizons:
        part = frame[frame["horizon"] == h]
        if "p_up" in part.columns:  # a classifier: y_true holds 0/1 labels
            rep = classification_report(part["y_true"].to_numpy() > 0.5, part["p_up"])
        else:
            rep = regression_report(part["y_true"], part["y_pred"], part["base_close"])
        key = prefix if len(horizons) == 1 else f"{prefix}/h{h}"
        out.update({f"{key}/{name}": float(value) for name, value in rep.items()})
    return out


def score_by_symbol(frame: pd.DataFrame, prefix: str) -> dict[str, float]:
    """:func:`score` per symbol, keys ``{prefix}/<SYMBOL>/...``; empty for a one-symbol frame."""
    symbols = list(dict.fromkeys(frame["symbol"]))  # in order of appearance
    if len(symbols) < 2:
        return {}
    out: dict[str, float] = {}
    for symbol in symbols:
        out.update(score(frame[frame["symbol"] == symbol], f"{prefix}/{symbol}"))
    return out
