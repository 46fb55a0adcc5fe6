"""Production monitoring: rolling accuracy and MAE against persistence, feature drift, alerts.

Time discipline. The monitor timeline has one row per decision bar ``t``; its ``as_of`` is the
close of ``t`` and every number in the row is one a live monitor knows at that moment:

- A decision at bar ``d`` for horizon ``h`` with execution lag ``lag`` is judged on the training
  label ``log(close[d+lag+h] / close[d+lag])`` (``data.targets.make_targets``; NaN across a gap),
  which becomes known at the close of bar ``d+lag+h`` (``known_at``). Row ``t`` scores only the
  decisions with ``known_at <= as_of``, so changing a candle after bar ``t`` never changes rows
  up to ``t`` (tested by truncation).
- Accuracy columns are over the last ``window`` scored decisions: directional accuracy (up means
  a strictly positive return, a zero realised return has no direction and is skipped, a forecast
  of exactly 0 is "not up", as in ``evaluation.metrics``), the model's MAE on log returns, the
  MAE of persistence (a zero-return forecast: ``|y_true|``) and their ratio (< 1: the model beats
  persistence). Classifier decisions (a ``p_up`` column) carry ``y_pred`` in {0, 1}, so their MAE
  columns are NaN and only directional accuracy is monitored.
- Drift: the bundle's causal features at the decision bars (features at ``t`` read bars ``<= t``),
  PSI per feature over the last ``drift_window`` decision rows against the training deciles in
  ``training_stats.json``.

- The summary (``monitor_summary.json``) is as of the close of the last candle given, not of
  the last decision: every decision whose label that candle data holds is scored (counts,
  overall and rolling-window figures); only labels past the data stay ``n_pending``.

Alerts fire on crossings, not on every bar a metric stays bad: a ``breach`` event when a metric
crosses its threshold (directional accuracy below ``da_floor``, MAE ratio above
``mae_ratio_ceiling``, the largest feature PSI above ``psi_threshold``) and a ``recovered`` event
when it comes back past the threshold by a margin (hysteresis, so a metric hovering at the line
does not flap). Bars where a metric is undefined (too few scored decisions) keep the state.
Events are logged with ``logging.warning`` and written as JSON lines to ``alerts.jsonl``.

This module imports neither torch nor lightning (tested); matplotlib is imported inside
:func:`plot_monitor` only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from cryptoforecast.data.schema import DataError
from cryptoforecast.data.targets import TargetSpec, make_targets
from cryptoforecast.export.bundle import BundleError
from cryptoforecast.utils.report import json_clean

if TYPE_CHECKING:
    from cryptoforecast.serving.predictor import Predictor

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Floor of bin shares inside the PSI logarithm (an empty bin would be log(0)).
PSI_EPS = 1e-4
#: Conventional PSI reading: < 0.1 stable, 0.1 .. 0.25 moderate shift, > 0.25 significant shift.
PSI_STABLE = 0.1
PSI_SIGNIFICANT = 0.25
ALERT_KINDS = ("directional_accuracy", "mae_ratio", "drift")
STATS_FILE = "training_stats.json"
MONITOR_FILES = (
    "monitor.parquet",
    "scores.parquet",
    "psi.parquet",
    "alerts.jsonl",
    "monitor_summary.json",
    "monitor.png",
)


# ---------------------------------------------------------------------------------------- PSI


def psi_bins(edges: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Cut points and expected shares of the PSI bins of one feature.

    The bins are ``(-inf, c_0], (c_0, c_1], ..., (c_{k-1}, +inf)`` with ``c`` the distinct
    interior decile edges (open-ended outer bins). Without ties that is 10 bins of expected share
    0.1. With ties (a constant feature, a calendar flag) equal edges merge into one cut, and the
    training share at or below a cut is the highest decile level whose edge equals it: the tied
    mass goes to the bin closed at the tie (a constant feature: shares 1.0 at or below the value,
    0.0 above). Shares of 0 are floored at :data:`PSI_EPS` in :func:`psi_from_shares`.
    ``training_stats.json`` holds the edges, not the training share at each edge, so for a
    discrete feature whose decile falls inside a block of equal values the rule is approximate
    (``hour_sin`` over exactly one week of hours reads about 0.09 instead of 0).

    Args:
        edges: 11 training quantiles at levels 0, 0.1, ..., 1 (``training_stats.json``).

    Returns:
        ``(cuts [k], expected [k + 1])``, the expected shares summing to 1.

    Raises:
        ValueError: not 11 finite, non-decreasing values.
    """
    e = np.asarray(edges, dtype=np.float64)
    if e.shape != (11,) or not np.isfinite(e).all() or (np.diff(e) < 0).any():
        raise ValueError(f"decile edges must be 11 finite non-decreasing values, got {e.tolist()}")
    cuts = np.unique(e[1:10])
    at_or_below = np.array([np.flatnonzero(e == c).max() / 10.0 for c in cuts])
    expected = np.diff(np.concatenate([[0.0], at_or_below, [1.0]]))
    return cuts, expected


