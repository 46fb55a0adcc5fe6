"""Resample candles to a coarser interval (1h -> 4h, 1d) without inventing bars."""

from __future__ import annotations

import logging

import pandas as pd

from cryptoforecast.data.schema import OHLCV, DataError, interval_to_timedelta

log = logging.getLogger(__name__)

_AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def resample_candles(frame: pd.DataFrame, interval: str, native_interval: str) -> pd.DataFrame:
    """Aggregate a canonical candle frame into ``interval`` bars aligned to the UTC epoch.

    Each bucket takes the first open, max high, min low, last close and summed volume of the
    native bars in it. Buckets with no native bars (outages) are not created, so gaps stay gaps.
    The trailing bucket is dropped when it is incomplete (it has not closed yet). An inner bucket
    that lost some native bars to an outage is kept, since it is what traded, and counted in a
    warning. Extra columns are dropped: there is no generic way to aggregate them.

    Raises:
        DataError: when ``interval`` is not a whole multiple of ``native_interval``.

    """
    step, native = interval_to_timedelta(interval), interval_to_timedelta(native_interval)
    if step == native:
        return frame
    if step < native or step % native != pd.Timedelta(0):
        raise DataError(
            f"cannot resample {native_interval} candles to {interval}: the target interval must "
            f"be a whole multiple of {native_interval}"
        )
    if frame.empty:
        return frame[list(OHLCV)]
    per_bucket = int(step / native)
    grouped = frame[list(OHLCV)].resample(step, origin="epoch", label="left", closed="left")
    out = grouped.agg(_AGG)
    counts = grouped["close"].count()
    out, counts = out[counts > 0], counts[counts > 0]
    # The last bucket is complete only if its last native bar is present.
    last_native_needed = out.index[-1] + step - native
    if frame.index[-1] < last_native_needed:
        out, counts = out.iloc[:-1], counts.iloc[:-1]
    partial = int((counts < per_bucket).sum())
    if partial:
        log.warning(
            "%d %s bar(s) built from fewer than %d %s bars (exchange outages); kept",
            partial,
            interval,
            per_bucket,
            native_interval,
        )
    out.index.name = "timestamp"
    return out.astype("float64")
