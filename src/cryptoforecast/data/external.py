"""External daily series (Fear & Greed, on-chain metrics) and their look-ahead-free alignment.

A daily file has a ``date`` column (a calendar day in UTC) and one or more numeric value
columns. Two such files are bundled (see ``data/bundled/README.md``):

- ``fear_greed`` -> ``fear_greed_index_daily.csv`` (``date,value,classification``)
- ``btc_onchain`` -> ``btc_onchain_daily.csv`` (``date,mvrv,nupl,realized_price``)

Publication rule: the value for day ``D`` summarises that day, so it becomes known only after
the day closes (``D + 1 day``, i.e. 24:00 UTC) plus a publication delay::

    published(D) = D + 24 h + delay_hours

Alignment to bars: the candle index holds bar **open** times; the forecast at bar ``t`` is made
at its close ``t + interval`` and may use every value published by then. With an extra lag of
``k`` hours (a further delay), the value used at bar ``t`` is the one usable at ``t + interval -
k``. Missing days are not interpolated: the last published value is carried forward, but only for
``max_age_hours`` after its publication; older values count as stale and give NaN (a dead feed
must not look alive forever). With the default 72 h a daily feed may skip two days.
Before the first publication the value is NaN too. NaN rows are dropped by the window builder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cryptoforecast.data.schema import DataError, interval_to_timedelta
from cryptoforecast.paths import BUNDLED_DATA_DIR

logger = logging.getLogger(__name__)

#: Bundled daily series by short name.
BUNDLED_EXTERNAL: dict[str, str] = {
    "fear_greed": "fear_greed_index_daily.csv",
    "btc_onchain": "btc_onchain_daily.csv",
}
#: Default staleness limit: a value older than this (since publication) is not used.
DEFAULT_MAX_AGE_HOURS: float = 72.0
_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class DailySeries:
    """A validated daily series.

    Attributes:
        values: float64 columns indexed by a sorted, unique, UTC-midnight ``DatetimeIndex``
            named ``date``; NaN marks a day without a value for that column (an empty cell).
        source: the file it was read from (for messages).

    """

    values: pd.DataFrame
    source: str

    @property
    def last_date(self) -> pd.Timestamp:
        """The newest day in the file."""
        return self.values.index[-1]


def resolve_external_path(name_or_path: str | Path) -> Path:
    """Path of a bundled series name (``fear_greed``, ``btc_onchain``), bundled file or any path.

    Raises:
        DataError: the file does not exist (the message lists the bundled names).

    """
    text = str(name_or_path)
    if text in BUNDLED_EXTERNAL:
        return BUNDLED_DATA_DIR / BUNDLED_EXTERNAL[text]
    path = Path(text).expanduser()
    if not path.exists() and (BUNDLED_DATA_DIR / text).exists():
        return BUNDLED_DATA_DIR / text
    if not path.exists():
        raise DataError(
            f"{path}: external series file not found; bundled names: {', '.join(BUNDLED_EXTERNAL)}"
        )
    return path


def load_daily_series(name_or_path: str | Path, columns: Sequence[str]) -> DailySeries:
    """Read and validate a daily CSV (``date`` + value columns); unsorted rows are sorted.

    Args:
        name_or_path: a bundled name (:data:`BUNDLED_EXTERNAL`) or a CSV path.
        columns: the value columns to read (others, e.g. ``classification``, are ignored).

    Returns:
        The series with exactly ``columns``, in that order.

    Raises:
        DataError: naming the file and the data row (1-based, header excluded) and value for a
            missing column, an unparseable or non-midnight date, a non-numeric or infinite value,
            or a day listed twice with different values.

    """
    path = resolve_external_path(name_or_path)
    source = str(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many types for a corrupt file
        raise DataError(f"{source}: cannot read file: {exc}") from exc
    lower = {str(c).strip().lower(): c for c in raw.columns}
    wanted = [str(c) for c in columns]
    missing = [c for c in ["date", *wanted] if c.lower() not in lower]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {list(raw.columns)}")
    if not wanted:
        raise DataError(f"{source}: no value columns requested")
    dates = _parse_dates(raw[lower["date"]], source)
    values = pd.DataFrame(
        {c: _parse_values(raw[lower[c.lower()]], source, c) for c in wanted},
        index=pd.DatetimeIndex(dates, name="date"),
    )
    values = _drop_repeated_days(values, source)
    return DailySeries(values=values.sort_index(kind="stable"), source=source)


def _parse_dates(text: pd.Series, source: str) -> np.ndarray:
    stripped = text.astype(str).str.strip()
    parsed = pd.to_datetime(stripped, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: data row {row + 1}: cannot parse date {text.iloc[row]!r} "
            f"({int(bad.sum())} unparseable date(s) in all)"
        )
    not_midnight = (parsed != parsed.dt.normalize()).to_numpy()
    if not_midnight.any():
        row = int(np.flatnonzero(not_midnight)[0])
        raise DataError(
            f"{source}: data row {row + 1}: date {text.iloc[row]!r} is not a calendar day "
            "(a daily series needs dates at 00:00 UTC)"
        )
    return parsed.dt.as_unit("ns").to_numpy()


def _parse_values(text: pd.Series, source: str, column: str) -> np.ndarray:
    """Empty cells become NaN (a day without a value); text and infinities are errors."""
    stripped = text.astype(str).str.strip()
    empty = stripped.eq("") | stripped.str.lower().isin(["nan", "null", "none", "na"])
    parsed = pd.to_numeric(stripped.where(~empty, np.nan), errors="coerce").astype("float64")
    bad = (parsed.isna() & ~empty) | np.isinf(parsed)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{source}: data row {row + 1}: column {column!r} has non-numeric value "
            f"{text.iloc[row]!r}"
        )
    return parsed.to_numpy()


def _drop_repeated_days(values: pd.DataFrame, source: str) -> pd.DataFrame:
    """Keep one row per day; a day listed twice must carry the same values (NaN equal NaN)."""
    dup = values.index.duplicated(keep=False)
    if not dup.any():
        return values
    rows = pd.Series(np.arange(len(values)) + 1, index=values.index)
    for day in values.index[dup].unique():
        block = values.loc[[day]]
        first = block.iloc[0].to_numpy()
        for i in range(1, len(block)):
            other = block.iloc[i].to_numpy()
            same = (first == other) | (np.isnan(first) & np.isnan(other))
            if not same.all():
                at = rows.loc[[day]].tolist()
                raise DataError(
                    f"{source}: date {day.date()} appears in data rows {at} with different "
                    f"values {block.iloc[0].tolist()} vs {block.iloc[i].tolist()}"
                )
    return values[~values.index.duplicated(keep="first")]


def publication_times(dates: pd.DatetimeIndex, delay_hours: float) -> pd.DatetimeIndex:
    """When each day's value becomes usable: ``date + 1 day + delay_hours`` (UTC)."""
    if delay_hours < 0:
        raise ValueError(f"delay_hours must be >= 0, got {delay_hours}")
    return pd.DatetimeIndex(dates) + _DAY + pd.Timedelta(hours=float(delay_hours))


