"""Paper trading: replay candles bar by bar through the Predictor, trade after lag and costs.

At each bar ``t`` from ``start`` the predictor is given only the candles up to and including
``t`` (the last ``history_bars`` of them) and decides; the decision executes at the close of bar
``t + execution_lag`` and is held for ``hold_bars`` bars unless a newer one executes first, then
flat; a return across missing candles is never traded; every position change pays
``fee_bps + slippage_bps`` per side. These are the rules of ``backtest.engine.run_backtest``,
implemented here as an event loop (one bar at a time, as a live trader would run them), and a
test checks that both give the same bars, trades and equity.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptoforecast.backtest.engine import (
    BAR_COLUMNS,
    BacktestSpec,
    _trades,
    periods_per_year_for,
)
from cryptoforecast.backtest.report import trading_metrics
from cryptoforecast.serving.monitor import MonitorReport, MonitorSpec, monitor_predictor
from cryptoforecast.serving.predictor import PredictionError, Predictor

log = logging.getLogger(__name__)


@dataclass
class PaperResult:
    """Decisions (a PredictionFrame), per-bar PnL, trades, metrics and the monitor of a replay."""

    decisions: pd.DataFrame
    bars: pd.DataFrame
    trades: pd.DataFrame
    metrics: dict[str, float]
    monitor: MonitorReport | None = None

    def save(self, folder: Path) -> None:
        """Write decisions, equity (the bars), trades (parquet), metrics.json and the monitor.

        With a monitor report, its files (``monitor.parquet``, ``alerts.jsonl``,
        ``monitor_summary.json``, ``monitor.png``, ...) go into the same folder.
        """
        folder.mkdir(parents=True, exist_ok=True)
        self.decisions.to_parquet(folder / "decisions.parquet", index=False)
        self.bars.to_parquet(folder / "equity.parquet", index=False)
        self.trades.to_parquet(folder / "trades.parquet", index=False)
        clean = {k: (v if np.isfinite(v) else None) for k, v in self.metrics.items()}
        (folder / "metrics.json").write_text(json.dumps(clean, indent=1, sort_keys=True) + "\n")
        if self.monitor is not None:
            self.monitor.save(folder)


def backtest_spec_of(predictor: Predictor) -> BacktestSpec:
    """The bundle's backtest settings (rule, costs, lag, hold) as a :class:`BacktestSpec`."""
    return BacktestSpec(**predictor.spec["backtest"])


