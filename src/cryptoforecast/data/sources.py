"""Read candle files (CSV, CSV.gz, parquet, the bundled data) into a raw frame.

This module only parses: it finds the columns, parses timestamps and numbers, and reports what it
cannot parse with the file and row. Sorting, duplicates and consistency are the job of
:mod:`cryptoforecast.data.quality`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from cryptoforecast.data.schema import (
    EARLIEST_CANDLE,
    FILE_ROWS,
    FUTURE_SLACK,
    INDEX_ROWS,
    INTERVALS,
    OHLCV,
    ROWS_ATTR,
    SOURCE_ATTR,
    DataError,
    row_name,
)
from cryptoforecast.paths import BUNDLED_DATA_DIR

# Accepted names for the timestamp column (compared case-insensitively), in order of preference.
TIMESTAMP_ALIASES: tuple[str, ...] = ("timestamp", "open_time", "datetime", "date", "time")
# Epoch magnitudes around today: seconds ~1.7e9, milliseconds ~1.7e12, microseconds ~1.7e15.
_EPOCH_UNITS: tuple[tuple[float, str], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))
_NS_PER = {"s": 10**9, "ms": 10**6, "us": 10**3}
# Whole seconds inside the span of datetime64[ns] (1677-09-21 00:12:44 to 2262-04-11 23:47:16).
_NS_MIN = np.datetime64(pd.Timestamp.min.ceil("s").value // 10**9, "s")
_NS_MAX = np.datetime64(pd.Timestamp.max.floor("s").value // 10**9, "s")


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
    strings (naive ones are taken as UTC) or epoch seconds, milliseconds or microseconds, detected
    per value: epochs from the magnitude (so a file mixing ms and us rows, as Binance's 2025
    archive switch can produce, still parses), and a column may mix ISO strings and epochs.

    Returns:
        A frame with a RangeIndex in file order (row ``i`` is data row ``i + 1``), a UTC
        ``timestamp`` column and float64 OHLCV columns, unsorted and unchecked; ``attrs`` name
        the file, so later messages (quality checks, ``Predictor``) name it and its rows too.

    Raises:
        DataError: naming the file, and the row and value when a cell cannot be parsed or a
            timestamp is out of range.

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
    return normalize_raw_frame(raw.reset_index(drop=True), source=str(path), rows=FILE_ROWS)


def normalize_raw_frame(
    raw: pd.DataFrame, source: str, rows: str | None = None, now: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Rename columns to the canonical names and parse timestamps and numbers.

    Args:
        raw: a frame as read from a file, any column case, values as strings or numbers.
        source: the file name or URL, used in error messages.
        rows: how messages name rows (``schema.FILE_ROWS``: ``row 12``, 1-based data rows;
            ``schema.INDEX_ROWS``: ``candles[11]``, 0-based positions in ``raw``). Default: the
            style in ``raw.attrs`` (set by :func:`read_candle_file`), else ``INDEX_ROWS``. With
            file rows an integer index of ``raw`` is kept as the file positions (a slice of a
            file's frame still names the file's rows).
        now: the current time for the "not in the future" bound (default: now).

    Returns:
        The raw frame (see :func:`read_candle_file`); ``attrs`` carry ``source`` and ``rows``.

    Raises:
        DataError: missing columns, an unparseable cell (named by row and column), or a
            timestamp before 2009-01-01, more than a day in the future, or beyond what pandas
            can represent.

    """
    rows = rows or raw.attrs.get(ROWS_ATTR, INDEX_ROWS)
    index = raw.index
    keep_positions = (
        rows == FILE_ROWS
        and index.name is None
        and pd.api.types.is_integer_dtype(index.dtype)
        and index.is_unique
    )
    positions = index.to_numpy(dtype="int64") if keep_positions else np.arange(len(raw))
    raw = raw.reset_index(drop=index.name is None)
    lower = {str(c).strip().lower(): c for c in raw.columns}
    ts_col = next((lower[a] for a in TIMESTAMP_ALIASES if a in lower), None)
    missing = [c for c in OHLCV if c not in lower]
    if ts_col is None or missing:
        need = (["timestamp"] if ts_col is None else []) + missing
        raise DataError(
            f"{source}: missing column(s) {need}; found columns {list(map(str, raw.columns))}"
        )
    where = _Where(source, positions, rows)
    in_order = np.array_equal(positions, np.arange(len(raw)))
    out = pd.DataFrame(index=pd.RangeIndex(len(raw)) if in_order else pd.Index(positions))
    stamps = parse_timestamps(raw[ts_col], source=source, where=where)
    check_timestamp_range(stamps, raw[ts_col], where, now)
    out["timestamp"] = stamps.set_axis(out.index)
    for col in OHLCV:
        out[col] = _parse_numbers(raw[lower[col]], column=col, where=where).to_numpy()
    used = {ts_col, *(lower[c] for c in OHLCV)}
    for col in raw.columns:
        if col not in used:
            out[str(col)] = raw[col].to_numpy()
    out.attrs = {SOURCE_ATTR: source, ROWS_ATTR: rows}
    return out


