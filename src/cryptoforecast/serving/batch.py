"""Many forecasts from one candle frame in one ONNX call: the batch twin of ``Predictor.predict``.

Scoring a bundle on a span of bars (champion/challenger comparison, monitoring) asks for the
forecast at every bar ``t`` of the span, each from the candles up to ``t``. Calling
:meth:`Predictor.predict` per bar recomputes the features ``S`` times; here the bundle's feature
set runs once over the whole frame (the transforms are causal, so row ``t`` depends on rows
``<= t`` only, as in training), the windows ``[t-L+1, t]`` are gathered, scaled with the bundle's
scaler and sent through :meth:`Predictor.run_graph` together.

A bar gets no forecast (``valid`` False) where :meth:`Predictor.predict` would refuse one: fewer
than ``min_history`` candles up to ``t``, a gap inside the window, or non-finite features in it.
Like the rest of ``serving/``, this module imports neither torch nor lightning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoforecast.data.windows import consecutive_run
from cryptoforecast.serving.predictor import PredictionError, Predictor


def batch_forecasts(
    predictor: Predictor, candles: pd.DataFrame, timestamps: pd.DatetimeIndex
) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts of ``predictor`` at each of ``timestamps``, from ``candles`` up to that bar.

    Args:
        predictor: a loaded bundle.
        candles: raw candles (any column case, a ``timestamp`` column or a DatetimeIndex) that
            contain every requested bar and the history before it; checked by
            :meth:`Predictor.prepare_candles` like a serving request.
        timestamps: open times of the decision bars ``t`` ``[S]`` (UTC).

    Returns:
        ``(y, valid)``: ``y`` float64 ``[S, H]`` decoded outputs (log returns, or ``p_up`` for
        classifiers), NaN where ``valid`` ``[S]`` is False.

    Raises:
        PredictionError: a requested timestamp is not a candle of ``candles``.
        DataError: the candles fail the serving checks (named row and timestamp).
    """
    frame = predictor.prepare_candles(candles, keep_all=True)
    stamps = pd.DatetimeIndex(timestamps)
    pos = frame.index.get_indexer(stamps)
    if (pos < 0).any():
        missing = stamps[pos < 0]
        raise PredictionError(
            f"{len(missing)} requested bar(s) have no candle, first {missing[0]} (the candles "
            f"span {frame.index[0]} -> {frame.index[-1]})"
        )
    features = predictor.feature_set.compute(frame).to_numpy(dtype=np.float64)  # [N, F]
    if predictor.scaler is not None:
        features = predictor.scaler.transform(features)
    lookback = predictor.lookback
    run = consecutive_run(frame.index, predictor.step)  # consecutive bars ending at each row
    valid = (pos >= predictor.min_history - 1) & (run[pos] >= lookback)
    rows = np.maximum(pos[:, None] + np.arange(1 - lookback, 1)[None, :], 0)  # [S, L]
    windows = features[rows]  # [S, L, F]
    valid &= np.isfinite(windows).all(axis=(1, 2))
    y = np.full((len(stamps), len(predictor.horizons)), np.nan)
    if valid.any():
        y[valid] = predictor.run_graph(windows[valid])  # [S_valid, L, F] -> [S_valid, H]
    return y, valid