def psi_from_shares(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """``sum((a - e) * ln(a / e))`` over bins, both shares floored at :data:`PSI_EPS`."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), PSI_EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(expected_edges: npt.ArrayLike, actual_values: npt.ArrayLike) -> float | FloatArray:
    """Population stability index of live values against training decile edges.

    Args:
        expected_edges: ``[11]`` for one feature or ``[F, 11]`` (``training_stats.json``).
        actual_values: ``[N]`` for one feature or ``[N, F]``; NaN values are ignored.

    Returns:
        A float for one feature, else ``[F]``; NaN for a feature without a finite value.
    """
    edges = np.asarray(expected_edges, dtype=np.float64)
    values = np.asarray(actual_values, dtype=np.float64)
    if edges.ndim == 1:
        return _psi_one(edges, values.reshape(-1))
    if edges.ndim != 2 or values.ndim != 2 or values.shape[1] != edges.shape[0]:
        raise ValueError(
            f"edges {edges.shape} and values {values.shape} do not match: "
            "expected [F, 11] and [N, F]"
        )
    return np.array([_psi_one(edges[f], values[:, f]) for f in range(edges.shape[0])])


def _psi_one(edges: FloatArray, values: FloatArray) -> float:
    cuts, expected = psi_bins(edges)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan")
    counts = np.bincount(np.searchsorted(cuts, finite, side="left"), minlength=cuts.size + 1)
    return psi_from_shares(expected, counts / finite.size)


def rolling_psi(
    edges: npt.ArrayLike, values: npt.ArrayLike, window: int, min_periods: int
) -> FloatArray:
    """PSI per feature over the trailing ``window`` rows ending at each row.

    Args:
        edges: ``[F, 11]`` training decile edges.
        values: ``[N, F]`` live feature rows, oldest first (NaN ignored).
        window: rows per window (the row itself and the ``window - 1`` before it).
        min_periods: finite values a window needs, else NaN.

    Returns:
        ``[N, F]``: row ``r`` equals ``psi(edges, values[r - window + 1 : r + 1])``.
    """
    e = np.asarray(edges, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, np.nan)
    for f in range(e.shape[0]):
        cuts, expected = psi_bins(e[f])
        finite = np.isfinite(v[:, f])
        bins = np.searchsorted(cuts, np.where(finite, v[:, f], 0.0), side="left")
        onehot = np.zeros((len(v), cuts.size + 1))
        onehot[np.flatnonzero(finite), bins[finite]] = 1.0
        cum = np.vstack([np.zeros((1, cuts.size + 1)), np.cumsum(onehot, axis=0)])
        stop = np.arange(1, len(v) + 1)
        counts = cum[stop] - cum[np.maximum(stop - window, 0)]  # [N, bins]
        n = counts.sum(axis=1)
        a = np.maximum(counts / np.maximum(n, 1.0)[:, None], PSI_EPS)
        ex = np.maximum(expected, PSI_EPS)
        out[:, f] = np.where(n >= min_periods, ((a - ex) * np.log(a / ex)).sum(axis=1), np.nan)
    return out


def drift_status(value: float) -> str:
    """``stable`` (< 0.1), ``moderate`` (0.1 .. 0.25), ``significant`` (> 0.25) or ``unknown``."""
    if not np.isfinite(value):
        return "unknown"
    if value < PSI_STABLE:
        return "stable"
    return "moderate" if value <= PSI_SIGNIFICANT else "significant"


def load_training_stats(folder: Path, feature_names: Sequence[str]) -> dict[str, Any]:
    """Read a bundle's ``training_stats.json`` and check it names ``feature_names``.

    Raises:
        BundleError: missing or unreadable file, other features, or edges not ``[F, 11]``.
    """
    path = Path(folder) / STATS_FILE
    try:
        stats: dict[str, Any] = json.loads(path.read_text())
        edges = np.asarray(stats["decile_edges"], dtype=np.float64)
        names = list(stats["feature_names"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path}: cannot read the training statistics: {exc}") from exc
    if names != list(feature_names):
        raise BundleError(f"{path}: feature_names differ from the bundle's feature_spec.json")
    if edges.shape != (len(names), 11):
        raise BundleError(f"{path}: decile_edges has shape {edges.shape}, not ({len(names)}, 11)")
    return stats


# ---------------------------------------------------------------------------- spec and alerts


@dataclass(frozen=True)
class MonitorSpec:
    """Windows and alert thresholds of the monitor.

    Args:
        window: scored decisions in the rolling accuracy/MAE window (one per bar when deciding
            every bar; 168 = one week of hourly bars).
        min_periods: scored decisions needed before the rolling metrics are defined.
        da_floor: alert when rolling directional accuracy falls below this.
        da_margin: recovered when it is back at ``da_floor + da_margin`` or above.
        mae_ratio_ceiling: alert when model MAE / persistence MAE rises above this.
        mae_ratio_margin: recovered at ``mae_ratio_ceiling - mae_ratio_margin`` or below.
        psi_threshold: alert when a feature's PSI rises above this (0.25: significant shift).
        psi_margin: recovered when every feature is at ``psi_threshold - psi_margin`` or below.
        drift_window: decision rows in the PSI window.
        drift_min_periods: finite feature rows needed before PSI is defined. PSI of a sample
            from the training distribution itself is about ``9 / n`` for ``n`` rows over 10
            bins (chi-square noise), more for autocorrelated features, so the default waits for
            a full window: 168 rows keep that noise well under the 0.25 alert line.
        top_features: how many of the most drifted features the summary lists.
    """

    window: int = 168
    min_periods: int = 48
    da_floor: float = 0.5
    da_margin: float = 0.02
    mae_ratio_ceiling: float = 1.05
    mae_ratio_margin: float = 0.05
    psi_threshold: float = 0.25
    psi_margin: float = 0.05
    drift_window: int = 168
    drift_min_periods: int = 168
    top_features: int = 5

    def __post_init__(self) -> None:
        for name, value in (("window", self.window), ("drift_window", self.drift_window)):
            if int(value) != value or value < 1:
                raise DataError(f"monitor.{name} must be a positive integer, got {value!r}")
        for name, value, limit in (
            ("min_periods", self.min_periods, self.window),
            ("drift_min_periods", self.drift_min_periods, self.drift_window),
        ):
            if int(value) != value or not 1 <= value <= limit:
                raise DataError(f"monitor.{name} must be an integer in 1..{limit}, got {value!r}")
        if not 0.0 < self.da_floor < 1.0:
            raise DataError(f"monitor.da_floor must lie in (0, 1), got {self.da_floor}")
        if self.mae_ratio_ceiling <= 0 or self.psi_threshold <= 0:
            raise DataError("monitor.mae_ratio_ceiling and monitor.psi_threshold must be > 0")
        margins = (self.da_margin, self.mae_ratio_margin, self.psi_margin)
        if min(margins) < 0:
            raise DataError(f"monitor margins must be >= 0, got {margins}")


@dataclass(frozen=True)
class AlertEvent:
    """A metric crossed its threshold (``breach``) or came back (``recovered``).

    Args:
        time: the ``as_of`` time (close of the decision bar) when it was known.
        kind: one of :data:`ALERT_KINDS`.
        status: ``breach`` or ``recovered``.
        value: the metric at that time.
        threshold: the threshold it crossed (for ``recovered``: the recovery level).
        detail: a sentence; for drift, the features above the threshold with their PSI.
    """

    time: pd.Timestamp
    kind: str
    status: str
    value: float
    threshold: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ISO time, plain floats."""
        out = asdict(self)
        out["time"] = pd.Timestamp(self.time).isoformat()
        out["value"], out["threshold"] = float(self.value), float(self.threshold)
        return out


def write_alerts(events: Sequence[AlertEvent], path: Path, append: bool = True) -> Path:
    """Write events as JSON lines (one object per event), appending by default."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event.to_dict(), sort_keys=True) + "\n")
    return path


def _crossings(
    values: FloatArray, breach: Callable[[float], bool], recover: Callable[[float], bool]
) -> list[tuple[int, str]]:
    """Rows where the state flips: ``breach`` on entering, ``recovered`` on leaving."""
    events: list[tuple[int, str]] = []
    bad = False
    for i, v in enumerate(values):
        if not np.isfinite(v):
            continue  # undefined (too little data): the state holds
        if not bad and breach(float(v)):
            bad = True
            events.append((i, "breach"))
        elif bad and recover(float(v)):
            bad = False
            events.append((i, "recovered"))
    return events


def detect_alerts(
    frame: pd.DataFrame, psi_frame: pd.DataFrame, spec: MonitorSpec
) -> list[AlertEvent]:
    """Crossing events of the timeline ``frame`` (see the module docstring), in time order."""
    floor, ceil, psi_max = spec.da_floor, spec.mae_ratio_ceiling, spec.psi_threshold
    rules: dict[str, tuple[str, float, float, Callable[[float], bool], Callable[[float], bool]]]
    rules = {
        "directional_accuracy": (
            "da",
            floor,
            floor + spec.da_margin,
            lambda v: v < floor,
            lambda v: v >= floor + spec.da_margin,
        ),
        "mae_ratio": (
            "mae_ratio",
            ceil,
            ceil - spec.mae_ratio_margin,
            lambda v: v > ceil,
            lambda v: v <= ceil - spec.mae_ratio_margin,
        ),
        "drift": (
            "max_psi",
            psi_max,
            psi_max - spec.psi_margin,
            lambda v: v > psi_max,
            lambda v: v <= psi_max - spec.psi_margin,
        ),
    }
    events: list[AlertEvent] = []
    for kind, (column, threshold, back, breach, recover) in rules.items():
        values = frame[column].to_numpy(dtype=np.float64)
        for i, status in _crossings(values, breach, recover):
            row = frame.iloc[i]
            level = threshold if status == "breach" else back
            detail = _detail(kind, status, row, psi_frame, spec)
            events.append(AlertEvent(row["as_of"], kind, status, float(values[i]), level, detail))
    events.sort(key=lambda e: (e.time, ALERT_KINDS.index(e.kind)))
    for event in events:
        log.warning(
            "monitor alert %s %s at %s: %s", event.kind, event.status, event.time, event.detail
        )
    return events


def _detail(
    kind: str, status: str, row: pd.Series, psi_frame: pd.DataFrame, spec: MonitorSpec
) -> str:
    n = int(row["n_scored"])
    if kind == "directional_accuracy":
        side = "below" if status == "breach" else "back at or above"
        level = spec.da_floor if status == "breach" else spec.da_floor + spec.da_margin
        return f"directional accuracy {row['da']:.3f} over {n} scored decisions {side} {level:g}"
    if kind == "mae_ratio":
        side = "above" if status == "breach" else "back at or below"
        level = (
            spec.mae_ratio_ceiling
            if status == "breach"
            else spec.mae_ratio_ceiling - spec.mae_ratio_margin
        )
        return (
            f"model MAE / persistence MAE {row['mae_ratio']:.3f} over {n} scored decisions "
            f"{side} {level:g}"
        )
    values = psi_frame.loc[row["timestamp"]]
    if status == "breach":
        over = values[values > spec.psi_threshold].sort_values(ascending=False)
        listed = ", ".join(f"{name} ({v:.3f})" for name, v in over.head(10).items())
        more = f" and {len(over) - 10} more" if len(over) > 10 else ""
        return f"PSI above {spec.psi_threshold:g}: {listed}{more}"
    return f"every feature's PSI at or below {spec.psi_threshold - spec.psi_margin:g}"


# ----------------------------------------------------------------------------- the monitor


@dataclass
class MonitorReport:
    """The monitor's outputs.

    Attributes:
        frame: the timeline, one row per decision bar (as known at ``as_of``).
        scores: one row per decision: realised label, ``known_at``, hit and absolute errors.
        psi: per-feature PSI per timeline row, indexed by decision ``timestamp``.
        alerts: crossing events, oldest first.
        summary: last values, counts, worst features, alert counts, thresholds.
        spec: the windows and thresholds used.
    """

    frame: pd.DataFrame
    scores: pd.DataFrame
    psi: pd.DataFrame
    alerts: list[AlertEvent]
    summary: dict[str, Any]
    spec: MonitorSpec

    def save(self, folder: Path, plot: bool = True) -> list[Path]:
        """Write :data:`MONITOR_FILES` into ``folder`` (``alerts.jsonl`` rewritten, not appended).

        Returns:
            The paths written.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = [folder / "monitor.parquet", folder / "scores.parquet", folder / "psi.parquet"]
        self.frame.to_parquet(written[0], index=False)
        self.scores.to_parquet(written[1], index=False)
        self.psi.reset_index().to_parquet(written[2], index=False)
        written.append(write_alerts(self.alerts, folder / "alerts.jsonl", append=False))
        summary = folder / "monitor_summary.json"
        summary.write_text(json.dumps(json_clean(self.summary), indent=1, sort_keys=True) + "\n")
        written.append(summary)
        if plot:
            title = f"monitor: {self.summary['symbol']} h={self.summary['horizon']}"
            written.append(plot_monitor(self.frame, folder / "monitor.png", title, self.spec))
        return written


def monitor_decisions(
    decisions: pd.DataFrame,
    candles: pd.DataFrame,
    execution_lag: int,
    spec: MonitorSpec | None = None,
    features: pd.DataFrame | None = None,
    training_stats: dict[str, Any] | None = None,
    horizon: int | None = None,
    step: pd.Timedelta | None = None,
) -> MonitorReport:
    """Score decisions against the candles, track drift, and find alert crossings.

    Args:
        decisions: a paper-trade decisions frame / PredictionFrame: ``timestamp`` (open time of
            the decision bar), ``y_pred`` (log return, or 0/1 for classifiers with ``p_up``),
            optionally ``horizon``, ``symbol``, ``position``, ``p_up``.
        candles: canonical candles (UTC DatetimeIndex of open times, ``close``), gaps kept,
            covering the decision bars and as much after as is known.
        execution_lag: the bundle's ``execution_lag``.
        spec: windows and thresholds (default :class:`MonitorSpec`).
        features: causal features indexed like ``candles`` (drift is skipped when None).
        training_stats: ``training_stats.json`` of the bundle (needed with ``features``).
        horizon: which horizon to monitor when ``decisions`` hold several.
        step: bar length (default: the smallest step of ``candles``).

    Returns:
        :class:`MonitorReport`.

    Raises:
        DataError: missing columns, duplicate or off-candle decision timestamps, several
            symbols or horizons, non-finite forecasts (named by row and timestamp).
    """
    spec = spec or MonitorSpec()
    dec = _check_decisions(decisions, horizon)
    h = int(dec["horizon"].iloc[0])
    close = candles["close"]
    if not isinstance(close.index, pd.DatetimeIndex) or close.index.has_duplicates:
        raise DataError("candles: need a DatetimeIndex of unique bar open times")
    step = step or _min_step(close.index)
    scores = score_decisions(dec, close, execution_lag, h, step)
    frame = _accuracy_timeline(scores, step, spec)
    psi_frame = _drift(frame, features, training_stats, spec)
    frame["max_psi"], frame["worst_feature"] = _worst(psi_frame)
    alerts = detect_alerts(frame, psi_frame, spec)
    data_end = close.index[-1] + step  # close of the last candle: what the data knows
    summary = _summary(dec, scores, frame, psi_frame, alerts, spec, execution_lag, h, data_end)
    return MonitorReport(frame, scores, psi_frame, alerts, summary, spec)


def monitor_predictor(
    predictor: Predictor,
    decisions: pd.DataFrame,
    candles: pd.DataFrame,
    spec: MonitorSpec | None = None,
    prepared: bool = False,
) -> MonitorReport:
    """:func:`monitor_decisions` with the bundle's lag, trade horizon, features and deciles.

    Args:
        predictor: the bundle that made (or stands for) the decisions.
        decisions: decisions frame (``paper_trade(...).decisions`` or its parquet).
        candles: raw candles (any format ``Predictor.prepare_candles`` accepts) covering the
            feature warm-up before the first decision and the bars after it.
        spec: windows and thresholds.
        prepared: ``candles`` already come from ``predictor.prepare_candles(..., keep_all=True)``.
    """
    symbol = predictor.spec["symbol"]
    if "symbol" in decisions.columns and (decisions["symbol"] != symbol).any():
        other = sorted(set(decisions["symbol"].astype(str)) - {symbol})
        raise DataError(f"decisions: symbol(s) {other}, but the model forecasts {symbol}")
    frame = candles if prepared else predictor.prepare_candles(candles, keep_all=True)
    features = predictor.feature_set.compute(frame)
    stats = load_training_stats(predictor.folder, predictor.feature_set.names())
    return monitor_decisions(
        decisions,
        frame,
        int(predictor.spec["execution_lag"]),
        spec,
        features=features,
        training_stats=stats,
        horizon=predictor.trade_horizon,
        step=predictor.step,
    )


def score_decisions(
    decisions: pd.DataFrame, close: pd.Series, execution_lag: int, horizon: int, step: pd.Timedelta
) -> pd.DataFrame:
    """Realised label and scoring of each decision (checked frame of one horizon).

    Returns:
        The decisions with ``y_true`` (NaN: runs past the candles or across a gap),
        ``known_at`` (close of bar ``t + lag + h``), ``hit`` (1/0; NaN when ``y_true`` is NaN
        or exactly 0), ``abs_error`` and ``abs_error_persistence`` (NaN for classifiers).
    """
    y, _ = make_targets(close, TargetSpec(horizon=horizon, execution_lag=execution_lag))
    where = close.index.get_indexer(pd.DatetimeIndex(decisions["timestamp"]))
    if (where < 0).any():
        i = int(np.flatnonzero(where < 0)[0])
        raise DataError(
            f"decisions row {i}: no candle at its timestamp {decisions['timestamp'].iloc[i]} "
            "(the candles must cover every decision bar)"
        )
    out = decisions.copy()
    y_true = y[where, 0]
    y_pred = out["y_pred"].to_numpy(dtype=np.float64)
    out["y_true"] = y_true
    out["known_at"] = out["timestamp"] + (execution_lag + horizon + 1) * step
    defined = np.isfinite(y_true) & (y_true != 0)
    out["hit"] = np.where(defined, ((y_pred > 0) == (y_true > 0)).astype(np.float64), np.nan)
    if _is_classifier(out):
        out["abs_error"] = np.nan
        out["abs_error_persistence"] = np.nan
    else:
        out["abs_error"] = np.abs(y_true - y_pred)
        out["abs_error_persistence"] = np.abs(y_true)
    return out


def _check_decisions(decisions: pd.DataFrame, horizon: int | None) -> pd.DataFrame:
    missing = [c for c in ("timestamp", "y_pred") if c not in decisions.columns]
    if missing:
        raise DataError(
            f"decisions: missing column(s) {', '.join(missing)} "
            f"(has {', '.join(map(str, decisions.columns)) or 'none'})"
        )
    if decisions.empty:
        raise DataError("decisions: no rows to monitor")
    dec = decisions.copy()
    try:
        dec["timestamp"] = pd.to_datetime(dec["timestamp"], utc=True).dt.as_unit("ns")
    except (ValueError, TypeError) as exc:
        raise DataError(f"decisions: unparseable timestamp column: {exc}") from exc
    if "horizon" not in dec.columns:
        if horizon is None:
            raise DataError("decisions: no horizon column; pass the horizon they forecast")
        dec["horizon"] = horizon
    if horizon is not None:
        dec = dec[dec["horizon"] == horizon]
    horizons = sorted(dec["horizon"].unique().tolist())
    if len(horizons) != 1:
        found = sorted(decisions["horizon"].unique().tolist())
        raise DataError(f"decisions: need one horizon, found {found} (asked for {horizon})")
    if "symbol" in dec.columns and dec["symbol"].nunique() > 1:
        raise DataError(f"decisions: several symbols {sorted(dec['symbol'].unique())}; one only")
    dec = dec.sort_values("timestamp", kind="stable").reset_index(drop=True)
    dup = dec["timestamp"].duplicated()
    if dup.any():
        raise DataError(f"decisions: duplicate timestamp {dec['timestamp'][dup].iloc[0]}")
    bad = ~np.isfinite(dec["y_pred"].to_numpy(dtype=np.float64))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"decisions: y_pred is not finite at {dec['timestamp'].iloc[i]}")
    return dec