def paper_trade(
    predictor: Predictor,
    candles: pd.DataFrame,
    start: str | pd.Timestamp,
    end: str | pd.Timestamp | None = None,
    spec: BacktestSpec | None = None,
    monitor: MonitorSpec | None = None,
) -> PaperResult:
    """Replay ``candles`` from ``start`` (inclusive) to ``end`` (inclusive, default: the last).

    Args:
        predictor: the model.
        candles: raw candles covering ``start`` minus the predictor's history, to ``end`` plus
            ``execution_lag + hold_bars`` bars for the last decisions to earn anything.
        start: first decision bar (open time, UTC).
        end: last decision bar.
        spec: trading rules; default the bundle's backtest settings.
        monitor: also monitor the decisions (rolling accuracy, drift, alerts; see
            ``serving.monitor``) over the same candles; None: no monitor.

    Returns:
        :class:`PaperResult`; ``bars`` has the engine's columns.
    """
    spec = spec or backtest_spec_of(predictor)
    frame = predictor.prepare_candles(candles, keep_all=True)
    index = frame.index
    t0 = pd.Timestamp(start, tz="UTC") if pd.Timestamp(start).tz is None else pd.Timestamp(start)
    t1 = index[-1] if end is None else pd.Timestamp(end)
    t1 = t1.tz_localize("UTC") if t1.tz is None else t1
    step = predictor.step
    grid = ((index - index[0]) // step).to_numpy(dtype=np.int64)  # bar numbers (gaps jump)
    close = frame["close"].to_numpy(dtype=np.float64)
    history = predictor.history_bars
    lag, hold, rate = spec.execution_lag, spec.hold_bars, spec.cost_rate

    decisions: list[dict[str, Any]] = []
    pending: list[tuple[int, float, pd.Timestamp]] = []  # (execution bar, target, signal time)
    rows: list[dict[str, Any]] = []
    active: tuple[int, float, pd.Timestamp] | None = None
    position_prev = 0.0
    first_exec: int | None = None
    for i, t in enumerate(index):
        if t0 <= t <= t1:  # decide at the close of bar t, seeing bars <= t only
            seen = frame.iloc[max(0, i + 1 - history) : i + 1]
            try:
                out = predictor.predict_prepared(seen)
            except PredictionError as exc:  # a gap inside the window: no decision (flat later)
                log.debug("no decision at %s: %s", t, exc)
            else:
                decisions.append(_decision_row(out, predictor))
                pending.append((int(grid[i]) + lag, out["signal"]["position"], t))
                first_exec = int(grid[i]) + lag if first_exec is None else first_exec
        # Executions due by this bar (the latest wins), then the return to the next candle.
        while pending and pending[0][0] <= grid[i]:
            active = pending.pop(0)
        if i + 1 >= len(index) or first_exec is None or grid[i] < first_exec:
            continue  # no return to earn yet (or no next candle)
        consecutive = grid[i + 1] - grid[i] == 1
        live = active is not None and grid[i] - active[0] < hold and consecutive
        position = active[1] if live and active is not None else 0.0
        ratio = close[i + 1] / close[i]
        gross = position * (ratio - 1.0)
        cost = abs(position - position_prev) * rate
        position_prev = position
        rows.append(
            {
                "timestamp": t,
                "signal_time": active[2] if live and active is not None else pd.NaT,
                "position": position,
                "asset_return": float(np.log(ratio)),
                "gross": gross,
                "cost": cost,
                "net": gross - cost,
                "close_next": close[i + 1],
                "close": close[i],
                "exit_ns": int(index[i + 1].value),
                "bar": int(grid[i]),
            }
        )
    bars = pd.DataFrame(rows)
    if decisions:  # the span ends with the last decision's hold (as in the engine)
        last_exec = int((decisions[-1]["timestamp"] - index[0]) // step) + lag
        bars = bars[bars["bar"] <= last_exec + hold - 1] if len(bars) else bars
    if bars.empty:
        raise PredictionError(f"no bar to trade between {t0} and {t1}")
    bars["equity"] = np.cumprod(1.0 + bars["net"].to_numpy())
    bars["gross_equity"] = np.cumprod(1.0 + bars["gross"].to_numpy())
    bars["benchmark_equity"] = bars["close_next"] / bars["close"].iloc[0]
    bars["timestamp"] = pd.DatetimeIndex(bars["timestamp"]).as_unit("ns")
    bars["signal_time"] = pd.to_datetime(bars["signal_time"], utc=True).dt.as_unit("ns")
    exit_ns = bars["exit_ns"].to_numpy(dtype=np.int64)
    bars = bars[list(BAR_COLUMNS)]  # the vectorised engine's layout, so the two compare
    trades = _trades(bars, exit_ns, rate)
    ppy = spec.periods_per_year or periods_per_year_for(step)
    metrics = trading_metrics(
        bars["net"].to_numpy(),
        np.exp(bars["asset_return"].to_numpy()) - 1.0,
        bars["position"].to_numpy(),
        bars["cost"].to_numpy(),
        trades["net_return"].to_numpy(dtype=np.float64),
        float(ppy),
    )
    metrics["periods_per_year"] = float(ppy)
    metrics["n_decisions"] = float(len(decisions))
    frame_dec = pd.DataFrame(decisions)
    report = None
    if monitor is not None:
        report = monitor_predictor(predictor, frame_dec, frame, monitor, prepared=True)
    return PaperResult(frame_dec, bars.reset_index(drop=True), trades, metrics, report)


def _decision_row(out: dict[str, Any], predictor: Predictor) -> dict[str, Any]:
    chosen = next(f for f in out["forecasts"] if f["horizon"] == predictor.trade_horizon)
    row = {
        "timestamp": pd.Timestamp(out["timestamp"]).as_unit("ns"),
        "symbol": out["symbol"],
        "fold": 0,
        "horizon": chosen["horizon"],
        "y_pred": chosen["y_pred"],
        "position": out["signal"]["position"],
    }
    if "p_up" in chosen:
        row["p_up"] = chosen["p_up"]
    return row
