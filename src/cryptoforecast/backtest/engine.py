"""Vectorised backtest: PredictionFrame + candles -> positions -> PnL after fees and slippage.

Timing (the place where look-ahead sneaks in, so it is spelled out and tested):

- A prediction row with ``timestamp`` t (open time of bar t) is a decision made at the close of
  bar t. It is **executed at the close of bar t + execution_lag** (the same ``execution_lag`` the
  labels use, interpolated from the root config) and then held over the bar-to-bar returns
  ``log(close[k+1] / close[k])`` for ``k = t+lag, ..., t+lag+hold_bars-1``, unless a newer
  decision is executed first (we rebalance every bar). After ``hold_bars`` bars without a new
  decision the position goes flat: holes in the predictions (data gaps, fold boundaries, purge
  gaps) are flat, never silently carried.
- A row of ``bars`` is one return ``k``: ``timestamp`` is the open time of bar k (the bar at whose
  close the position for that return is set) and the return runs to the close of the next candle.
  So a decision made at t can never earn a return that closes at or before the close of bar
  t + lag; the last decision earns nothing unless there are candles after its execution bar.
- Returns are only earned between consecutive bars: a return across missing candles is never
  traded (the position over it is flat, paying the exit before the outage), though buy and hold
  keeps it. A decision whose execution bar is missing executes late, at the next candle, only
  while it is still within ``hold_bars`` (with validated frames this cannot happen: labels across
  gaps are NaN and dropped).
- The span of ``bars`` runs from the first decision's execution bar to the last decision's last
  held bar (limited by the candles); buy and hold is measured over exactly these bars.

Rules (:mod:`.strategies`): the default ``cost`` rule trades only forecasts whose expected move
clears the round-trip cost ``2 * (fee_bps + slippage_bps) / 1e4``; for a classifier the expected
move is ``(2 * p_up - 1) * typical_move``, where ``typical_move`` (unless set in the spec) is the
mean absolute ``h``-bar log return of the candles up to each fold's first decision (its
training and validation period: no bar it trades, see :func:`typical_move`). ``sign`` trades
every forecast's sign and ``probability`` fixed ``p_up`` bands.

Costs: every change of position pays ``|change| * (fee_bps + slippage_bps) / 1e4`` (fee and
slippage per side, so a long -> short flip pays twice), charged on the bar of the trade as a
simple-return fraction of equity. There is no forced close at the end: a position still open
after the last bar has paid its entry but no exit. Per-bar PnL is in simple returns:
``gross = position * (close[k+1] / close[k] - 1)``, ``net = gross - cost``, equity compounds
``prod(1 + net)`` from 1.0 (a short is rebalanced to the full equity every bar).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from cryptoforecast.backtest import strategies
from cryptoforecast.backtest.report import trading_metrics

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

YEAR = pd.Timedelta(days=365)

BAR_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "signal_time",
    "position",
    "asset_return",
    "gross",
    "cost",
    "net",
    "equity",
    "gross_equity",
    "benchmark_equity",
)
TRADE_COLUMNS: tuple[str, ...] = (
    "entry_time",
    "exit_time",
    "side",
    "size",
    "n_bars",
    "gross_return",
    "cost",
    "net_return",
    "closed",
)

__all__ = [
    "BacktestResult",
    "BacktestSpec",
    "periods_per_year_for",
    "run_backtest",
    "typical_move",
]

# Fewest h-bar returns a classifier's typical move is measured on before the cost rule trusts it.
MIN_MOVES = 30


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


@dataclass(frozen=True)
class BacktestSpec:
    """How predictions become positions and what trading costs. Built from ``conf/backtest``.

    Args:
        rule: ``cost`` (default: trade only expected moves beyond the round-trip cost, for
            regressions and classifiers alike), ``sign`` (trade the sign of ``y_pred``) or
            ``probability`` (trade ``p_up`` against ``upper`` / ``lower``).
        threshold: dead band of the ``sign`` rule, in log-return units (>= 0); the ``cost``
            rule adds it on top of the round-trip cost.
        upper: ``probability`` rule: long above this ``p_up``.
        lower: ``probability`` rule: short (or flat) below this ``p_up``.
        long_short: allow short positions (default long/flat).
        fee_bps: exchange fee per side, in basis points of the traded notional.
        slippage_bps: slippage per side, in basis points.
        execution_lag: bars from the decision (close of t) to its execution (close of t+lag).
        horizon: which horizon's predictions trade; None = the smallest in the frame.
        hold_bars: bars a decision stays valid after its execution before going flat (>= 1).
        periods_per_year: bars per year for annualising; None = from the candles' bar length
            (365 days of 24/7 trading: 8760 for 1h, 2190 for 4h, 365 for 1d).
        typical_move: ``cost`` rule for classifiers: mean absolute log return over the traded
            horizon (> 0); None = measured per fold on the candles before its first decision.
    """

    rule: str = "cost"
    threshold: float = 0.0
    upper: float = 0.55
    lower: float = 0.45
    long_short: bool = False
    fee_bps: float = 10.0
    slippage_bps: float = 5.0
    execution_lag: int = 1
    horizon: int | None = None
    hold_bars: int = 1
    periods_per_year: float | None = None
    typical_move: float | None = None

    def __post_init__(self) -> None:
        if self.rule not in strategies.RULES:
            raise ValueError(
                f"backtest.rule={self.rule!r}; choose one of {', '.join(strategies.RULES)}"
            )
        for name in ("threshold", "upper", "lower", "fee_bps", "slippage_bps"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                raise ValueError(f"backtest.{name} must be a finite number >= 0, got {value!r}")
        if not self.lower <= self.upper <= 1.0:
            raise ValueError(
                f"backtest needs 0 <= lower <= upper <= 1, got lower={self.lower}, "
                f"upper={self.upper}"
            )
        if not isinstance(self.long_short, bool):
            raise ValueError(f"backtest.long_short must be true or false, got {self.long_short!r}")
        if not _is_int(self.execution_lag) or self.execution_lag < 0:
            raise ValueError(
                f"backtest.execution_lag must be an integer >= 0, got {self.execution_lag!r}"
            )
        if not _is_int(self.hold_bars) or self.hold_bars < 1:
            raise ValueError(f"backtest.hold_bars must be an integer >= 1, got {self.hold_bars!r}")
        if self.horizon is not None and (not _is_int(self.horizon) or self.horizon < 1):
            raise ValueError(
                f"backtest.horizon must be null or an integer >= 1, got {self.horizon!r}"
            )
        ppy = self.periods_per_year
        if ppy is not None and (not _is_number(ppy) or not math.isfinite(ppy) or ppy <= 0):
            raise ValueError(f"backtest.periods_per_year must be null or > 0, got {ppy!r}")
        move = self.typical_move
        if move is not None and (not _is_number(move) or not math.isfinite(move) or move <= 0):
            raise ValueError(f"backtest.typical_move must be null or > 0, got {move!r}")

    @property
    def cost_rate(self) -> float:
        """Cost per unit of position change, as a fraction: ``(fee + slippage) / 1e4``."""
        return (self.fee_bps + self.slippage_bps) / 1e4

    @property
    def round_trip_cost(self) -> float:
        """Entry plus exit cost of one trade: ``2 * (fee + slippage) / 1e4``."""
        return strategies.round_trip_cost(self.fee_bps, self.slippage_bps)


@dataclass
class BacktestResult:
    """What :func:`run_backtest` returns.

    Attributes:
        bars: one row per traded return k, columns :data:`BAR_COLUMNS`: ``timestamp`` (open time
            of bar k), ``signal_time`` (timestamp of the prediction in force, flat calls
            included; NaT where none is: expired, a hole or a gap), ``position``,
            ``asset_return`` (``log(close[k+1] / close[k])``), ``gross``, ``cost``, ``net``
            (simple returns), ``equity``, ``gross_equity`` and
            ``benchmark_equity`` (value after the bar from 1.0; buy and hold is
            ``close[k+1] / close[first k]``).
        trades: one row per run of an unchanged non-zero position, columns
            :data:`TRADE_COLUMNS`: ``entry_time`` / ``exit_time`` (open times of the bars at
            whose close the position is entered / left, or marked at the end when ``closed`` is
            False), ``side`` (``long``/``short``), ``size``, ``n_bars``, ``gross_return``,
            ``cost`` (entry plus exit, no exit for an open trade) and ``net_return``
            (``(1 + gross) * (1 - entry cost) * (1 - exit cost) - 1``).
        metrics: flat metrics without prefix (see :mod:`cryptoforecast.backtest.report`), plus
            ``periods_per_year``.
    """

    bars: pd.DataFrame
    trades: pd.DataFrame
    metrics: dict[str, float]


def periods_per_year_for(step: pd.Timedelta) -> float:
    """Bars per year for a bar length, trading 24/7: 8760 for 1h, 2190 for 4h, 365 for 1d."""
    if step <= pd.Timedelta(0):
        raise ValueError(f"bar length must be positive, got {step}")
    return float(YEAR / step)


def _utc_ns(values: pd.DatetimeIndex) -> IntArray:
    """Epoch nanoseconds of UTC timestamps (naive ones are taken as UTC)."""
    idx = values if values.tz is not None else values.tz_localize("UTC")
    return np.asarray(idx.tz_convert("UTC").as_unit("ns").asi8, dtype=np.int64)


def _candle_arrays(candles: pd.DataFrame) -> tuple[IntArray, FloatArray, int]:
    """Open times (ns), closes and the bar length (ns) of a canonical candle frame."""
    if "close" not in candles.columns:
        raise ValueError("candles need a 'close' column")
    if isinstance(candles.index, pd.DatetimeIndex):
        index = candles.index
    elif "timestamp" in candles.columns:
        index = pd.DatetimeIndex(candles["timestamp"])
    else:
        raise ValueError("candles need a DatetimeIndex (bar open times) or a 'timestamp' column")
    ts = _utc_ns(index)
    close = candles["close"].to_numpy(dtype=np.float64)
    if ts.size < 2:
        raise ValueError(f"need at least 2 candles to earn a return, got {ts.size}")
    diffs = np.diff(ts)
    if (diffs <= 0).any():
        at = pd.Timestamp(int(ts[1:][diffs <= 0][0]), tz="UTC")
        raise ValueError(f"candle timestamps must be strictly increasing; not at {at}")
    if not (np.isfinite(close).all() and (close > 0).all()):
        raise ValueError("candle closes must be finite and > 0")
    step = int(diffs.min())
    if ((ts - ts[0]) % step).any():
        raise ValueError(f"candle timestamps are off the {pd.Timedelta(step, unit='ns')} grid")
    return ts, close, step


def _select(predictions: pd.DataFrame, spec: BacktestSpec) -> pd.DataFrame:
    """The rows of one symbol and the traded horizon, sorted by time, one per timestamp."""
    missing = [c for c in ("timestamp", "horizon", "y_pred") if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack column(s) {missing}")
    if predictions.empty:
        raise ValueError("predictions are empty")
    if "symbol" in predictions.columns and predictions["symbol"].nunique() > 1:
        symbols = sorted(predictions["symbol"].unique())
        raise ValueError(f"backtest one symbol at a time; predictions hold {symbols}")
    horizons = sorted(int(h) for h in predictions["horizon"].unique())
    horizon = horizons[0] if spec.horizon is None else spec.horizon
    if horizon not in horizons:
        raise ValueError(f"backtest.horizon={horizon} not in the predictions' horizons {horizons}")
    frame = predictions[predictions["horizon"] == horizon].sort_values("timestamp")
    dup = frame["timestamp"].duplicated()
    if dup.any():
        raise ValueError(
            f"predictions for horizon {horizon} repeat timestamp "
            f"{frame['timestamp'][dup].iloc[0]} (overlapping folds?)"
        )
    return frame


def _measured_move(
    ts: IntArray, close: FloatArray, step: int, before_ns: int, horizon: int
) -> float:
    """Mean ``|log(close[k + h] / close[k])|`` over candles opened at or before ``before_ns``.

    Their closes are all known at the decision made at the close of the bar opened at
    ``before_ns``.
    """
    known = ts <= before_ns
    grid, c = (ts[known] - ts[0]) // step, close[known]
    j = np.searchsorted(grid, grid + horizon)
    ok = j < grid.size
    ok[ok] = grid[j[ok]] == grid[ok] + horizon  # k and k + h both present (no gap between)
    moves = np.abs(np.log(c[j[ok]] / c[ok]))
    if moves.size < MIN_MOVES:
        at = pd.Timestamp(int(before_ns), tz="UTC")
        raise ValueError(
            f"backtest.rule=cost for a classifier measures the typical {horizon}-bar move on the "
            f"candles up to the first decision ({at}); they hold {moves.size} such returns, need "
            f">= {MIN_MOVES} (give backtest.typical_move, or candles reaching further back)"
        )
    return float(moves.mean())


def typical_move(candles: pd.DataFrame, before: pd.Timestamp | str, horizon: int) -> float:
    """A classifier's typical move for the ``cost`` rule, measured without look-ahead.

    Args:
        candles: canonical candle frame (UTC DatetimeIndex of bar open times, ``close``).
        before: open time of the first decision bar; only candles opened at or before it count.
        horizon: bars of the traded forecast horizon.

    Returns:
        The mean absolute ``horizon``-bar log return over those candles (gaps skipped).

    Raises:
        ValueError: fewer than :data:`MIN_MOVES` such returns.
    """
    ts, close, step = _candle_arrays(candles)
    at = pd.Timestamp(before)
    at = at.tz_localize("UTC") if at.tz is None else at
    return _measured_move(ts, close, step, int(at.as_unit("ns").value), int(horizon))


def _target_positions(
    frame: pd.DataFrame, spec: BacktestSpec, ts: IntArray, close: FloatArray, step: int
) -> FloatArray:
    """Apply the spec's rule to the selected predictions (candles: for the typical move)."""
    has_p_up = "p_up" in frame.columns and frame["p_up"].notna().any()
    if spec.rule == "probability":
        if not has_p_up:
            raise ValueError("backtest.rule=probability needs a 'p_up' column (a classifier)")
        return strategies.probability(
            frame["p_up"].to_numpy(dtype=np.float64), spec.upper, spec.lower, spec.long_short
        )
    if spec.rule == "cost":
        if not has_p_up:
            move = frame["y_pred"].to_numpy(dtype=np.float64)
        else:
            move = _classifier_moves(frame, spec, ts, close, step)
        return strategies.cost_aware(move, spec.round_trip_cost, spec.threshold, spec.long_short)
    if has_p_up:
        raise ValueError(
            "predictions carry p_up (a classifier: y_pred is a class, not a return); "
            "use backtest.rule=probability or cost"
        )
    return strategies.sign(
        frame["y_pred"].to_numpy(dtype=np.float64), spec.threshold, spec.long_short
    )


