"""Causality of every feature transform: truncation, perturbation and start invariance.

The probes are plain functions returning a list of failures, so the planted-leak tests at the
bottom can assert that they *do* report a leak (the probes are not vacuous).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pytest
import pywt
import talib
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cryptoforecast.features import transforms as T
from cryptoforecast.features.external import FearGreed, OnChain
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.features.sentiment import TextSentiment
from cryptoforecast.features.transforms import Transform, TransformBase
from cryptoforecast.features.wavelet import WaveletFeatures
from cryptoforecast.paths import BUNDLED_DATA_DIR, CONF_DIR

# Bars 16000..22000 of the bundled BTC history: Nov 2019 - Jul 2020, the March 2020 crash included.
REAL_SLICE = slice(16_000, 22_000)
TRUNCATION_RTOL = 1e-9
START_RTOL = 1e-6


def load_real_slice() -> pd.DataFrame:
    path = BUNDLED_DATA_DIR / "binance_spot_BTCUSDT_1h.csv.gz"
    frame = pd.read_csv(
        path, nrows=REAL_SLICE.stop, parse_dates=["timestamp"], index_col="timestamp"
    )
    return frame.iloc[REAL_SLICE].astype(np.float64)


def make_random_candles(n: int, seed: int) -> pd.DataFrame:
    """Seeded geometric random walk with a volatility regime change and a flat zero-volume bar."""
    rng = np.random.default_rng(seed)
    sigma = np.where(np.arange(n) < n // 2, 0.004, 0.015)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, sigma)))
    open_ = np.concatenate([[100.0], close[:-1]])
    wick = np.abs(rng.normal(0.0, sigma, size=(2, n)))
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = rng.lognormal(3.0, 1.0, n)
    flat = n // 3
    open_[flat] = high[flat] = low[flat] = close[flat] = close[flat - 1]
    volume[flat] = 0.0
    index = pd.date_range("2021-03-01", periods=n, freq="h", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return load_real_slice()


@pytest.fixture(scope="module")
def rand() -> pd.DataFrame:
    return make_random_candles(4_000, seed=11)


# --------------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------------


def _mismatch(a: np.ndarray, b: np.ndarray, rtol: float, atol_unit: float) -> np.ndarray:
    """Elementwise: NaN pattern differs or ``|a - b| > rtol * (atol_unit + |b|)``."""
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    with np.errstate(invalid="ignore"):
        far = np.abs(a - b) > rtol * (atol_unit + np.abs(b))
    return (nan_a != nan_b) | (far & ~nan_a & ~nan_b)


def truncation_failures(
    transform: Transform, candles: pd.DataFrame, points: Iterable[int]
) -> list[str]:
    """Value at t from ``candles[:t+1]`` must equal the value from the full history."""
    full = transform(candles).to_numpy()
    failures = []
    for t in points:
        part = transform(candles.iloc[: t + 1]).to_numpy()
        bad = _mismatch(part[-1], full[t], TRUNCATION_RTOL, 0.0)
        if bad.any():
            cols = [transform.names()[i] for i in np.flatnonzero(bad)]
            failures.append(f"t={t}: {cols} prefix={part[-1][bad]} full={full[t][bad]}")
    return failures


def perturbation_failures(transform: Transform, candles: pd.DataFrame, cut: int) -> list[str]:
    """Changing bars after ``cut`` must not change any value at rows ``<= cut``."""
    changed = candles.copy()
    rng = np.random.default_rng(0)
    factor = np.exp(rng.normal(0.0, 0.05, len(candles) - cut - 1))
    for col in ("open", "high", "low", "close", "volume"):
        changed.iloc[cut + 1 :, changed.columns.get_loc(col)] *= factor
    a = transform(candles).to_numpy()[: cut + 1]
    b = transform(changed).to_numpy()[: cut + 1]
    bad = _mismatch(b, a, TRUNCATION_RTOL, 0.0)
    if not bad.any():
        return []
    rows, cols = np.nonzero(bad)
    return [f"rows {sorted(set(rows.tolist()))[:5]} of {sorted(set(cols.tolist()))} changed"]


def start_failures(
    transform: Transform, candles: pd.DataFrame, starts: Iterable[int]
) -> list[str]:
    """From history starting at s, values at t >= s + warmup match the full history.

    Tolerance ``START_RTOL * (1 + |full|)``: the features are scale-free ratios, so ``1 + x``
    is the quantity (e.g. ``close / ema``) whose relative error the warm-up bounds.
    """
    full = transform(candles).to_numpy()
    w = transform.warmup
    failures = []
    for s in starts:
        part = transform(candles.iloc[s:]).to_numpy()
        a, b = part[w:], full[s + w :]
        if np.isnan(a).any():
            failures.append(f"s={s}: NaN after the declared warm-up {w}")
            continue
        bad = _mismatch(a, b, START_RTOL, 1.0)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            failures.append(
                f"s={s}: {bad.sum()} values off, first at t={s + w + i} "
                f"{transform.names()[j]}: {a[i, j]} vs {b[i, j]}"
            )
    return failures


def probe_points(warmup: int, n: int) -> list[int]:
    """Rows to truncate at: inside the warm-up, right after it, and later (never the last row)."""
    points = {0, 1, warmup // 2, warmup - 1, warmup, warmup + 1, warmup + 7, (warmup + n) // 2}
    return sorted(p for p in points if 0 <= p < n - 1)


def start_points(warmup: int, n: int) -> list[int]:
    return [s for s in (1, 37, 500, 1_500) if s + warmup < n - 50]


# --------------------------------------------------------------------------------------------
# Every transform
# --------------------------------------------------------------------------------------------

ALL_TRANSFORMS: list[TransformBase] = [
    T.RSI(),
    T.MACD(),
    T.Momentum(),
    T.Stochastic(),
    T.EMADistance(),
    T.SMADistance(),
    T.LogReturns(),
    T.RealizedVolatility(),
    T.VolumeZScore(),
    T.VolumeZScore(window=24, log_volume=False),
    T.HighLowRange(),
    T.Calendar(),
    T.LagReturns(),
    T.RollingStats(),
    T.MomentumBlock(),
    WaveletFeatures(),
    WaveletFeatures(window=64, wavelet="sym5", level=2),
    # external daily series and text sentiment: clock-time alignment (tests/unit/test_external_*)
    FearGreed(),
    FearGreed(lags_hours=[1, 4, 8, 16], vol_weighted=True, vol_median_window=240),
    OnChain(),
    TextSentiment("sample_sentiment_hourly.csv", lags_hours=[0, 4]),
]
IDS = [repr(t) for t in ALL_TRANSFORMS]


def _all_subclasses(cls: type) -> set[type]:
    subs = set(cls.__subclasses__())
    return subs.union(*(_all_subclasses(s) for s in subs)) if subs else subs


def test_every_transform_class_is_probed() -> None:
    probed = {type(t) for t in ALL_TRANSFORMS}
    library = {
        c for c in _all_subclasses(TransformBase) if c.__module__.startswith("cryptoforecast")
    }
    assert library <= probed, f"add these to ALL_TRANSFORMS: {library - probed}"


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=IDS)
def test_contract(transform: TransformBase, real: pd.DataFrame) -> None:
    out = transform(real)
    assert isinstance(transform, Transform)
    assert list(out.columns) == transform.names()
    assert out.index.equals(real.index)
    assert (out.dtypes == np.float64).all()
    values = out.to_numpy()
    assert not np.isnan(values[transform.warmup :]).any(), "NaN after the warm-up"
    assert not np.isinf(values).any()


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=IDS)
@pytest.mark.parametrize("data", ["real", "rand"])
def test_truncation_invariance(
    transform: Transform, data: str, request: pytest.FixtureRequest
) -> None:
    candles = request.getfixturevalue(data)
    points = probe_points(transform.warmup, len(candles))
    assert truncation_failures(transform, candles, points) == []
    assert perturbation_failures(transform, candles, cut=transform.warmup + 40) == []


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=IDS)
@pytest.mark.parametrize("data", ["real", "rand"])
def test_start_invariance(transform: Transform, data: str, request: pytest.FixtureRequest) -> None:
    candles = request.getfixturevalue(data)
    starts = start_points(transform.warmup, len(candles))
    assert starts, "slice too short for this warm-up"
    assert start_failures(transform, candles, starts) == []


@pytest.fixture(scope="module")
def default_set() -> FeatureSet:
    return instantiate(OmegaConf.load(CONF_DIR / "features" / "default.yaml"))


@pytest.mark.parametrize("data", ["real", "rand"])
def test_default_feature_set_is_causal(
    default_set: FeatureSet, data: str, request: pytest.FixtureRequest
) -> None:
    candles = request.getfixturevalue(data)
    n, w = len(candles), default_set.warmup
    as_transform = _FeatureSetAsTransform(default_set)
    assert truncation_failures(as_transform, candles, probe_points(w, n)) == []
    assert perturbation_failures(as_transform, candles, cut=w + 10) == []
    assert start_failures(as_transform, candles, start_points(w, n)) == []


class _FeatureSetAsTransform:
    def __init__(self, feature_set: FeatureSet) -> None:
        self.feature_set = feature_set

    @property
    def warmup(self) -> int:
        return self.feature_set.warmup

    def names(self) -> list[str]:
        return self.feature_set.names()

    def __call__(self, candles: pd.DataFrame) -> pd.DataFrame:
        return self.feature_set.compute(candles)


# --------------------------------------------------------------------------------------------
# Planted leaks: the probes must catch them
# --------------------------------------------------------------------------------------------


class _CentredMean(TransformBase):
    """LEAKY: centred rolling mean of close, relative to close."""

    def __init__(self) -> None:
        self._names, self._warmup = ["leak_centred"], 4

    def params(self) -> dict[str, int]:
        return {}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        close = candles["close"]
        return {"leak_centred": (close.rolling(9, center=True).mean() / close - 1).to_numpy()}


class _NextReturn(TransformBase):
    """LEAKY: next bar's return via shift(-1)."""

    def __init__(self) -> None:
        self._names, self._warmup = ["leak_next"], 0

    def params(self) -> dict[str, int]:
        return {}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        close = candles["close"]
        return {"leak_next": (close.shift(-1) / close - 1).fillna(0.0).to_numpy()}