class _Where:
    """Names the row at a 0-based position of the parsed column in messages."""

    def __init__(self, source: str, positions: np.ndarray | None, rows: str) -> None:
        self.source, self.positions, self.rows = source, positions, rows

    def __call__(self, i: int) -> str:
        pos = int(self.positions[i]) if self.positions is not None else i
        name = row_name(pos, self.rows)
        return f"{self.source}: {'data ' if self.rows == FILE_ROWS else ''}{name}"


def parse_timestamps(
    values: pd.Series, source: str, where: Callable[[int], str] | None = None
) -> pd.Series:
    """Parse ISO strings or epoch s/ms/us numbers, per value, into UTC timestamps.

    Args:
        values: the column as read; numbers, strings or a mix (ISO strings beside epochs).
        source: the file name or URL, for messages.
        where: names the value at position ``i`` (default ``"{source}: data row {i + 1}"``).

    Returns:
        ``datetime64[ns, UTC]`` values with a RangeIndex.

    Raises:
        DataError: an unparseable value, a number that is no plausible epoch, or a time pandas
            cannot represent (before 1677-09-21 or after 2262-04-11), naming row and value.

    """
    where = where or _Where(source, None, FILE_ROWS)
    values = values.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values if values.dt.tz is not None else values.dt.tz_localize("UTC")
        ns = _to_ns(ts.dt.tz_convert(None).to_numpy(), values, where)
        return pd.Series(pd.DatetimeIndex(ns).tz_localize("UTC"))
    n = len(values)
    result = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        is_num = np.ones(n, dtype=bool)
        nums = values.to_numpy(dtype="float64")
    else:
        text = values.astype(str).str.strip()
        is_num = text.str.fullmatch(r"[+-]?\d+(\.\d+)?").to_numpy(dtype=bool)
        nums = np.full(n, np.nan)
        nums[is_num] = pd.to_numeric(text[is_num]).to_numpy(dtype="float64")
    if is_num.any():
        result[is_num] = _epochs(nums[is_num], np.flatnonzero(is_num), values, where)
    if not is_num.all():
        idx = np.flatnonzero(~is_num)
        parsed = pd.to_datetime(text[~is_num], utc=True, errors="coerce", format="ISO8601")
        bad = parsed.isna().to_numpy()
        if bad.any():
            i = int(idx[np.flatnonzero(bad)[0]])
            raise DataError(
                f"{where(i)}: cannot parse timestamp {_shown(values.iloc[i])!r} "
                f"({int(bad.sum())} unparseable timestamp(s) in all)"
            )
        sub = values.iloc[idx].reset_index(drop=True)
        result[idx] = _to_ns(
            parsed.dt.tz_convert(None).to_numpy(), sub, lambda k: where(int(idx[k]))
        )
    return pd.Series(pd.DatetimeIndex(result).tz_localize("UTC"))


