"""Quality checks run on every load: a report, and a repair policy that never hides a problem.

Default policy: sort, drop exact duplicate rows, and refuse (``DataError``) conflicting duplicates,
NaN or infinite values, non-positive prices, negative volume, OHLC violations and off-grid
timestamps, naming the source, the row in the user's file or request, the timestamp and the
value. Off-grid rows can instead be snapped forward to the grid or dropped (``off_grid``). Gaps
are kept (never forward-filled) and listed so that windows can avoid spanning them; spikes and
zero-volume placeholder bars are flagged, not changed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptoforecast.data.schema import (
    FILE_ROWS,
    OHLCV,
    ROW_STYLES,
    ROWS_ATTR,
    DataError,
    interval_to_timedelta,
    row_name,
)

log = logging.getLogger(__name__)

_MAX_LISTED = 5  # offending rows quoted per kind of error
_MAX_OFF_GRID = 3  # off-grid rows quoted (they tend to come in thousands)
OFF_GRID_POLICIES = ("refuse", "snap", "drop")


@dataclass(frozen=True)
class QualityPolicy:
    """What to do about each kind of problem.

    Args:
        sort: sort unsorted rows by timestamp (else unsorted input is an error).
        drop_exact_duplicates: drop rows identical in timestamp and OHLCV (else an error).
        spike_z: robust z-score of the 1-bar log return, against the trailing 30 days' median
            absolute return, above which a bar is flagged as a spike.
        off_grid: rows whose timestamp is not on the interval's grid: ``refuse`` (default: an
            error), ``snap`` (move the timestamp forward to the next grid time, never back, so a
            bar never looks older than it is; a snapped row that lands on an existing bar with
            other values is a conflicting duplicate) or ``drop`` (remove those rows; the gaps
            they leave are reported). Both repairs are counted in the report's warnings.

    """

    sort: bool = True
    drop_exact_duplicates: bool = True
    spike_z: float = 15.0
    off_grid: str = "refuse"

    def __post_init__(self) -> None:
        if self.off_grid not in OFF_GRID_POLICIES:
            raise DataError(
                f"data.quality.off_grid={self.off_grid!r}; choose one of "
                f"{', '.join(OFF_GRID_POLICIES)}"
            )


@dataclass
class Gap:
    """A run of missing bars: ``after`` is the open time of the last bar before it."""

    after: str
    missing_bars: int


@dataclass
class QualityReport:
    """What the checks found. Timestamps are ISO strings so the report is JSON as it is."""

    source: str
    interval: str
    rows: int = 0
    start: str | None = None
    end: str | None = None
    expected_bars: int = 0
    missing_bars: int = 0
    gaps: list[Gap] = field(default_factory=list)
    longest_gap_bars: int = 0
    longest_gap_after: str | None = None
    duplicates_dropped: int = 0
    unsorted_rows: int = 0
    zero_volume_bars: list[str] = field(default_factory=list)
    spikes: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rows_named: str = FILE_ROWS  # how messages name rows: schema.ROW_STYLES says which way

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings are fine)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """The report as a plain JSON-able dict."""
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write the report as indented JSON and return the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def raise_for_errors(self) -> None:
        """Raise ``DataError`` with every error message if the report has any."""
        if self.errors:
            note = ROW_STYLES.get(self.rows_named, ROW_STYLES[FILE_ROWS])
            raise DataError(
                f"{self.source}: data quality errors ({note}):\n  - " + "\n  - ".join(self.errors)
            )


def check_candles(
    raw: pd.DataFrame,
    source: str,
    interval: str,
    policy: QualityPolicy | None = None,
    rows: str | None = None,
) -> tuple[pd.DataFrame, QualityReport]:
    """Check a raw frame (as from :func:`sources.read_candle_file`) and apply the policy.

    Args:
        raw: a ``timestamp`` column (UTC) and float OHLCV columns; an integer index holds each
            row's 0-based position in the user's file or request (a RangeIndex in source order,
            or the positions a tail of it kept), any other index counts as positions 0..n-1.
        source: file name or URL for messages.
        interval: the bar length the data should have ("1h", ...).
        policy: what to repair; defaults to :class:`QualityPolicy`.
        rows: how messages name rows (``schema.FILE_ROWS``: ``row 12``; ``schema.INDEX_ROWS``:
            ``candles[11]``); default: ``raw.attrs`` (see ``normalize_raw_frame``), else file rows.

    Returns:
        The canonical candle frame (UTC DatetimeIndex ``timestamp``, sorted, unique) and the
        report. When ``report.errors`` is non-empty the frame is what could be kept; callers that
        train on it call ``report.raise_for_errors()`` first (``load_candles`` does).

    """
    policy = policy or QualityPolicy()
    rows = rows or raw.attrs.get(ROWS_ATTR, FILE_ROWS)
    report = QualityReport(source=source, interval=interval, rows_named=rows)
    step = interval_to_timedelta(interval)
    index = raw.index
    integer = pd.api.types.is_integer_dtype(index.dtype) and index.is_unique
    positions = index.to_numpy(dtype="int64") if integer else np.arange(len(raw))
    df = raw.reset_index(drop=True)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True).dt.as_unit("ns")
    df["_row"] = positions

    def where(i: int) -> str:
        return f"{row_name(int(df['_row'].iloc[i]), rows)} ({_iso(df['timestamp'].iloc[i])})"

    def quote(mask: np.ndarray, col: str | None, what: str) -> None:
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            return
        parts = []
        for i in idx[:_MAX_LISTED]:
            val = "" if col is None else f" {col}={_plain(df[col].iloc[i])!r}"
            parts.append(f"{where(i)}{val}")
        more = f" and {len(idx) - _MAX_LISTED} more" if len(idx) > _MAX_LISTED else ""
        report.errors.append(f"{what} in {len(idx)} row(s): " + "; ".join(parts) + more)

    df = _apply_off_grid(df, step, interval, policy.off_grid, report, rows)
    finite = np.ones(len(df), dtype=bool)
    for col in OHLCV:
        values = df[col].to_numpy(dtype="float64")
        quote(np.isnan(values), col, f"NaN {col}")
        quote(np.isinf(values), col, f"infinite {col}")
        finite &= np.isfinite(values)
    # Infinite values are reported above; comparing them again would only repeat the row.
    for col in ("open", "high", "low", "close"):
        quote(((df[col] <= 0) & finite).to_numpy(), col, f"non-positive {col}")
    quote(((df["volume"] < 0) & finite).to_numpy(), "volume", "negative volume")
    body_hi = np.maximum(df["open"], df["close"])
    body_lo = np.minimum(df["open"], df["close"])
    quote(((df["high"] < body_hi) & finite).to_numpy(), "high", "high below max(open, close)")
    quote(((df["low"] > body_lo) & finite).to_numpy(), "low", "low above min(open, close)")
    quote(((df["high"] < df["low"]) & finite).to_numpy(), "high", "high below low")

    ts = df["timestamp"].to_numpy()
    report.unsorted_rows = int((ts[1:] < ts[:-1]).sum())
    if report.unsorted_rows:
        if policy.sort:
            report.warnings.append(f"{report.unsorted_rows} row(s) out of order; sorted")
        else:
            report.errors.append(f"{report.unsorted_rows} row(s) out of order (policy: no sort)")
    df = df.sort_values("timestamp", kind="stable")

    exact = df.duplicated(subset=["timestamp", *OHLCV], keep="first")
    if exact.any():
        if policy.drop_exact_duplicates:
            report.duplicates_dropped = int(exact.sum())
            report.warnings.append(f"{report.duplicates_dropped} exact duplicate row(s) dropped")
            df = df[~exact]
        else:
            report.errors.append(f"{int(exact.sum())} exact duplicate row(s) (policy: keep)")
    # What is still duplicated after dropping exact copies disagrees on some value.
    conflicting = df[df["timestamp"].duplicated(keep=False)]
    for t, grp in list(conflicting.groupby("timestamp"))[:_MAX_LISTED]:
        rows_vals = ", ".join(
            f"{row_name(int(r), rows)} close={_plain(c)!r}"
            for r, c in zip(grp["_row"], grp["close"], strict=True)
        )
        report.errors.append(f"conflicting duplicate timestamp {_iso(t)}: {rows_vals}")
    df = df.drop_duplicates(subset=["timestamp"], keep="first")

    frame = df.drop(columns="_row").set_index("timestamp")
    frame.index.name = "timestamp"
    describe(frame, report, step, policy.spike_z)
    for msg in report.errors:
        log.debug("%s: %s", source, msg)
    return frame, report


def _apply_off_grid(
    df: pd.DataFrame,
    step: pd.Timedelta,
    interval: str,
    off_grid: str,
    report: QualityReport,
    rows: str,
) -> pd.DataFrame:
    """Refuse (an error), snap forward or drop the rows whose timestamp is off the grid."""
    ts = df["timestamp"]
    mask = (
        ts.dt.tz_convert(None).to_numpy().view("int64") % step.value != 0
    ) & ts.notna().to_numpy()
    n = int(mask.sum())
    if not n:
        return df
    idx = np.flatnonzero(mask)[:_MAX_OFF_GRID]
    snapped = ts.dt.ceil(step)
    if off_grid == "snap":
        first = ", ".join(
            f"{row_name(int(df['_row'].iloc[i]), rows)} {_iso(ts.iloc[i])} -> "
            f"{_iso(snapped.iloc[i])}"
            for i in idx
        )
        report.warnings.append(
            f"{n} off-grid timestamp(s) snapped forward to the {interval} grid, first: {first}"
        )
        return df.assign(timestamp=ts.where(~mask, snapped))
    first = ", ".join(f"{row_name(int(df['_row'].iloc[i]), rows)} {_iso(ts.iloc[i])}" for i in idx)
    if off_grid == "drop":
        report.warnings.append(
            f"{n} off-grid row(s) dropped (not on the {interval} grid), first: {first}"
        )
        return df[~mask]
    report.errors.append(
        f"{n} timestamp(s) not on the {interval} grid, first: {first}"
        + (" ..." if n > _MAX_OFF_GRID else "")
        + "; data.quality.off_grid=snap or drop (CLI: --off-grid) repairs them"
    )
    return df


def describe(
    frame: pd.DataFrame, report: QualityReport, step: pd.Timedelta, spike_z: float
) -> QualityReport:
    """Fill span, gap, zero-volume and spike fields of ``report`` from a canonical frame."""
    report.rows = len(frame)
    report.gaps, report.spikes, report.zero_volume_bars = [], [], []
    if frame.empty:
        report.missing_bars = report.expected_bars = report.longest_gap_bars = 0
        report.warnings.append("no rows")
        return report
    idx = frame.index
    report.start, report.end = _iso(idx[0]), _iso(idx[-1])
    report.expected_bars = int((idx[-1] - idx[0]) / step) + 1
    deltas = np.diff(idx.as_unit("ns").asi8) // step.value
    gap_pos = np.flatnonzero(deltas > 1)
    report.gaps = [Gap(after=_iso(idx[i]), missing_bars=int(deltas[i] - 1)) for i in gap_pos]
    report.missing_bars = int(sum(g.missing_bars for g in report.gaps))
    if report.gaps:
        longest = max(report.gaps, key=lambda g: g.missing_bars)
        report.longest_gap_bars, report.longest_gap_after = longest.missing_bars, longest.after
        report.warnings.append(
            f"{report.missing_bars} missing bar(s) in {len(report.gaps)} gap(s), longest "
            f"{report.longest_gap_bars} after {report.longest_gap_after}; kept as gaps, not filled"
        )
    else:
        report.longest_gap_bars, report.longest_gap_after = 0, None
    flat = (frame["high"] == frame["low"]) & (frame["open"] == frame["close"])
    zero_vol = (frame["volume"] == 0) & flat
    report.zero_volume_bars = [_iso(t) for t in idx[zero_vol.to_numpy()]]
    if report.zero_volume_bars:
        report.warnings.append(
            f"{len(report.zero_volume_bars)} zero-volume flat placeholder bar(s) flagged, kept"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        r = pd.Series(np.log(frame["close"].to_numpy())).diff()
    # Robust z against the trailing 30 days (720 bars at 1h), excluding the bar itself, so a
    # calm week's 5% hour is a spike but a turbulent regime is not one long spike.
    window = max(48, int(pd.Timedelta(days=30) / step))
    scale = 1.4826 * r.abs().rolling(window, min_periods=min(48, window)).median().shift(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (r / scale).to_numpy()
    for i in np.flatnonzero(np.isfinite(z) & (np.abs(z) > spike_z)):
        report.spikes.append(
            {
                "timestamp": _iso(idx[i]),
                "log_return": round(float(r.iloc[i]), 6),
                "robust_z": round(float(z[i]), 2),
                "previous_close": float(frame["close"].iloc[i - 1]),
                "close": float(frame["close"].iloc[i]),
            }
        )
    if report.spikes:
        report.warnings.append(
            f"{len(report.spikes)} return spike(s) beyond robust z {spike_z:g} flagged, kept"
        )
    return report


def _iso(t: Any) -> str:
    """ISO-8601 UTC string of a timestamp, e.g. 2018-02-08T00:00:00Z (fractions when present)."""
    t = pd.Timestamp(t)
    if pd.isna(t):
        return "NaT"
    frac = t.microsecond * 1000 + t.nanosecond
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{frac:09d}".rstrip("0") + "Z" if frac else text + "Z"


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar, so messages read ``-5.0``, not ``np.float64(-5.0)``."""
    return value.item() if hasattr(value, "item") else value