class _FullSampleZ(TransformBase):
    """LEAKY: close standardised with full-sample mean and std."""

    def __init__(self) -> None:
        self._names, self._warmup = ["leak_fullz"], 0

    def params(self) -> dict[str, int]:
        return {}

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        close = candles["close"]
        return {"leak_fullz": ((close - close.mean()) / close.std()).to_numpy()}


class _UnderDeclaredEMA(T.EMADistance):
    """Causal, but claims a windowed warm-up for a recursive EMA-200 (start dependence hidden)."""

    @property
    def warmup(self) -> int:
        return max(self.periods) - 1


@pytest.mark.parametrize("leak", [_CentredMean(), _NextReturn(), _FullSampleZ()], ids=repr)
def test_planted_leak_is_caught(leak: TransformBase, real: pd.DataFrame) -> None:
    n = len(real)
    assert truncation_failures(leak, real, probe_points(leak.warmup, n)) != []
    assert perturbation_failures(leak, real, cut=100) != []
    # the FeatureSet probe catches it too, hidden among honest transforms
    leaky_set = FeatureSet([T.LogReturns(), leak, T.Calendar()], lookback=8)
    wrapped = _FeatureSetAsTransform(leaky_set)
    assert truncation_failures(wrapped, real, probe_points(leaky_set.warmup, n)) != []