def _classifier_moves(
    frame: pd.DataFrame, spec: BacktestSpec, ts: IntArray, close: FloatArray, step: int
) -> FloatArray:
    """Expected moves of a classifier's rows, each fold's typical move measured before it."""
    p_up = frame["p_up"].to_numpy(dtype=np.float64)
    folds = frame["fold"].to_numpy() if "fold" in frame.columns else np.zeros(len(frame))
    p_ns = _utc_ns(pd.DatetimeIndex(frame["timestamp"]))
    horizon = int(frame["horizon"].iloc[0])
    move = np.empty_like(p_up)
    for fold in np.unique(folds):
        rows = folds == fold
        size = spec.typical_move or _measured_move(ts, close, step, int(p_ns[rows].min()), horizon)
        move[rows] = strategies.expected_move(p_up[rows], size)
        log.info(
            "cost rule, fold %s: typical %d-bar move %.6g, trades p_up beyond 0.5 +/- %.4f",
            fold,
            horizon,
            size,
            spec.round_trip_cost / (2.0 * size),
        )
    return move


def run_backtest(
    predictions: pd.DataFrame, candles: pd.DataFrame, spec: BacktestSpec
) -> BacktestResult:
    """Trade one symbol's predictions on its candles (timing and costs: see the module doc).

    Args:
        predictions: a PredictionFrame (one symbol; only the traded horizon is used).
        candles: canonical candle frame (UTC DatetimeIndex of bar open times, ``close``); it
            must reach past the predictions' execution bars for them to earn anything.
        spec: rule, costs, execution lag, horizon, hold time, annualisation.

    Returns:
        Per-bar PnL, trades and metrics.

    Raises:
        ValueError: on malformed inputs, off-grid timestamps, or when no candle return falls
            in the span the predictions trade.
    """
    frame = _select(predictions, spec)
    ts, close, step = _candle_arrays(candles)
    target = _target_positions(frame, spec, ts, close, step)
    p_ns = _utc_ns(pd.DatetimeIndex(frame["timestamp"]))
    if ((p_ns - ts[0]) % step).any():
        raise ValueError("prediction timestamps are off the candles' bar grid")
    grid = (ts - ts[0]) // step  # bar number of each candle; jumps where bars are missing
    execute = (p_ns - ts[0]) // step + spec.execution_lag  # bar number of each execution
    lag, hold = spec.execution_lag, spec.hold_bars

    # One row per candle k with a successor: the return from close[k] to the next close.
    start = grid[:-1]
    rows = np.flatnonzero((start >= execute[0]) & (start <= execute[-1] + hold - 1))
    if rows.size == 0:
        raise ValueError(
            "no candle return to trade: the candles do not reach past the predictions' "
            f"execution bars (lag {lag}); predictions "
            f"{frame['timestamp'].iloc[0]} .. {frame['timestamp'].iloc[-1]}"
        )
    k = start[rows]
    consecutive = grid[rows + 1] - k == 1  # a return across missing bars is never traded
    last = np.searchsorted(execute, k, side="right") - 1  # latest decision executed by bar k
    safe = np.maximum(last, 0)
    live = (last >= 0) & (k - execute[safe] < hold) & consecutive
    position = np.where(live, target[safe], 0.0)

    ratio = close[rows + 1] / close[rows]
    gross = position * (ratio - 1.0)
    cost = np.abs(np.diff(position, prepend=0.0)) * spec.cost_rate
    net = gross - cost
    signal_time = pd.DatetimeIndex(frame["timestamp"]).tz_convert("UTC")[safe]
    bars = pd.DataFrame(
        {
            "timestamp": pd.DatetimeIndex(ts[rows], tz="UTC").as_unit("ns"),
            "signal_time": signal_time.where(live, pd.NaT),
            "position": position,
            "asset_return": np.log(ratio),
            "gross": gross,
            "cost": cost,
            "net": net,
            "equity": np.cumprod(1.0 + net),
            "gross_equity": np.cumprod(1.0 + gross),
            "benchmark_equity": close[rows + 1] / close[rows[0]],
        }
    )
    exit_ns = ts[rows + 1]
    trades = _trades(bars, exit_ns, spec.cost_rate)
    ppy = spec.periods_per_year or periods_per_year_for(pd.Timedelta(step, unit="ns"))
    metrics = trading_metrics(
        net,
        ratio - 1.0,
        position,
        cost,
        trades["net_return"].to_numpy(dtype=np.float64),
        float(ppy),
    )
    metrics["periods_per_year"] = float(ppy)
    unused = len(frame) - np.unique(last[live]).size
    log.info(
        "backtest h=%s lag=%d hold=%d: %d bars, %d trades, %d of %d decisions held no bar, "
        "total return %.4f (buy and hold %.4f)",
        frame["horizon"].iloc[0],
        lag,
        hold,
        len(bars),
        len(trades),
        unused,
        len(frame),
        metrics["total_return"],
        metrics["bh_total_return"],
    )
    return BacktestResult(bars=bars, trades=trades, metrics=metrics)


