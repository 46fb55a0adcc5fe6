"""The canonical candle frame and the errors raised for bad input.

A candle frame is a ``pandas.DataFrame`` indexed by a UTC ``DatetimeIndex`` named ``timestamp``
holding each bar's **open** time, sorted and unique, with float64 columns ``open, high, low,
close, volume`` first; extra columns from the source are kept after them.
"""

from __future__ import annotations

import pandas as pd

OHLCV: tuple[str, ...] = ("open", "high", "low", "close", "volume")

# Intervals we know how to load natively or resample to from 1h.
INTERVALS: dict[str, pd.Timedelta] = {
    "1m": pd.Timedelta(minutes=1),
    "5m": pd.Timedelta(minutes=5),
    "15m": pd.Timedelta(minutes=15),
    "30m": pd.Timedelta(minutes=30),
    "1h": pd.Timedelta(hours=1),
    "2h": pd.Timedelta(hours=2),
    "4h": pd.Timedelta(hours=4),
    "6h": pd.Timedelta(hours=6),
    "12h": pd.Timedelta(hours=12),
    "1d": pd.Timedelta(days=1),
}


#: How a source's rows are named in messages (kept in a raw frame's ``attrs``): ``"file"`` rows
#: are data rows counted from 1, the header not counted (``row 4501``); ``"index"`` rows are
#: 0-based positions in the candles a caller passed (``candles[3100]``, as in a JSON request).
FILE_ROWS, INDEX_ROWS = "file", "index"
ROW_STYLES: dict[str, str] = {
    FILE_ROWS: "rows are data rows counted from 1, the header not counted",
    INDEX_ROWS: "candles[i] is the 0-based index into the candles given",
}
#: ``DataFrame.attrs`` keys under which a raw frame carries its source name and row style.
SOURCE_ATTR, ROWS_ATTR = "cryptoforecast_source", "cryptoforecast_rows"
#: The earliest plausible candle: before Bitcoin's first block (2009-01-03) nothing traded.
EARLIEST_CANDLE = pd.Timestamp("2009-01-01", tz="UTC")
#: How far past the current time a candle may be stamped (clock skew, time zones).
FUTURE_SLACK = pd.Timedelta(days=1)


def row_name(position: int, rows: str = FILE_ROWS) -> str:
    """How messages name the row at 0-based ``position``: ``row 12`` or ``candles[11]``."""
    return f"candles[{position}]" if rows == INDEX_ROWS else f"row {position + 1}"


class DataError(ValueError):
    """Bad input data. The message names the file, the row or timestamp, and the value."""


class DataSourceError(RuntimeError):
    """A data source could not deliver (HTTP failure, checksum mismatch, missing extra)."""


def interval_to_timedelta(interval: str) -> pd.Timedelta:
    """Return the bar length of ``interval`` ("1h", "4h", "1d", ...).

    Raises:
        DataError: for an interval we do not know, listing the known ones.

    """
    try:
        return INTERVALS[interval]
    except KeyError:
        known = ", ".join(INTERVALS)
        raise DataError(f"unknown interval {interval!r}; known intervals: {known}") from None


def empty_candles() -> pd.DataFrame:
    """An empty candle frame with the canonical columns and index."""
    index = pd.DatetimeIndex([], tz="UTC", name="timestamp")
    return pd.DataFrame({c: pd.Series([], dtype="float64") for c in OHLCV}, index=index)