def _is_classifier(decisions: pd.DataFrame) -> bool:
    return "p_up" in decisions.columns and bool(decisions["p_up"].notna().any())


def _min_step(index: pd.DatetimeIndex) -> pd.Timedelta:
    if len(index) < 2:
        raise DataError("candles: need at least 2 bars to know the bar length")
    return pd.Timedelta(int(np.diff(index.as_unit("ns").asi8).min()), unit="ns")


def _worst(psi_frame: pd.DataFrame) -> tuple[FloatArray, npt.NDArray[np.object_]]:
    """Largest PSI per row and the feature that has it (NaN / None where none is defined)."""
    n = len(psi_frame)
    if psi_frame.shape[1] == 0:
        return np.full(n, np.nan), np.full(n, None, dtype=object)
    values = psi_frame.to_numpy(dtype=np.float64)
    filled = np.where(np.isfinite(values), values, -np.inf)
    best = filled.argmax(axis=1)
    top = filled[np.arange(n), best]
    names: npt.NDArray[np.object_] = np.asarray(psi_frame.columns, dtype=object)[best]
    undefined = ~np.isfinite(top)  # every PSI of the row is NaN
    top[undefined] = np.nan
    names[undefined] = None
    return top, names


def _accuracy_timeline(
    scores: pd.DataFrame, step: pd.Timedelta, spec: MonitorSpec
) -> pd.DataFrame:
    """Rolling metrics over the last ``window`` decisions known by each row's ``as_of``."""
    frame = pd.DataFrame({"timestamp": scores["timestamp"], "as_of": scores["timestamp"] + step})
    for col in ("y_pred", "p_up", "position"):
        if col in scores.columns:
            frame[col] = scores[col].to_numpy()
    scored = scores[np.isfinite(scores["y_true"].to_numpy(dtype=np.float64))]
    scored = scored.sort_values("known_at", kind="stable")
    hit = scored["hit"].to_numpy(dtype=np.float64)
    err = scored["abs_error"].to_numpy(dtype=np.float64)
    base = scored["abs_error_persistence"].to_numpy(dtype=np.float64)
    w = spec.window
    n_hit, da = _trailing_mean(hit, w)
    _, mae = _trailing_mean(err, w)
    _, mae_p = _trailing_mean(base, w)
    n_scored = np.minimum(np.arange(1, len(scored) + 1), w).astype(np.float64)
    # the last scored decision known by each as_of (-1: none yet)
    last = (
        np.searchsorted(
            scored["known_at"].to_numpy(dtype="datetime64[ns]"),
            frame["as_of"].to_numpy(dtype="datetime64[ns]"),
            side="right",
        )
        - 1
    )
    known = last >= 0
    enough = np.zeros(len(frame), dtype=bool)
    enough[known] = n_scored[last[known]] >= spec.min_periods

    def pick(values: FloatArray) -> FloatArray:
        out = np.full(len(frame), np.nan)
        out[enough] = values[last[enough]]
        return out

    frame["n_scored"] = np.where(known, n_scored[np.maximum(last, 0)], 0.0)
    frame["n_directional"] = np.where(known, n_hit[np.maximum(last, 0)], 0.0)
    frame["da"] = pick(da)
    frame["mae"] = pick(mae)
    frame["mae_persistence"] = pick(mae_p)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = frame["mae"].to_numpy() / frame["mae_persistence"].to_numpy()
    frame["mae_ratio"] = np.where(np.isfinite(ratio), ratio, np.nan)
    return frame.reset_index(drop=True)