def _epochs(
    nums: np.ndarray, idx: np.ndarray, values: pd.Series, where: Callable[[int], str]
) -> np.ndarray:
    """Epoch numbers (unit from the magnitude) at positions ``idx`` -> ``datetime64[ns]``."""
    out = np.empty(len(nums), dtype="int64")
    assigned = np.zeros(len(nums), dtype=bool)
    for upper, unit in _EPOCH_UNITS:
        mask = ~assigned & (np.abs(nums) < upper)
        factor = _NS_PER[unit]
        whole = nums[mask].astype("int64")  # |value| < 1e17: exact enough, no overflow
        limit = np.iinfo(np.int64).max // factor
        far = np.abs(whole) > limit
        if far.any():
            i = int(idx[np.flatnonzero(mask)[np.flatnonzero(far)[0]]])
            raise DataError(
                f"{where(i)}: timestamp {_shown(values.iloc[i])!r} (epoch {unit}) is beyond "
                f"{pd.Timestamp.max:%Y-%m-%d}, the latest time pandas can represent"
            )
        out[mask] = whole * factor
        assigned |= mask
    if not assigned.all() or np.isnan(nums).any():
        i = int(idx[np.flatnonzero(~assigned | np.isnan(nums))[0]])
        raise DataError(
            f"{where(i)}: timestamp {_shown(values.iloc[i])!r} is not a plausible epoch in "
            "s, ms or us"
        )
    return out.view("datetime64[ns]")


def _to_ns(stamps: np.ndarray, values: pd.Series, where: Callable[[int], str]) -> np.ndarray:
    """``datetime64`` of any unit -> ``datetime64[ns]``, naming the first unrepresentable one."""
    stamps = np.asarray(stamps)
    if stamps.dtype.kind != "M":  # tz-aware object arrays
        stamps = pd.DatetimeIndex(stamps).tz_convert(None).to_numpy()
    seconds = stamps.astype("datetime64[s]")  # coarsening never overflows
    valid = ~np.isnat(seconds)
    out_of = valid & ((seconds < _NS_MIN) | (seconds > _NS_MAX))
    if out_of.any():
        i = int(np.flatnonzero(out_of)[0])
        raise DataError(
            f"{where(i)}: timestamp {_shown(values.iloc[i])!r} is outside the range pandas can "
            f"represent ({pd.Timestamp.min:%Y-%m-%d} to {pd.Timestamp.max:%Y-%m-%d}); "
            f"{int(out_of.sum())} such timestamp(s) in all"
        )
    return stamps.astype("datetime64[ns]")


def check_timestamp_range(
    stamps: pd.Series,
    values: pd.Series,
    where: Callable[[int], str],
    now: pd.Timestamp | None = None,
) -> None:
    """Refuse candle times before 2009-01-01 or more than a day after ``now``.

    Args:
        stamps: parsed UTC timestamps, in the order of ``values``.
        values: the values as given, quoted in the message.
        where: names the row at a position.
        now: the current time (default: now).

    Raises:
        DataError: naming the first such row, its value and time, and how many there are.

    """
    if not len(stamps):
        return
    latest = (now if now is not None else pd.Timestamp.now(tz="UTC")) + FUTURE_SLACK
    ts = pd.DatetimeIndex(stamps)
    bad = np.asarray((ts < EARLIEST_CANDLE) | (ts > latest))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where(i)}: timestamp {_shown(values.iloc[i])!r} is {ts[i]:%Y-%m-%dT%H:%M:%SZ}, "
            f"outside the plausible range {EARLIEST_CANDLE:%Y-%m-%d} to {latest:%Y-%m-%dT%H:%MZ} "
            f"(before any crypto trading, or in the future); {int(bad.sum())} such row(s) in all"
        )


def _parse_numbers(values: pd.Series, column: str, where: Callable[[int], str]) -> pd.Series:
    """Parse a column to float64; empty cells become NaN (reported later), text is an error."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64").reset_index(drop=True)
    text = values.astype(str).str.strip()
    parsed = pd.to_numeric(text.where(text.ne(""), np.nan), errors="coerce")
    bad = parsed.isna() & text.ne("") & ~text.str.lower().isin(["nan", "null", "none"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{where(i)}: column {column!r} has non-numeric value {_shown(values.iloc[i])!r}"
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


def _shown(value: object) -> object:
    """A numpy scalar as the Python scalar, so messages read ``-1``, not ``np.int64(-1)``."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value
