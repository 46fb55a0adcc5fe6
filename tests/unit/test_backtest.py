"""Backtest: hand-computed PnL bar by bar, costs on changes, timing and look-ahead probes, gaps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.backtest import (
    BacktestSpec,
    periods_per_year_for,
    plot_equity,
    plot_equity_comparison,
    report,
    run_backtest,
    strategies,
)
from cryptoforecast.backtest.engine import TRADE_COLUMNS, typical_move
from cryptoforecast.data.targets import TargetSpec, make_targets
from cryptoforecast.evaluation.predictions import make_prediction_frame

T0 = pd.Timestamp("2024-01-01", tz="UTC")
H = pd.Timedelta(hours=1)
TOL = 1e-12
C = 0.0015  # (10 bps fee + 5 bps slippage) per unit of position change
# simple returns of bar k -> k+1: 0.1, -0.1, 0, 0.2, -0.2, 0.1, -0.1
CLOSES = [100.0, 110.0, 99.0, 99.0, 118.8, 95.04, 104.544, 94.0896]
SIGNS = [1.0, -1.0, 1.0, 1.0, -1.0, 1.0]  # forecasts made at the close of bars 0..5


def candles(
    closes: list[float], step: pd.Timedelta = H, drop: tuple[int, ...] = ()
) -> pd.DataFrame:
    index = pd.DatetimeIndex([T0 + i * step for i in range(len(closes))], name="timestamp")
    frame = pd.DataFrame({"close": np.asarray(closes, dtype=np.float64)}, index=index)
    return frame.drop(index=index[list(drop)])


def preds(
    bars: list[int],
    y_pred: list[float],
    step: pd.Timedelta = H,
    y_true: list[float] | None = None,
    p_up: list[float] | None = None,
) -> pd.DataFrame:
    n = len(bars)
    yt = np.zeros(n) if y_true is None else np.asarray(y_true, dtype=np.float64)
    return make_prediction_frame(
        pd.DatetimeIndex([T0 + b * step for b in bars]),
        "BTCUSDT",
        0,
        [1],
        yt.reshape(n, 1),
        np.asarray(y_pred, dtype=np.float64).reshape(n, 1),
        np.full(n, 100.0),
        None if p_up is None else np.asarray(p_up, dtype=np.float64).reshape(n, 1),
    )


def spec(**kw: object) -> BacktestSpec:
    """The sign rule unless told otherwise: these tests pin timing and PnL, not the rule."""
    return BacktestSpec(**{"rule": "sign", **kw})  # type: ignore[arg-type]


def close_to(actual: object, expected: object) -> None:
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64), 0, TOL
    )


# ---------------------------------------------------------------- hand-computed PnL, bar by bar


def test_lag1_long_flat_hand_computed() -> None:
    res = run_backtest(preds(list(range(6)), SIGNS), candles(CLOSES), spec(execution_lag=1))
    b = res.bars
    # decision at close of t trades return t+1 -> t+2; rows are bars 1..6
    assert list(b["timestamp"]) == [T0 + k * H for k in range(1, 7)]
    close_to(b["position"], [1, 0, 1, 1, 0, 1])
    close_to(b["gross"], [-0.1, 0.0, 0.2, -0.2, 0.0, -0.1])
    close_to(b["cost"], [C, C, C, 0.0, C, C])
    net = [-0.1015, -0.0015, 0.1985, -0.2, -0.0015, -0.1015]
    close_to(b["net"], net)
    close_to(b["equity"], np.cumprod(1 + np.array(net)))
    close_to(b["gross_equity"], [0.9, 0.9, 1.08, 0.864, 0.864, 0.7776])
    close_to(b["benchmark_equity"], [0.9, 0.9, 1.08, 0.864, 0.9504, 0.85536])
    close_to(b["asset_return"], np.log([0.9, 1.0, 1.2, 0.8, 1.1, 0.9]))
    assert list(b["signal_time"]) == [T0 + t * H for t in range(6)]  # a flat call is a decision
    t = res.trades
    assert list(t["side"]) == ["long"] * 3 and list(t["closed"]) == [True, True, False]
    assert list(t["entry_time"]) == [T0 + H, T0 + 3 * H, T0 + 6 * H]
    assert list(t["exit_time"]) == [T0 + 2 * H, T0 + 5 * H, T0 + 7 * H]
    assert list(t["n_bars"]) == [1, 2, 1]
    close_to(t["gross_return"], [-0.1, -0.04, -0.1])
    close_to(t["cost"], [2 * C, 2 * C, C])
    close_to(t["net_return"], [0.9 * 0.9985**2 - 1, 0.96 * 0.9985**2 - 1, 0.9 * 0.9985 - 1])
    m = res.metrics
    close_to(m["total_return"], np.prod(1 + np.array(net)) - 1)
    assert m["n_trades"] == 3 and m["win_rate"] == 0.0 and m["profit_factor"] == 0.0
    close_to(m["exposure"], 4 / 6)
    close_to(m["cost_paid"], 5 * C)
    close_to(m["turnover"], 5 * 8760 / 6)
    close_to(m["bh_total_return"], 94.0896 / 110.0 - 1)


def test_lag0_long_flat_hand_computed() -> None:
    res = run_backtest(preds(list(range(6)), SIGNS), candles(CLOSES), spec(execution_lag=0))
    b = res.bars
    assert list(b["timestamp"]) == [T0 + k * H for k in range(6)]
    close_to(b["position"], [1, 0, 1, 1, 0, 1])
    close_to(b["gross"], [0.1, 0.0, 0.0, 0.2, 0.0, 0.1])
    close_to(b["net"], [0.0985, -0.0015, -0.0015, 0.2, -0.0015, 0.0985])
    close_to(b["benchmark_equity"], [1.1, 0.99, 0.99, 1.188, 0.9504, 1.04544])


def test_lag1_long_short_hand_computed_flip_pays_two_units() -> None:
    res = run_backtest(
        preds(list(range(6)), SIGNS), candles(CLOSES), spec(execution_lag=1, long_short=True)
    )
    b = res.bars
    close_to(b["position"], [1, -1, 1, 1, -1, 1])
    close_to(b["gross"], [-0.1, 0.0, 0.2, -0.2, -0.1, -0.1])
    close_to(b["cost"], [C, 2 * C, 2 * C, 0.0, 2 * C, 2 * C])
    net = [-0.1015, -0.003, 0.197, -0.2, -0.103, -0.103]
    close_to(b["net"], net)
    close_to(b["equity"].iloc[-1], np.prod(1 + np.array(net)))
    assert list(res.trades["side"]) == ["long", "short", "long", "short", "long"]
    close_to(res.metrics["cost_paid"], 9 * C)
    assert res.metrics["exposure"] == 1.0


def test_constant_long_pays_entry_once_and_no_forced_exit() -> None:
    res = run_backtest(preds(list(range(6)), [0.01] * 6), candles(CLOSES), spec())
    close_to(res.bars["cost"], [C, 0, 0, 0, 0, 0])
    close_to(res.bars["gross_equity"].iloc[-1], CLOSES[7] / CLOSES[1])
    close_to(res.bars["equity"].iloc[-1], (1 - 0.1 - C) / 0.9 * CLOSES[7] / CLOSES[1])
    assert len(res.trades) == 1 and not res.trades["closed"].iloc[0]
    close_to(res.trades["cost"], [C])


def test_costs_scale_with_fee_and_slippage() -> None:
    res = run_backtest(
        preds(list(range(6)), SIGNS), candles(CLOSES), spec(fee_bps=0.0, slippage_bps=0.0)
    )
    close_to(res.bars["net"], res.bars["gross"])
    assert res.metrics["cost_paid"] == 0.0
    res = run_backtest(
        preds(list(range(6)), SIGNS), candles(CLOSES), spec(fee_bps=20.0, slippage_bps=0.0)
    )
    close_to(res.bars["cost"], [0.002, 0.002, 0.002, 0.0, 0.002, 0.002])


def test_buy_and_hold_equals_close_ratio_over_the_same_bars() -> None:
    closes = [100.0, 103.0, 101.0, 107.0, 104.0, 108.0, 111.0, 109.0, 115.0, 112.0]
    res = run_backtest(preds(list(range(2, 6)), [1, -1, 1, -1]), candles(closes), spec())
    # bars traded: 3..6 (first execution 3, last decision at 5 executes at 6, held to close of 7)
    assert res.bars["timestamp"].iloc[0] == T0 + 3 * H and len(res.bars) == 4
    assert res.bars["benchmark_equity"].iloc[-1] == pytest.approx(closes[7] / closes[3], abs=TOL)
    close_to(res.metrics["bh_total_return"], closes[7] / closes[3] - 1)


# ---------------------------------------------------------------- timing and look-ahead


def test_last_signal_never_trades_without_a_later_candle() -> None:
    frame = preds(list(range(7)), SIGNS + [-1.0])  # last decision at bar 6 executes at bar 7
    res = run_backtest(frame, candles(CLOSES), spec(long_short=True))
    assert T0 + 6 * H not in set(res.bars["signal_time"].dropna())
    assert res.bars["timestamp"].iloc[-1] == T0 + 6 * H  # no return starts at bar 7
    without = run_backtest(frame.iloc[:-1], candles(CLOSES), spec(long_short=True))
    pd.testing.assert_frame_equal(res.bars, without.bars)
    # the probe is not vacuous: one more candle and the last decision earns its bar
    more = run_backtest(frame, candles(CLOSES + [84.68064]), spec(long_short=True))
    assert more.bars["signal_time"].iloc[-1] == T0 + 6 * H
    close_to(more.bars["gross"].iloc[-1], 0.1)  # short over a 10 % fall


@pytest.mark.parametrize("lag", [1, 2])
def test_returns_before_the_execution_bar_cannot_reach_the_signal(lag: int) -> None:
    rng = np.random.default_rng(0)
    closes = list(100 * np.exp(np.cumsum(rng.normal(0, 0.02, 12))))
    y_pred = list(rng.normal(0, 0.01, 9))
    t = 5
    frame = preds(list(range(9)), y_pred)
    shocked = np.array(closes)
    shocked[: t + lag] *= np.array([1e3, 1e-3] * 6)[: t + lag]  # every return k <= t+lag-1 moves
    cfg = spec(execution_lag=lag, long_short=True)
    base = run_backtest(frame, candles(closes), cfg).bars
    hit = run_backtest(frame, candles(list(shocked)), cfg).bars
    mine = base["signal_time"] == T0 + t * H
    assert mine.sum() == 1 and base["timestamp"][mine].iloc[0] == T0 + (t + lag) * H
    after = base["timestamp"] >= T0 + (t + lag) * H
    cols = ["position", "gross", "cost", "net"]
    pd.testing.assert_frame_equal(base.loc[after, cols], hit.loc[after, cols], rtol=0, atol=TOL)
    # not vacuous: the shock does move the bar just before, and an engine one bar early
    before = base["timestamp"] == T0 + (t + lag - 1) * H
    assert (
        abs(base.loc[before, "asset_return"].iloc[0] - hit.loc[before, "asset_return"].iloc[0]) > 1
    )
    early = spec(execution_lag=lag - 1, long_short=True)
    b2 = run_backtest(frame, candles(closes), early).bars
    h2 = run_backtest(frame, candles(list(shocked)), early).bars
    mine2 = b2["signal_time"] == T0 + t * H
    assert abs(b2.loc[mine2, "gross"].iloc[0] - h2.loc[mine2, "gross"].iloc[0]) > 1e-3


@pytest.mark.parametrize("lag", [0, 1, 2])
def test_perfect_foresight_earns_exactly_the_held_returns(lag: int) -> None:
    closes = [100.0, 104.0, 98.0, 103.0, 99.0, 105.0, 100.0, 106.0, 101.0, 107.0, 102.0]
    c = candles(closes)
    y, _ = make_targets(c["close"], TargetSpec(horizon=1, execution_lag=lag))
    ok = np.flatnonzero(np.isfinite(y[:, 0]))
    perfect = preds(list(ok), list(y[ok, 0]), y_true=list(y[ok, 0]))
    cfg = spec(execution_lag=lag, long_short=True, fee_bps=0.0, slippage_bps=0.0)
    res = run_backtest(perfect, c, cfg)
    held = np.arange(ok[0] + lag, ok[-1] + lag + 1)  # return k = t + lag for each decision t
    bound = np.abs(np.array(closes)[held + 1] / np.array(closes)[held] - 1)
    close_to(res.bars["gross"], bound)
    close_to(res.bars["gross_equity"].iloc[-1], np.prod(1 + bound))
    # a planted leak: each forecast claims to be made one bar earlier than its information
    leak = preds(list(ok[1:] - 1), list(y[ok[1:], 0]))
    leaked = run_backtest(leak, c, cfg)
    assert leaked.bars["gross_equity"].iloc[-1] < np.prod(1 + bound) - 0.1


# ---------------------------------------------------------------- gaps


def test_prediction_hole_goes_flat_after_hold_bars() -> None:
    closes = [100.0 + i for i in range(10)]
    frame = preds([0, 1, 2, 5, 6], [0.01] * 5)  # no forecasts at bars 3 and 4
    one = run_backtest(frame, candles(closes), spec(hold_bars=1)).bars
    assert list(one["timestamp"]) == [T0 + k * H for k in range(1, 8)]
    close_to(one["position"], [1, 1, 1, 0, 0, 1, 1])
    close_to(one["cost"], [C, 0, 0, C, 0, C, 0])
    assert list(one["signal_time"].isna()) == [False, False, False, True, True, False, False]
    two = run_backtest(frame, candles(closes), spec(hold_bars=2)).bars
    close_to(two["position"], [1, 1, 1, 1, 0, 1, 1, 1])  # last decision held 2 bars: 7, 8
    three = run_backtest(frame, candles(closes), spec(hold_bars=3)).bars
    close_to(three["position"], [1] * 8)  # bar 9 has no successor: the span stops at bar 8


def test_return_across_a_candle_gap_is_not_traded() -> None:
    closes = [100.0, 101.0, 102.0, 103.0, 150.0, 104.0, 105.0, 106.0, 107.0, 108.0]
    c = candles(closes, drop=(4,))  # bar 4 missing: return 3 -> 5 spans the outage
    bars_present = [0, 1, 2, 3, 5, 6, 7, 8]
    res = run_backtest(preds(bars_present, [0.01] * 8), c, spec())
    b = res.bars
    assert list(b["timestamp"]) == [T0 + k * H for k in (1, 2, 3, 5, 6, 7, 8)]
    close_to(b["position"], [1, 1, 0, 0, 1, 1, 1])  # flat across the gap and until re-entry
    close_to(b["asset_return"].iloc[2], math.log(104.0 / 103.0))  # kept, but not earned
    assert b["gross"].iloc[2] == 0.0
    close_to(b["cost"], [C, 0, C, 0, C, 0, 0])
    close_to(b["benchmark_equity"].iloc[-1], 108.0 / 101.0)  # buy and hold sits through it
    assert list(res.trades["exit_time"]) == [T0 + 3 * H, T0 + 9 * H]


# ---------------------------------------------------------------- rules, horizons, annualising


def test_sign_rule() -> None:
    x = [0.002, -0.002, 0.0005, -0.0005, 0.0, np.nan]
    close_to(strategies.sign(x), [1, 0, 1, 0, 0, 0])
    close_to(strategies.sign(x, long_short=True), [1, -1, 1, -1, 0, 0])
    close_to(strategies.sign(x, threshold=0.001), [1, 0, 0, 0, 0, 0])
    close_to(strategies.sign(x, threshold=0.001, long_short=True), [1, -1, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="threshold"):
        strategies.sign(x, threshold=-0.1)


def test_probability_rule() -> None:
    p = [0.6, 0.5, 0.4, 0.56, 0.55, 0.45, 0.3, np.nan]
    close_to(strategies.probability(p), [1, 0, 0, 1, 0, 0, 0, 0])
    close_to(strategies.probability(p, long_short=True), [1, 0, -1, 1, 0, 0, -1, 0])
    with pytest.raises(ValueError, match="lower <= upper"):
        strategies.probability(p, upper=0.4, lower=0.6)


def test_classifier_predictions_trade_p_up() -> None:
    p_up = [0.7, 0.3, 0.6, 0.5, 0.2, 0.9]
    frame = preds(list(range(6)), [1, 0, 1, 0, 0, 1], p_up=p_up)
    res = run_backtest(frame, candles(CLOSES), spec(rule="probability", long_short=True))
    close_to(res.bars["position"], [1, -1, 1, 0, -1, 1])
    with pytest.raises(ValueError, match="rule=probability"):
        run_backtest(frame, candles(CLOSES), spec())
    with pytest.raises(ValueError, match="p_up"):
        run_backtest(preds(list(range(6)), SIGNS), candles(CLOSES), spec(rule="probability"))


def test_default_horizon_is_the_smallest() -> None:
    n = 6
    frame = make_prediction_frame(
        pd.DatetimeIndex([T0 + i * H for i in range(n)]),
        "BTCUSDT",
        0,
        [4, 1],
        np.zeros((n, 2)),
        np.column_stack([np.full(n, -0.01), np.full(n, 0.01)]),  # h=4 says down, h=1 says up
        np.full(n, 100.0),
    )
    close_to(run_backtest(frame, candles(CLOSES), spec()).bars["position"], [1] * 6)
    close_to(run_backtest(frame, candles(CLOSES), spec(horizon=4)).bars["position"], [0] * 6)
    with pytest.raises(ValueError, match="not in the predictions' horizons"):
        run_backtest(frame, candles(CLOSES), spec(horizon=2))


@pytest.mark.parametrize(
    ("step", "ppy"),
    [
        (pd.Timedelta(hours=1), 8760.0),
        (pd.Timedelta(hours=4), 2190.0),
        (pd.Timedelta(days=1), 365.0),
    ],
)
def test_periods_per_year_from_the_bar_length(step: pd.Timedelta, ppy: float) -> None:
    assert periods_per_year_for(step) == ppy
    res = run_backtest(preds(list(range(6)), SIGNS, step=step), candles(CLOSES, step=step), spec())
    assert res.metrics["periods_per_year"] == ppy
    close_to(res.metrics["turnover"], 5 * ppy / 6)
    fixed = run_backtest(
        preds(list(range(6)), SIGNS, step=step),
        candles(CLOSES, step=step),
        spec(periods_per_year=252),
    )
    assert fixed.metrics["periods_per_year"] == 252.0


# ---------------------------------------------------------------- report metrics


def test_report_metrics_on_a_hand_computed_curve() -> None:
    r = [0.1, -0.05, 0.02, -0.1, 0.05]  # equity 1.1, 1.045, 1.0659, 0.95931, 1.0072755
    bh = [0.1, 0.1, -0.5, 0.0, 0.2]  # equity 1.1, 1.21, 0.605, 0.605, 0.726
    pos = [1, 1, 0, -1, 1]  # changes from flat: 1, 0, 1, 1, 2
    cost = [0.001, 0.0, 0.001, 0.001, 0.002]
    m = report.trading_metrics(r, bh, pos, cost, r, periods_per_year=4)
    # mean 0.004; squared deviations sum 0.02532 -> var(ddof=1) 0.00633
    close_to(m["total_return"], 0.0072755)
    close_to(m["annual_return"], 1.0072755 ** (4 / 5) - 1)
    close_to(m["annual_volatility"], math.sqrt(0.00633) * 2)
    close_to(m["sharpe"], 0.004 / math.sqrt(0.00633) * 2)
    close_to(m["sortino"], 0.004 * 2 / 0.05)  # downside sqrt((0.0025 + 0.01) / 5) = 0.05
    close_to(m["max_drawdown"], 0.95931 / 1.1 - 1)  # -0.1279
    close_to(m["win_rate"], 0.6)
    close_to(m["profit_factor"], 0.17 / 0.15)
    assert m["n_trades"] == 5 and m["n_bars"] == 5
    close_to(m["turnover"], 5 * 4 / 5)
    close_to(m["exposure"], 0.8)
    close_to(m["cost_paid"], 0.005)
    close_to(m["bh_total_return"], 0.726 - 1)
    close_to(m["bh_max_drawdown"], -0.5)
    close_to(m["bh_sharpe"], np.mean(bh) / np.std(bh, ddof=1) * 2)
    assert set(m) == set(report.METRIC_KEYS)


def test_report_edge_cases_are_nan_not_inf() -> None:
    assert math.isnan(report.sharpe_ratio([0.0, 0.0, 0.0], 8760))  # never traded
    assert math.isnan(report.sharpe_ratio([0.01], 8760))
    assert math.isnan(report.sortino_ratio([0.01, 0.02], 8760))  # no losing bar
    assert math.isnan(report.profit_factor([0.01, 0.02]))  # no losing trade
    assert math.isnan(report.profit_factor([]))
    assert math.isnan(report.win_rate([]))
    assert report.max_drawdown([0.01, 0.02]) == 0.0
    close_to(report.max_drawdown([-0.1, 0.05]), -0.1)  # the starting capital is a peak
    assert report.annual_return([-1.0, 0.5], 365) == -1.0
    with pytest.raises(ValueError, match="NaN"):
        report.sharpe_ratio([0.1, np.nan], 365)


def test_engine_metrics_agree_with_its_bars() -> None:
    rng = np.random.default_rng(3)
    closes = list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60))))
    res = run_backtest(preds(list(range(55)), list(rng.normal(0, 1, 55))), candles(closes), spec())
    b, m = res.bars, res.metrics
    close_to(m["total_return"], b["equity"].iloc[-1] - 1)
    close_to(m["bh_total_return"], b["benchmark_equity"].iloc[-1] - 1)
    eq = np.concatenate([[1.0], b["equity"].to_numpy()])
    close_to(m["max_drawdown"], np.min(eq / np.maximum.accumulate(eq) - 1))
    close_to(m["cost_paid"], b["cost"].sum())
    assert m["n_trades"] == len(res.trades)
    # the trades account for every bar with a position
    assert res.trades["n_bars"].sum() == (b["position"] != 0).sum()


def test_a_strategy_that_never_trades() -> None:
    res = run_backtest(preds(list(range(6)), [-0.01] * 6), candles(CLOSES), spec())
    m = res.metrics
    assert res.trades.empty and list(res.trades.columns) == list(TRADE_COLUMNS)
    assert m["n_trades"] == 0 and m["total_return"] == 0.0 and m["max_drawdown"] == 0.0
    assert m["exposure"] == 0.0 and m["turnover"] == 0.0 and m["cost_paid"] == 0.0
    assert all(math.isnan(m[key]) for key in ("sharpe", "sortino", "win_rate", "profit_factor"))
    close_to(m["bh_total_return"], CLOSES[7] / CLOSES[1] - 1)


# ---------------------------------------------------------------- plot, spec, config, errors


def test_plot_equity_writes_a_png(tmp_path: Path) -> None:
    res = run_backtest(preds(list(range(6)), SIGNS), candles(CLOSES), spec(long_short=True))
    out = plot_equity(res, tmp_path / "plots" / "equity.png", "toy backtest")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    other = run_backtest(preds(list(range(6)), SIGNS), candles(CLOSES), spec())
    both = plot_equity_comparison({"a": res, "b": other}, tmp_path / "cmp.png", "two")
    assert both.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"rule": "momentum"}, "rule"),
        ({"threshold": -0.1}, "threshold"),
        ({"upper": 0.4, "lower": 0.6}, "lower <= upper"),
        ({"upper": 1.5}, "lower <= upper"),
        ({"fee_bps": -1.0}, "fee_bps"),
        ({"slippage_bps": float("nan")}, "slippage_bps"),
        ({"execution_lag": -1}, "execution_lag"),
        ({"execution_lag": 1.5}, "execution_lag"),
        ({"hold_bars": 0}, "hold_bars"),
        ({"horizon": 0}, "horizon"),
        ({"periods_per_year": 0}, "periods_per_year"),
        ({"long_short": "yes"}, "long_short"),
    ],
)
def test_spec_rejects_bad_values(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        spec(**kw)


def test_config_group_interpolates_the_target_lag() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from cryptoforecast.paths import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["backtest=default", "target.execution_lag=2"])
    built = instantiate(cfg.backtest)
    assert built == BacktestSpec(execution_lag=2)
    assert built.cost_rate == C


def test_bad_inputs_fail_loudly() -> None:
    frame = preds(list(range(6)), SIGNS)
    two = pd.concat([frame, frame.assign(symbol="ETHUSDT")], ignore_index=True)
    with pytest.raises(ValueError, match="one symbol"):
        run_backtest(two, candles(CLOSES), spec())
    with pytest.raises(ValueError, match="repeat timestamp"):
        run_backtest(pd.concat([frame, frame.assign(fold=1)]), candles(CLOSES), spec())
    off = frame.assign(timestamp=frame["timestamp"] + pd.Timedelta(minutes=30))
    with pytest.raises(ValueError, match="off the candles' bar grid"):
        run_backtest(off, candles(CLOSES), spec())
    with pytest.raises(ValueError, match="no candle return"):
        run_backtest(preds([7], [0.01]), candles(CLOSES), spec())
    with pytest.raises(ValueError, match="increasing"):
        run_backtest(frame, candles(CLOSES).iloc[::-1], spec())


# ---------------------------------------------------------------- the cost-aware default rule


def _noisy_candles(n: int, seed: int = 0, vol: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return candles(list(100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, n)))))


def test_near_zero_forecaster_makes_no_trades_under_the_default_rule() -> None:
    # forecasts as small as the (std 1.8e-5 .. 5.1e-4), far below the 30 bps round trip
    rng = np.random.default_rng(1)
    y_pred = list(rng.normal(0.0, 5e-4, 200))
    frame, bars = preds(list(range(100, 300)), y_pred), _noisy_candles(320)
    default = run_backtest(frame, bars, BacktestSpec())
    assert BacktestSpec().rule == "cost" and BacktestSpec().round_trip_cost == pytest.approx(0.003)
    assert default.metrics["n_trades"] == 0 and default.metrics["cost_paid"] == 0.0
    assert (default.bars["position"] == 0.0).all() and default.metrics["total_return"] == 0.0
    both = run_backtest(frame, bars, BacktestSpec(long_short=True))
    assert both.metrics["n_trades"] == 0
    # the plain sign rule trades the same noise (what the default did before)
    plain = run_backtest(frame, bars, BacktestSpec(rule="sign"))
    assert plain.metrics["n_trades"] > 20 and plain.metrics["cost_paid"] > 0.03


def test_cost_rule_trades_only_moves_beyond_the_round_trip() -> None:
    # round trip 2 * (10 + 5) / 1e4 = 0.003; threshold adds to it
    y = [0.0031, 0.0029, -0.0031, -0.0029, 0.01, float("nan")]
    close_to(strategies.cost_aware(y, 0.003), [1, 0, 0, 0, 1, 0])
    close_to(strategies.cost_aware(y, 0.003, long_short=True), [1, 0, -1, 0, 1, 0])
    close_to(strategies.cost_aware(y, 0.003, threshold=0.005), [0, 0, 0, 0, 1, 0])
    res = run_backtest(preds(list(range(6)), y[:5] + [0.0]), candles(CLOSES), BacktestSpec())
    close_to(res.bars["position"], [1, 0, 0, 0, 1, 0])
    cheap = BacktestSpec(fee_bps=0.0, slippage_bps=1.0)  # round trip 2 bps: every move clears
    res = run_backtest(preds(list(range(6)), y[:5] + [0.0]), candles(CLOSES), cheap)
    close_to(res.bars["position"], [1, 1, 0, 0, 1, 0])
    with pytest.raises(ValueError, match="typical_move"):
        BacktestSpec(typical_move=0.0)


def test_classifier_cost_rule_uses_a_typical_move_measured_before_the_test() -> None:
    bars = _noisy_candles(200, seed=2)
    bars_at = list(range(100, 110))
    p_up = [0.9, 0.6, 0.1, 0.5, 0.75, 0.95, 0.3, 0.52, 0.99, 0.05]
    frame = preds(bars_at, [float(p > 0.5) for p in p_up], p_up=p_up)
    close = bars["close"].to_numpy()
    known = np.abs(np.diff(np.log(close[:101])))  # 1-bar moves whose closes are known at bar 100
    move = typical_move(bars, T0 + 100 * H, 1)
    assert move == pytest.approx(known.mean(), rel=1e-12)
    # no look-ahead: the test period's candles do not change it
    wild = bars.copy()
    wild.iloc[101:, 0] = wild["close"].iloc[101:] * np.linspace(1.0, 3.0, 99)
    assert typical_move(wild, T0 + 100 * H, 1) == move
    res = run_backtest(frame, bars, BacktestSpec(long_short=True))
    edge = (2 * np.asarray(p_up) - 1) * move
    expected = np.where(edge > 0.003, 1.0, np.where(edge < -0.003, -1.0, 0.0))
    close_to(res.bars["position"].iloc[:10], expected)
    assert 0 < np.abs(expected).sum() < len(p_up)  # some calls clear the cost, some do not
    fixed = run_backtest(frame, bars, BacktestSpec(typical_move=1e-3))  # edge <= 1e-3 < cost
    assert fixed.metrics["n_trades"] == 0
    with pytest.raises(ValueError, match="typical 1-bar move"):  # too little history before
        run_backtest(preds([5, 6], [1.0, 0.0], p_up=[0.9, 0.1]), bars, BacktestSpec())


def test_classifier_cost_rule_measures_each_fold_before_its_own_start() -> None:
    bars = _noisy_candles(300, seed=4)
    first = preds(list(range(100, 110)), [1.0] * 10, p_up=[0.8] * 10)
    second = preds(list(range(200, 210)), [1.0] * 10, p_up=[0.8] * 10).assign(fold=1)
    frame = pd.concat([first, second], ignore_index=True)
    moves = [typical_move(bars, T0 + b * H, 1) for b in (100, 200)]
    assert moves[0] != moves[1]
    spec_ = BacktestSpec(fee_bps=0.0, slippage_bps=(0.6 * sum(moves) / 2) * 1e4 / 2)
    # p_up 0.8 -> edge 0.6 * move: trades in the fold whose own typical move clears the cost
    res = run_backtest(frame, bars, spec_)
    held = res.bars.set_index("timestamp")["position"]
    in_fold = [held[T0 + (b + 1) * H] for b in (100, 200)]
    assert in_fold == [float(0.6 * m > spec_.round_trip_cost) for m in moves]
