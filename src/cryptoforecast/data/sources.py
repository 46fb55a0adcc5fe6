"""Read candle files (CSV, CSV.gz, parquet, the bundled data) into a raw frame.

This module only parses: it finds the columns, parses timestamps and numbers, and reports what it
cannot parse with the file and row. Sorting, duplicates and consistency are the job of
:mod:`cryptoforecast.data.quality`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryptoforecast.data.schema import INTERVALS, OHLCV, DataError
from cryptoforecast.paths import BUNDLED_DATA_DIR

# Accepted names for the timestamp column (compared case-insensitively), in order of preference.
TIMESTAMP_ALIASES: tuple[str, ...] = ("timestamp", "open_time", "datetime", "date", "time")
# Epoch magnitudes around today: seconds ~1.7e9, milliseconds ~1.7e12, microseconds ~1.7e15.
_EPOCH_UNITS: tuple[tuple[float, str], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))


def bundled_path(symbol: str, market: str = "spot", interval: str = "1h") -> Path:
    """Path of a bundled candle file, e.g. ``binance_spot_BTCUSDT_1h.csv.gz``.

    Raises:
        DataError: when no such file is bundled; the message lists what is.

    """
    path = BUNDLED_DATA_DIR / f"binance_{market}_{symbol.upper()}_{interval}.csv.gz"
    if not path.exists():
        have = sorted(p.name for p in BUNDLED_DATA_DIR.glob("*.csv.gz"))
        raise DataError(
            f"no bundled data for symbol={symbol!r} market={market!r} interval={interval!r} "
            f"(looked for {path.name}); bundled files: {', '.join(have)}. "
            "For other data use data=file data.path=/path/to/candles.csv (your own candles) or "
            f"data=binance data.symbol={symbol.upper()} (download from Binance)."
        )
    return path


def read_candle_file(path: str | Path) -> pd.DataFrame:
    """Read a CSV, CSV.gz or parquet file of candles into a raw frame.

    Column names are matched case-insensitively; extra columns are kept. Timestamps may be ISO
    strings (naive ones are taken as UTC) or epoch seconds, milliseconds or microseconds (detected
    per value from the magnitude, so a file mixing ms and us rows, as Binance's 2025 archive switch
    can produce, still parses).

    Returns:
        A frame with a RangeIndex in file order (row ``i`` is data row ``i``), a UTC ``timestamp``
        column and float64 OHLCV columns, unsorted and unchecked.

    Raises:
        DataError: naming the file, and the row and value when a cell cannot be parsed.

    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            raw = pd.read_parquet(path)
        elif name.endswith((".csv", ".csv.gz", ".txt", ".txt.gz")):
            raw = pd.read_csv(path)
        else:
            raise DataError(f"{path}: unsupported file type (use .csv, .csv.gz or .parquet)")
    except DataError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise DataError(f"{path}: cannot read file: {exc}") from exc
    return normalize_raw_frame(raw, source=str(path))


def normalize_raw_frame(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Rename columns to the canonical names and parse timestamps and numbers.

    Args:
        raw: a frame as read from a file, any column case, values as strings or numbers.
        source: the file name or URL, used in error messages.

    Raises:
        DataError: missing columns, or an unparseable cell (named by data row and column).

    """
    raw = raw.reset_index(drop=raw.index.name is None)
    lower = {str(c).strip().lower(): c for c in raw.columns}
    ts_col = next((lower[a] for a in TIMESTAMP_ALIASES if a in lower), None)
    missing = [c for c in OHLCV if c not in lower]
    if ts_col is None or missing:
        need = (["timestamp"] if ts_col is None else []) + missing
        raise DataError(
            f"{source}: missing column(s) {need}; found columns {list(map(str, raw.columns))}"
        )
    out = pd.DataFrame(index=pd.RangeIndex(len(raw)))
    out["timestamp"] = parse_timestamps(raw[ts_col], source=source)
    for col in OHLCV:
        out[col] = _parse_numbers(raw[lower[col]], source=source, column=col)
    used = {ts_col, *(lower[c] for c in OHLCV)}
    for col in raw.columns:
        if col not in used:
            out[str(col)] = raw[col].to_numpy()
    return out


def parse_timestamps(values: pd.Series, source: str) -> pd.Series:
    """Parse ISO strings or epoch s/ms/us numbers into UTC timestamps (see read_candle_file)."""
    values = values.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values if values.dt.tz is not None else values.dt.tz_localize("UTC")
        return ts.dt.tz_convert("UTC").dt.as_unit("ns")
    as_num = values if pd.api.types.is_numeric_dtype(values) else None
    if as_num is None:
        text = values.astype(str).str.strip()
        if text.str.fullmatch(r"-?\d+(\.\d+)?").all():
            as_num = pd.to_numeric(text)
    if as_num is not None and len(values):
        nums = as_num.to_numpy(dtype="float64")
        result = np.empty(len(nums), dtype="datetime64[ns]")
        assigned = np.zeros(len(nums), dtype=bool)
        for upper, unit in _EPOCH_UNITS:
            mask = ~assigned & (np.abs(nums) < upper)
            result[mask] = pd.to_datetime(nums[mask].astype("int64"), unit=unit).to_numpy()
            assigned |= mask
        if not assigned.all() or np.isnan(nums).any():
            row = int(np.flatnonzero(~assigned | np.isnan(nums))[0])
            raise DataError(
                f"{source}: data row {row + 1}: timestamp {values.iloc[row]!r} is not a "
                "plausible epoch in s, ms or us"
            )
        return pd.Series(pd.DatetimeIndex(result).tz_localize("UTC"))
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{source}: data row {row + 1}: cannot parse timestamp {values.iloc[row]!r} "
            f"({int(bad.sum())} unparseable timestamp(s) in all)"
        )
    return parsed.dt.as_unit("ns")


def _parse_numbers(values: pd.Series, source: str, column: str) -> pd.Series:
    """Parse a column to float64; empty cells become NaN (reported later), text is an error."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64").reset_index(drop=True)
    text = values.astype(str).str.strip()
    parsed = pd.to_numeric(text.where(text.ne(""), np.nan), errors="coerce")
    bad = parsed.isna() & text.ne("") & ~text.str.lower().isin(["nan", "null", "none"])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{source}: data row {row + 1}: column {column!r} has non-numeric value "
            f"{values.iloc[row]!r}"
        )
    return parsed.astype("float64").reset_index(drop=True)


def infer_interval(timestamps: pd.Series, source: str) -> str:
    """The bar length of a series of timestamps: the most common positive step.

    Raises:
        DataError: when the common step is not a known interval.

    """
    steps = timestamps.sort_values().diff().dropna()
    steps = steps[steps > pd.Timedelta(0)]
    if steps.empty:
        raise DataError(f"{source}: cannot infer the bar interval from fewer than two bars")
    step = steps.mode().iloc[0]
    for name, delta in INTERVALS.items():
        if delta == step:
            return name
    raise DataError(f"{source}: bar step {step} is not a known interval; pass --interval")