def _trailing_mean(values: FloatArray, window: int) -> tuple[FloatArray, FloatArray]:
    """Count of finite values and their mean over the trailing ``window`` entries."""
    finite = np.isfinite(values)
    cum_n = np.concatenate([[0.0], np.cumsum(finite)])
    cum_s = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    stop = np.arange(1, len(values) + 1)
    start = np.maximum(stop - window, 0)
    n = cum_n[stop] - cum_n[start]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, (cum_s[stop] - cum_s[start]) / n, np.nan)
    return n, mean


def _drift(
    frame: pd.DataFrame,
    features: pd.DataFrame | None,
    training_stats: dict[str, Any] | None,
    spec: MonitorSpec,
) -> pd.DataFrame:
    """Per-feature rolling PSI at the decision rows (no columns when drift is off)."""
    index = pd.DatetimeIndex(frame["timestamp"], name="timestamp")
    if features is None:
        return pd.DataFrame(index=index)
    if training_stats is None:
        raise DataError("drift needs the bundle's training_stats.json next to the features")
    names = list(training_stats["feature_names"])
    missing = [n for n in names if n not in features.columns]
    if missing:
        raise DataError(f"features: missing column(s) named in training_stats: {missing[:5]}")
    rows = features.reindex(index)[names].to_numpy(dtype=np.float64)  # [N, F] at decision bars
    values = rolling_psi(
        training_stats["decile_edges"], rows, spec.drift_window, spec.drift_min_periods
    )
    return pd.DataFrame(values, index=index, columns=names)