def test_under_declared_warmup_is_caught(real: pd.DataFrame) -> None:
    honest, liar = T.EMADistance([200]), _UnderDeclaredEMA([200])
    assert truncation_failures(liar, real, probe_points(liar.warmup, len(real))) == []
    assert start_failures(liar, real, [1, 500]) != []
    assert start_failures(honest, real, [1, 500]) == []


# --------------------------------------------------------------------------------------------
# Known values
# --------------------------------------------------------------------------------------------


def test_warmup_formulas() -> None:
    assert T.decay_bars(1 / 200) == math.ceil(math.log(1e-6) / math.log(1 - 1 / 200)) == 2757
    assert T.RSI([200]).warmup == 200 + 2757
    assert T.RSI().warmup == 2957
    assert T.EMADistance([10]).warmup == 9 + math.ceil(math.log(1e-6) / math.log(1 - 2 / 11))
    assert T.SMADistance([200]).warmup == 199
    assert T.Stochastic().warmup == 17
    assert T.LagReturns(24).warmup == 25
    assert T.Calendar().warmup == T.HighLowRange().warmup == 0
    assert WaveletFeatures(window=128).warmup == 127


def test_ema_distance_matches_manual_recursion(rand: pd.DataFrame) -> None:
    p, close = 30, rand["close"].to_numpy()
    ema = np.full(len(close), np.nan)
    ema[p - 1] = close[:p].mean()  # TA-Lib seeds with the SMA of the first p closes
    for t in range(p, len(close)):
        ema[t] = ema[t - 1] + 2 / (p + 1) * (close[t] - ema[t - 1])
    got = T.EMADistance([p])(rand)["ema_dist_30"].to_numpy()
    np.testing.assert_allclose(
        got[p - 1 :], close[p - 1 :] / ema[p - 1 :] - 1, rtol=1e-9, atol=1e-12
    )
    assert np.isnan(got[: p - 1]).all()