def _trades(bars: pd.DataFrame, exit_ns: IntArray, cost_rate: float) -> pd.DataFrame:
    """Runs of an unchanged non-zero position, each a trade (a flip ends one, starts another)."""
    position = bars["position"].to_numpy(dtype=np.float64)
    gross = bars["gross"].to_numpy(dtype=np.float64)
    n = position.size
    starts = np.flatnonzero(np.diff(position, prepend=0.0) != 0.0)
    ends = np.append(starts[1:], n)  # exclusive: the row where the position changes next
    held = position[starts] != 0.0
    starts, ends = starts[held], ends[held]
    if starts.size == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in TRADE_COLUMNS})
    size = np.abs(position[starts])
    gross_return = np.array(
        [np.prod(1.0 + gross[s:e]) - 1.0 for s, e in zip(starts, ends, strict=True)]
    )
    closed = ends < n
    entry_cost = size * cost_rate
    exit_cost = np.where(closed, size * cost_rate, 0.0)
    net_return = (1.0 + gross_return) * (1.0 - entry_cost) * (1.0 - exit_cost) - 1.0
    return pd.DataFrame(
        {
            "entry_time": pd.DatetimeIndex(bars["timestamp"])[starts],
            "exit_time": pd.DatetimeIndex(exit_ns[ends - 1], tz="UTC").as_unit("ns"),
            "side": np.where(position[starts] > 0, "long", "short"),
            "size": size,
            "n_bars": (ends - starts).astype(np.int64),
            "gross_return": gross_return,
            "cost": entry_cost + exit_cost,
            "net_return": net_return,
            "closed": closed,
        }
    )