def _summary(
    dec: pd.DataFrame,
    scores: pd.DataFrame,
    frame: pd.DataFrame,
    psi_frame: pd.DataFrame,
    alerts: list[AlertEvent],
    spec: MonitorSpec,
    lag: int,
    horizon: int,
    data_end: pd.Timestamp,
) -> dict[str, Any]:
    """The report as of ``data_end`` (the last candle's close): every known label is scored."""
    last = frame.iloc[-1] if len(frame) else None
    as_of = max(data_end, last["as_of"]) if last is not None else data_end
    known = scores["known_at"] <= as_of
    done = scores[known & np.isfinite(scores["y_true"])]
    rolling = _window_metrics(done, spec)
    worst: list[dict[str, Any]] = []
    if psi_frame.shape[1] and len(psi_frame):
        row = psi_frame.iloc[-1].dropna().sort_values(ascending=False)
        worst = [{"feature": k, "psi": float(v)} for k, v in row.head(spec.top_features).items()]
    active: dict[str, bool] = {}
    for event in alerts:
        active[event.kind] = event.status == "breach"
    by_kind = {k: sum(e.kind == k and e.status == "breach" for e in alerts) for k in ALERT_KINDS}
    max_psi = float(last["max_psi"]) if last is not None else float("nan")
    overall_err = float(done["abs_error"].mean()) if len(done) else float("nan")
    overall_base = float(done["abs_error_persistence"].mean()) if len(done) else float("nan")
    return {
        "symbol": str(dec["symbol"].iloc[0]) if "symbol" in dec.columns else None,
        "horizon": horizon,
        "execution_lag": lag,
        "task": "classification" if _is_classifier(dec) else "regression",
        "n_decisions": len(dec),
        "first_decision": dec["timestamp"].iloc[0].isoformat(),
        "last_decision": dec["timestamp"].iloc[-1].isoformat(),
        "as_of": as_of.isoformat(),
        "last_decision_as_of": last["as_of"].isoformat() if last is not None else None,
        "n_scored": len(done),
        "n_pending": int((~known).sum()),
        "n_unscorable": int((known & ~np.isfinite(scores["y_true"])).sum()),
        **rolling,
        "overall_directional_accuracy": float(done["hit"].mean()) if len(done) else None,
        "overall_mae_ratio": overall_err / overall_base if overall_base > 0 else None,
        "max_psi": max_psi,
        "drift_status": drift_status(max_psi),
        "worst_features": worst,
        "alerts": {
            "total": len(alerts),
            "breaches": by_kind,
            "recovered": sum(e.status == "recovered" for e in alerts),
            "active": sorted(k for k, on in active.items() if on),
        },
        "thresholds": asdict(spec),
    }