def decision_times(
    bar_open_index: pd.DatetimeIndex, interval: str, lag_hours: float = 0.0
) -> pd.DatetimeIndex:
    """The time whose information bar ``t`` may use: its close ``t + interval`` minus the lag."""
    if lag_hours < 0:
        raise ValueError(f"lag_hours must be >= 0, got {lag_hours}")
    index = pd.DatetimeIndex(bar_open_index)
    if index.tz is None:
        raise ValueError("the bar index must be timezone-aware (UTC)")
    return index + interval_to_timedelta(interval) - pd.Timedelta(hours=float(lag_hours))


def align_to_bars(
    series: pd.Series,
    bar_open_index: pd.DatetimeIndex,
    interval: str,
    delay_hours: float,
    max_age_hours: float = DEFAULT_MAX_AGE_HOURS,
    lag_hours: float = 0.0,
) -> np.ndarray:
    """For each bar, the newest daily value published by the bar's close (minus the lag).

    Args:
        series: one daily column indexed by UTC-midnight dates, sorted; NaN days are skipped.
        bar_open_index: the candle index (bar open times, UTC).
        interval: the bar length (``"1h"``, ``"4h"``, ...).
        delay_hours: publication delay after the day closes (:func:`publication_times`).
        max_age_hours: a value older than this since its publication gives NaN.
        lag_hours: a further delay: bar ``t`` sees what was usable at ``t + interval - lag``.

    Returns:
        float64 array, one value per bar; NaN before the first publication and when stale.

    """
    if max_age_hours <= 0:
        raise ValueError(f"max_age_hours must be > 0, got {max_age_hours}")
    known = series.dropna()
    pub = publication_times(pd.DatetimeIndex(known.index), delay_hours).as_unit("ns").asi8
    when = decision_times(bar_open_index, interval, lag_hours).as_unit("ns").asi8
    vals = known.to_numpy(dtype=np.float64)
    out = np.full(len(when), np.nan)
    if len(vals) == 0:
        return out
    pos = np.searchsorted(pub, when, side="right") - 1  # newest value published at or before
    have = pos >= 0
    age = np.where(have, when - pub[np.maximum(pos, 0)], 0)
    ok = have & (age <= pd.Timedelta(hours=float(max_age_hours)).value)
    out[ok] = vals[pos[ok]]
    return out


def warn_if_uncovered(
    series: DailySeries,
    bar_open_index: pd.DatetimeIndex,
    interval: str,
    delay_hours: float,
    max_age_hours: float,
) -> bool:
    """Log a warning naming the file when bars fall outside what the file can cover.

    Returns:
        Whether a warning was logged.

    """
    if len(bar_open_index) == 0 or len(series.values) == 0:
        return False
    when = decision_times(bar_open_index, interval)
    pub = publication_times(series.values.index, delay_hours)
    usable_until = pub[-1] + pd.Timedelta(hours=float(max_age_hours))
    late = int((when > usable_until).sum())
    if late:
        logger.warning(
            "%s ends on %s (usable until %s with delay %sh and max age %sh): %d bar(s) "
            "opening from %s on get NaN features and drop out of the samples",
            series.source,
            series.last_date.date(),
            usable_until,
            delay_hours,
            max_age_hours,
            late,
            bar_open_index[when > usable_until][0],
        )
    early = int((when < pub[0]).sum())
    if early:
        logger.warning(
            "%s starts on %s (first usable %s): %d bar(s) before it get NaN features",
            series.source,
            series.values.index[0].date(),
            pub[0],
            early,
        )
    return bool(late or early)
