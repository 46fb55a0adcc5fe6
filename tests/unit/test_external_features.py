"""Fear & Greed and on-chain transforms: no value is visible before its publication time.

Candle truncation and perturbation (test_features_causal.py) cannot see look-ahead in an external
series: a transform that reads day D's value at D 00:00 is still a function of the past *candles*.
So the probes here work in the external data's time: the bar whose close is just before a value's
publication must still show the previous value, and editing day D in the file must not change any
row before D is published. A planted leaky alignment shows the probes are not vacuous.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.data.external import load_daily_series, publication_times
from cryptoforecast.features.external import FearGreed, OnChain, volatility_weight
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.features.transforms import LogReturns, TransformBase
from cryptoforecast.paths import BUNDLED_DATA_DIR
from tests.unit.test_features_causal import (
    make_random_candles,
    perturbation_failures,
    probe_points,
    start_failures,
    start_points,
    truncation_failures,
)

FG_FILE = BUNDLED_DATA_DIR / "fear_greed_index_daily.csv"
ONCHAIN_FILE = BUNDLED_DATA_DIR / "btc_onchain_daily.csv"
# Probe days: every one present in the file together with the day before.
PROBE_DAYS = ["2024-01-10", "2024-01-11", "2024-01-20", "2024-02-03"]


def candles_at(start: str, n: int, seed: int = 7) -> pd.DataFrame:
    """Seeded random-walk hourly candles starting at ``start`` (UTC)."""
    candles = make_random_candles(n, seed=seed)
    candles.index = pd.date_range(start, periods=n, freq="h", tz="UTC", name="timestamp")
    return candles


def real_candles(start_row: int, stop_row: int) -> pd.DataFrame:
    path = BUNDLED_DATA_DIR / "binance_spot_BTCUSDT_1h.csv.gz"
    frame = pd.read_csv(path, nrows=stop_row, parse_dates=["timestamp"], index_col="timestamp")
    return frame.iloc[start_row:].astype(np.float64)


class _LeakyFearGreed(FearGreed):
    """LEAKY: day D's value is visible from D 00:00 (the day's start, not its publication)."""

    def _align(self, column: str, candles: pd.DataFrame, lag_hours: float) -> np.ndarray:
        series = self._series.values[column].dropna()
        start = pd.DatetimeIndex(candles.index) - pd.Timedelta(hours=lag_hours)
        pos = np.searchsorted(series.index.asi8, start.as_unit("ns").asi8, side="right") - 1
        out = series.to_numpy()[np.maximum(pos, 0)]
        out[pos < 0] = np.nan
        return out


def publication_failures(
    transform: FearGreed, candles: pd.DataFrame, days: Sequence[str]
) -> list[str]:
    """At the bar closing 1 h before day D is published ``fg`` is day D-1's value; then D's."""
    raw = load_daily_series(transform.path or FG_FILE, [transform.column]).values[transform.column]
    fg = transform(candles)["fg"]
    step = candles.index[1] - candles.index[0]
    failures = []
    for day in pd.DatetimeIndex(days, tz="UTC"):
        pub = publication_times(pd.DatetimeIndex([day]), transform.delay_hours)[0]
        before, at = pub - pd.Timedelta(hours=1) - step, pub - step  # bar open times
        want_before, want_at = raw[day - pd.Timedelta(days=1)] / 100, raw[day] / 100
        if fg[before] != want_before:
            failures.append(f"{day.date()}: bar {before} shows {fg[before]}, want {want_before}")
        if fg[at] != want_at:
            failures.append(f"{day.date()}: bar {at} shows {fg[at]}, want {want_at}")
    return failures


@pytest.fixture(scope="module")
def jan2024() -> pd.DataFrame:
    return candles_at("2024-01-01", 24 * 40)


@pytest.mark.parametrize("delay", [0.0, 1.0, 5.0])
def test_value_appears_exactly_at_publication(jan2024: pd.DataFrame, delay: float) -> None:
    raw = load_daily_series("fear_greed", ["value"]).values["value"]
    for day in PROBE_DAYS:  # the probe needs distinct consecutive values to be meaningful
        prev = pd.Timestamp(day, tz="UTC") - pd.Timedelta(days=1)
        assert raw[prev] != raw[pd.Timestamp(day, tz="UTC")]
    assert publication_failures(FearGreed(delay_hours=delay), jan2024, PROBE_DAYS) == []


def test_planted_leaky_alignment_is_caught(jan2024: pd.DataFrame) -> None:
    leaky = _LeakyFearGreed(delay_hours=0.0)
    failures = publication_failures(leaky, jan2024, PROBE_DAYS)
    # the bar closing 1 h before publication already shows day D (at publication both agree)
    assert len(failures) == len(PROBE_DAYS) and all("22:00" in f for f in failures)
    # ... while the candle-time probes are blind to it (hence this file)
    assert truncation_failures(leaky, jan2024, [5, 100, 500]) == []


def _edited_copy(src: Path, dst: Path, day: str, column: str, value: float) -> Path:
    frame = pd.read_csv(src, dtype=str, keep_default_na=False)
    row = frame.index[frame["date"] == day][0]
    frame.loc[row, column] = repr(value)
    frame.to_csv(dst, index=False)
    return dst


def _first_changed_close(a: pd.DataFrame, b: pd.DataFrame, step: pd.Timedelta) -> pd.Timestamp:
    same = np.isclose(a.to_numpy(), b.to_numpy(), rtol=0, atol=0, equal_nan=True)
    changed = ~same.all(axis=1)
    assert changed.any(), "the edit changed nothing: the probe would be vacuous"
    return a.index[np.flatnonzero(changed)[0]] + step


@pytest.mark.parametrize("delay", [0.0, 3.0])
def test_editing_day_d_changes_nothing_before_its_publication(
    tmp_path: Path, jan2024: pd.DataFrame, delay: float
) -> None:
    day, step = "2024-01-20", pd.Timedelta(hours=1)
    pub = pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1, hours=delay)
    edited = _edited_copy(FG_FILE, tmp_path / "fg.csv", day, "value", 99.0)
    kw = {"delay_hours": delay, "lags_hours": [0, 4], "vol_weighted": True}
    kw["vol_median_window"] = 48
    a = FearGreed(path=str(FG_FILE), **kw)(jan2024)
    b = FearGreed(path=str(edited), **kw)(jan2024)
    assert _first_changed_close(a, b, step) == pub
    # the lagged columns see it exactly 4 h later
    lagged = [c for c in a.columns if c.endswith("_lag4")]
    assert _first_changed_close(a[lagged], b[lagged], step) == pub + pd.Timedelta(hours=4)
    edited = _edited_copy(ONCHAIN_FILE, tmp_path / "oc.csv", day, "realized_price", 1234.5)
    a = OnChain(delay_hours=delay)(jan2024)
    b = OnChain(delay_hours=delay, path=str(edited))(jan2024)
    assert _first_changed_close(a, b, step) == pub


def test_leaky_alignment_fails_the_edit_probe(tmp_path: Path, jan2024: pd.DataFrame) -> None:
    day = "2024-01-20"
    edited = _edited_copy(FG_FILE, tmp_path / "fg.csv", day, "value", 99.0)
    a = _LeakyFearGreed(delay_hours=0.0, path=str(FG_FILE))(jan2024)
    b = _LeakyFearGreed(delay_hours=0.0, path=str(edited))(jan2024)
    first = _first_changed_close(a, b, pd.Timedelta(hours=1))
    assert first < pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def real_2018() -> pd.DataFrame:
    """Bundled BTC Feb-Jul 2018: includes the 3 missing Fear & Greed days (2018-04-14..16)."""
    return real_candles(1_500, 5_000)


@pytest.mark.parametrize(
    "transform",
    [
        FearGreed(lags_hours=[0, 1, 4, 8, 16], vol_weighted=True),
        FearGreed(delay_hours=6.0, change_24h=False, max_age_hours=30.0),
        OnChain(),
        OnChain(metrics=["realized_price"], delay_hours=0.0),
    ],
    ids=repr,
)
def test_truncation_and_start_invariance_on_real_candles(
    transform: TransformBase, real_2018: pd.DataFrame
) -> None:
    n, w = len(real_2018), transform.warmup
    points = sorted({*probe_points(w, n), 1_700, 1_750, 1_800})  # around the 2018-04 gap
    assert truncation_failures(transform, real_2018, points) == []
    assert perturbation_failures(transform, real_2018, cut=w + 40) == []
    starts = [s for s in start_points(w, n) if s + w < n - 50]
    assert starts and start_failures(_NoNaN(transform), real_2018, starts) == []


class _NoNaN:
    """The start probe treats NaN after the warm-up as a failure; stale gaps are NaN by design."""

    def __init__(self, transform: TransformBase) -> None:
        self.transform = transform
        self.warmup = transform.warmup

    def names(self) -> list[str]:
        return self.transform.names()

    def __call__(self, candles: pd.DataFrame) -> pd.DataFrame:
        return self.transform(candles).fillna(-999.0)


def test_stale_gap_gives_nan_then_recovers(real_2018: pd.DataFrame) -> None:
    fg = FearGreed(delay_hours=1.0)(real_2018)["fg"]
    # 2018-04-13 is published 04-14 01:00 and stale 72 h later (bars closing after 04-17 01:00);
    # 2018-04-17 is published 04-18 01:00 (the bar opening 04-18 00:00)
    assert fg["2018-04-17 00:00"] == fg["2018-04-14 00:00"]  # age exactly 72 h: still usable
    assert fg["2018-04-17 01:00":"2018-04-17 23:00"].isna().all()
    assert fg["2018-04-16 23:00"] == fg["2018-04-14 00:00"]  # carried, not interpolated
    assert not np.isnan(fg["2018-04-18 00:00"])
    assert fg.loc["2018-03-01":"2018-07-01"].isna().sum() == 23


def test_warmup_is_the_volatility_window(jan2024: pd.DataFrame) -> None:
    assert FearGreed().warmup == 0 and OnChain().warmup == 0
    fg = FearGreed(vol_weighted=True, vol_window=24, vol_median_window=100)
    assert fg.warmup == 123
    out = fg(jan2024)["fg_volw"]
    assert out.iloc[:123].isna().all() and out.iloc[123:].notna().all()


def test_volatility_weight_formula() -> None:
    candles = make_random_candles(400, seed=3)  # volatility jumps at row 200
    close = candles["close"].to_numpy()
    w = volatility_weight(close, 24, 100, 3.0)
    r = np.diff(np.log(close))
    t = 350
    rv = [np.sqrt(np.mean(r[s - 24 : s] ** 2)) for s in range(t - 99, t + 1)]
    assert w[t] == pytest.approx(min(rv[-1] / np.median(rv), 3.0), rel=1e-9)
    assert w[250] > 1.0 > w[190]  # calm before the jump, loud after it
    assert np.nanmax(w) <= 3.0 and np.nanmin(w) >= 0.0


def test_fear_greed_columns_and_values(jan2024: pd.DataFrame) -> None:
    fg = FearGreed(lags_hours=[0, 4], vol_weighted=True, vol_median_window=48)
    assert fg.names() == ["fg", "fg_chg24", "fg_volw", "fg_lag4", "fg_chg24_lag4", "fg_volw_lag4"]
    out = fg(jan2024)
    raw = load_daily_series("fear_greed", ["value"]).values["value"] / 100
    # bar 2024-01-15 12:00 closes 13:00: day 14 is the newest published (01:00 on the 15th)
    row = out.loc["2024-01-15 12:00"]
    day14, day13 = raw[pd.Timestamp("2024-01-14", tz="UTC")], raw["2024-01-13"]
    assert row["fg"] == day14 and row["fg_chg24"] == pytest.approx(day14 - day13)
    weight = volatility_weight(jan2024["close"].to_numpy(), 24, 48, 3.0)
    i = jan2024.index.get_loc(pd.Timestamp("2024-01-15 12:00", tz="UTC"))
    assert row["fg_volw"] == pytest.approx((day14 - 0.5) * weight[i])
    assert out["fg"].between(0, 1).all()


def test_onchain_realized_price_is_scale_free(jan2024: pd.DataFrame) -> None:
    out = OnChain()(jan2024)
    assert out.columns.tolist() == ["onchain_mvrv", "onchain_nupl", "onchain_rp_dist"]
    raw = load_daily_series("btc_onchain", ["realized_price", "mvrv"]).values
    t = pd.Timestamp("2024-01-15 12:00", tz="UTC")  # closes 13:00: day 14 published at 04:00
    rp = raw.loc["2024-01-14", "realized_price"]
    assert out.loc[t, "onchain_rp_dist"] == pytest.approx(jan2024.loc[t, "close"] / rp - 1)
    assert out.loc[t, "onchain_mvrv"] == raw.loc["2024-01-14", "mvrv"]
    t3 = pd.Timestamp("2024-01-15 02:00", tz="UTC")  # closes 03:00, before 04:00
    assert out.loc[t3, "onchain_mvrv"] == raw.loc["2024-01-13", "mvrv"]


def test_spec_round_trip_rebuilds_the_same_features(jan2024: pd.DataFrame) -> None:
    fs = FeatureSet(
        {
            "log_returns": LogReturns(),
            "fear_greed": FearGreed(lags_hours=[0, 8], vol_weighted=True),
            "onchain": OnChain(metrics=["mvrv", "realized_price"]),
        },
        lookback=8,
    )
    spec = json.loads(json.dumps(fs.to_spec()))
    rebuilt = FeatureSet.from_spec(spec)
    pd.testing.assert_frame_equal(rebuilt.compute(jan2024), fs.compute(jan2024))
    assert fs.warmup == 743


def test_bad_inputs_raise_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "fg.csv"
    bad.write_text("date,value\n2024-01-01,50\n2024-01-02,150\n")
    with pytest.raises(ValueError, match=r"must lie in \[0, 100\]; date 2024-01-02 has 150"):
        FearGreed(path=str(bad))
    with pytest.raises(ValueError, match="lags_hours"):
        FearGreed(lags_hours=[4, 4])
    with pytest.raises(ValueError, match="metrics"):
        OnChain(metrics=["sopr"])
    with pytest.raises(ValueError, match="unknown interval"):
        OnChain(interval="7h")


def test_uncovered_span_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    candles = candles_at("2026-02-20", 24 * 12)
    fg = FearGreed()
    with caplog.at_level(logging.WARNING):
        out = fg(candles)
        fg(candles)
    messages = [r.getMessage() for r in caplog.records if "ends on 2026-02-24" in r.getMessage()]
    assert len(messages) == 1 and str(FG_FILE) in messages[0]
    # last value 2026-02-24 published 02-25 01:00, stale for bars closing after 02-28 01:00
    assert out["fg"]["2026-02-28 00:00"] == out["fg"]["2026-02-26 00:00"]
    assert out["fg"]["2026-02-28 01:00":].isna().all()