def _window_metrics(done: pd.DataFrame, spec: MonitorSpec) -> dict[str, float | None]:
    """Rolling figures over the last ``window`` scored decisions (by ``known_at``).

    Computed as the timeline computes them per row; None below ``min_periods``.
    """
    tail = done.sort_values("known_at", kind="stable").tail(spec.window)
    if len(tail) < spec.min_periods:
        return dict.fromkeys(("directional_accuracy", "mae", "mae_persistence", "mae_ratio"))
    hit = tail["hit"].to_numpy(dtype=np.float64)
    err = tail["abs_error"].to_numpy(dtype=np.float64)
    base = tail["abs_error_persistence"].to_numpy(dtype=np.float64)

    def mean(values: FloatArray) -> float | None:
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if finite.size else None

    mae, mae_p = mean(err), mean(base)
    ratio = mae / mae_p if mae is not None and mae_p else None
    return {
        "directional_accuracy": mean(hit),
        "mae": mae,
        "mae_persistence": mae_p,
        "mae_ratio": ratio,
    }


def threshold_lines(
    lines: Sequence[tuple[float, str, str]],
) -> list[tuple[float, str, str]]:
    """Reference lines of a monitor panel, those at the same level merged into one.

    ``--da-floor 0.5`` (the default) puts the alert line exactly on the coin-flip line, which
    would hide it; one line labelled ``coin flip = alert`` (the later line's colour) says both.
    """
    merged: list[tuple[float, str, str]] = []
    for level, color, name in lines:
        same = [i for i, (lv, _, _) in enumerate(merged) if abs(lv - level) < 1e-9]
        if same:
            lv, _, first = merged[same[0]]
            merged[same[0]] = (lv, color, f"{first} = {name}")
        else:
            merged.append((level, color, name))
    return merged