def test_rsi_matches_wilder(rand: pd.DataFrame) -> None:
    p, close = 14, rand["close"].to_numpy()
    diff = np.diff(close)
    gain, loss = diff[:p].clip(min=0).mean(), (-diff[:p]).clip(min=0).mean()
    for d in diff[p:500]:
        gain = (gain * (p - 1) + max(d, 0.0)) / p
        loss = (loss * (p - 1) + max(-d, 0.0)) / p
    got = T.RSI([p])(rand)["rsi_14"].iloc[500]
    assert got == pytest.approx(gain / (gain + loss), rel=1e-9)


def test_ta_lib_wrappers_scale(real: pd.DataFrame) -> None:
    close = real["close"].to_numpy()
    macd = T.MACD()(real)
    line, signal, hist = talib.MACD(close, 12, 26, 9)
    np.testing.assert_allclose(macd["macd_hist_12_26_9"], hist / close)
    np.testing.assert_allclose(macd["macd_signal_12_26_9"], signal / close)
    np.testing.assert_allclose(
        T.Momentum([30])(real)["mom_30"].iloc[100], close[100] / close[70] - 1
    )
    stoch = T.Stochastic()(real)
    k, d = talib.STOCH(real["high"].to_numpy(), real["low"].to_numpy(), close, 14, 3, 0, 3, 0)
    np.testing.assert_allclose(stoch["stoch_d_14_3_3"], d / 100)
    assert stoch.iloc[17:].to_numpy().min() >= 0 and stoch.iloc[17:].to_numpy().max() <= 1


def test_returns_lags_and_volatility(real: pd.DataFrame) -> None:
    close = real["close"].to_numpy()
    r = np.diff(np.log(close))  # r[i] is the return into bar i + 1
    t = 300
    assert T.LogReturns([4])(real)["logret_4"].iloc[t] == pytest.approx(
        math.log(close[t] / close[t - 4])
    )
    assert T.LagReturns(3)(real)["ret_lag_3"].iloc[t] == pytest.approx(r[t - 4])
    rvol = T.RealizedVolatility([24])(real)["rvol_24"].iloc[t]
    assert rvol == pytest.approx(np.sqrt(np.mean(r[t - 24 : t] ** 2)), rel=1e-9)
    stats = T.RollingStats([24])(real).iloc[t]
    window = r[t - 24 : t]
    assert stats["roll_mean_24"] == pytest.approx(window.mean(), rel=1e-9)
    assert stats["roll_std_24"] == pytest.approx(window.std(ddof=1), rel=1e-9)
    assert stats["roll_max_24"] == window.max()
    mom = T.MomentumBlock([48])(real).iloc[t]
    assert mom["mom_radj_48"] == pytest.approx(
        math.log(close[t] / close[t - 48]) / np.sqrt(np.sum(r[t - 48 : t] ** 2)), rel=1e-9
    )
    assert T.HighLowRange()(real)["hl_range"].iloc[t] == pytest.approx(
        math.log(real["high"].iloc[t] / real["low"].iloc[t])
    )


def test_volume_zscore_and_flat_window() -> None:
    candles = make_random_candles(60, seed=3)
    x = np.log1p(candles["volume"].to_numpy())
    z = T.VolumeZScore(window=20)(candles)["volume_z_20"]
    window = x[40 - 19 : 41]
    assert z.iloc[40] == pytest.approx((x[40] - window.mean()) / window.std(), rel=1e-9)
    candles["volume"] = 5.0
    assert (T.VolumeZScore(window=20)(candles)["volume_z_20"].iloc[19:] == 0.0).all()


def test_calendar_known_timestamps() -> None:
    index = pd.DatetimeIndex(
        ["2024-01-01 06:00", "2024-01-06 18:00", "2024-01-07 00:00"], tz="UTC", name="timestamp"
    )
    candles = pd.DataFrame(
        {c: 1.0 for c in ("open", "high", "low", "close", "volume")}, index=index
    )
    cal = T.Calendar()(candles)
    # Monday 06:00
    np.testing.assert_allclose(cal.iloc[0], [1.0, 0.0, 0.0, 1.0], atol=1e-12)
    # Saturday (dow 5) 18:00
    sat = 2 * np.pi * 5 / 7
    np.testing.assert_allclose(cal.iloc[1], [-1.0, 0.0, np.sin(sat), np.cos(sat)], atol=1e-12)
    # a non-UTC index is read in UTC: 2024-01-07 01:00+01:00 is Sunday 00:00 UTC
    shifted = candles.tz_convert("Europe/Paris")
    np.testing.assert_allclose(T.Calendar()(shifted).to_numpy(), cal.to_numpy())


def test_wavelet_constant_series_has_no_detail_energy() -> None:
    candles = make_random_candles(300, seed=5)
    candles[["open", "high", "low", "close"]] = 42_000.0
    out = WaveletFeatures()(candles).iloc[127:]
    assert (out.to_numpy() == 0.0).all()


def test_wavelet_matches_single_window_reference(real: pd.DataFrame) -> None:
    out = WaveletFeatures(window=128)(real)
    log_close = np.log(real["close"].to_numpy())
    for t in (127, 1_000, 4_321):
        x = log_close[t - 127 : t + 1] - log_close[t]
        coeffs = pywt.wavedec(x, "db4", mode="symmetric", level=3)
        energy = np.array([np.sum(c**2) for c in coeffs])
        sigma = np.median(np.abs(coeffs[-1])) / 0.6745
        thr = sigma * np.sqrt(2 * np.log(128))
        den = [coeffs[0]] + [pywt.threshold(c, thr, mode="soft") for c in coeffs[1:]]
        ref = [pywt.waverec(den, "db4", mode="symmetric")[127], *(energy / energy.sum())]
        np.testing.assert_allclose(out.iloc[t].to_numpy(), ref, rtol=1e-9, atol=1e-15)
        assert out.iloc[t, 1:].sum() == pytest.approx(1.0)