def plot_monitor(frame: pd.DataFrame, path: Path, title: str, spec: MonitorSpec) -> Path:
    """Write a PNG: rolling directional accuracy, MAE ratio and the largest feature PSI.

    Args:
        frame: :attr:`MonitorReport.frame`.
        path: where to write the PNG (parent folders are created).
        title: figure title.
        spec: thresholds to draw.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: runs and tests have no display
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    x = pd.DatetimeIndex(frame["as_of"])
    panels = (
        (
            "da",
            "directional accuracy",
            ((0.5, "grey", "coin flip"), (spec.da_floor, "red", "alert")),
        ),
        (
            "mae_ratio",
            "MAE / persistence MAE",
            ((1.0, "grey", "persistence"), (spec.mae_ratio_ceiling, "red", "alert")),
        ),
        (
            "max_psi",
            "largest feature PSI",
            ((PSI_STABLE, "orange", "moderate"), (spec.psi_threshold, "red", "alert")),
        ),
    )
    fig, axes = plt.subplots(3, 1, figsize=(9.0, 7.0), sharex=True)
    try:
        for ax, (column, label, lines) in zip(axes, panels, strict=True):
            ax.plot(x, frame[column].to_numpy(dtype=np.float64), color="tab:blue", lw=1.0)
            for level, color, name in threshold_lines(lines):
                ax.axhline(level, color=color, lw=1.2, ls="--", label=f"{name} ({level:g})")
            ax.set_ylabel(label)
            ax.legend(loc="best", fontsize=7)
        axes[0].set_title(f"{title} (window {spec.window}, drift window {spec.drift_window})")
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
