"""Leakage audits: windows, purge between splits, scaler fit, whole-path truncation.

Each audit is also run against a planted leak to prove it can fail.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.data.audit import audit_purge, audit_windows
from cryptoforecast.data.datamodule import ForecastDataModule, SampleSet, build_samples, train_rows
from cryptoforecast.data.loader import Candles, DataSpec, load_candles
from cryptoforecast.data.quality import QualityReport
from cryptoforecast.data.splits import Fold, HoldoutSplit, WalkForwardSplit
from cryptoforecast.data.synthetic import make_ohlcv
from cryptoforecast.data.targets import TargetSpec
from cryptoforecast.data.windows import WindowIndex
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.features.transforms import RSI, EMADistance, LogReturns, RealizedVolatility


def _features(lookback: int = 16) -> FeatureSet:
    return FeatureSet(
        [
            LogReturns(lags=(1, 4)),
            RSI(periods=(14,)),
            EMADistance(periods=(10,)),
            RealizedVolatility(windows=(12,)),
        ],
        lookback=lookback,
    )


def _candles(frame: pd.DataFrame, sample_start: pd.Timestamp | None = None) -> Candles:
    return Candles(
        frame=frame,
        report=QualityReport(source="syn", interval="1h"),
        sample_start=frame.index[0] if sample_start is None else sample_start,
        spec=DataSpec(source="file", path="syn.csv", symbol="SYN", days=None),
    )


@pytest.fixture(scope="module")
def gappy_real() -> SampleSet:
    """Real BTC bars from 2018 (outages included: 7 gaps in H1 2018), horizon 4, lag 1."""
    spec = DataSpec(days=None, start="2018-01-01", end="2018-08-01")
    return build_samples(load_candles(spec), _features(), TargetSpec(horizon=[1, 4]))


def test_window_audit_passes_on_real_data_with_gaps(gappy_real: SampleSet) -> None:
    s = gappy_real
    assert len(s.windows) > 4000
    assert audit_windows(s) == []
    # the outage of 2018-02-08 (33 h) really removes samples: none ends within L-1 bars after it
    after = pd.Timestamp("2018-02-09 10:00", tz="UTC")  # first bar after the gap
    ends_after = s.windows.timestamps[s.windows.timestamps >= after]
    assert ends_after[0] >= after + (s.windows.lookback - 1) * s.step


def test_window_audit_catches_planted_leaks(gappy_real: SampleSet) -> None:
    s = gappy_real
    # 1) windows shifted one bar into the future: the last input bar is t+1
    shifted = dataclasses.replace(
        s, windows=WindowIndex(s.windows.ends + 1, s.windows.timestamps, s.windows.lookback)
    )
    assert any("last input bar" in v for v in audit_windows(shifted))
    # 2) a window allowed across the 2018-02-08 gap
    gap_row = int(np.flatnonzero(s.index == pd.Timestamp("2018-02-09 10:00", tz="UTC"))[0])
    ends = np.sort(np.append(s.windows.ends, gap_row + 2))
    planted = dataclasses.replace(s, windows=WindowIndex(ends, s.index[ends], s.windows.lookback))
    assert any("spans a gap" in v for v in audit_windows(planted))


@pytest.mark.parametrize(
    "split",
    [
        HoldoutSplit(),
        HoldoutSplit(val_start="2018-05-01", test_start="2018-06-15"),
        WalkForwardSplit(n_folds=3, val_bars=300, test_bars=300, train_bars=1000),
        WalkForwardSplit(n_folds=2, val_bars=200, test_bars=200, mode="rolling", train_bars=800),
        WalkForwardSplit(val_bars=300, test_bars=500, train_bars=1000, test_start="2018-06-01"),
    ],
)
def test_purge_audit_passes_for_every_split(gappy_real: SampleSet, split: object) -> None:
    s = gappy_real
    folds = split.folds(s.windows.timestamps, s.step, s.target.reach)  # type: ignore[attr-defined]
    for fold in folds:
        assert audit_purge(s, fold) == []
        assert len(fold.train) and len(fold.val) and len(fold.test)


def test_purge_audit_catches_an_unpurged_split(gappy_real: SampleSet) -> None:
    s = gappy_real
    fold = HoldoutSplit().folds(s.windows.timestamps, s.step, s.target.reach)[0]
    # plant: give train the samples right up to the first validation sample
    unpurged = np.arange(0, fold.val[0])
    assert len(unpurged) > len(fold.train)  # the purge really removed samples
    leaky = Fold(0, unpurged, fold.val, fold.test)
    assert any("label ends" in v for v in audit_purge(s, leaky))


def test_walk_forward_tiles_the_end_and_expands() -> None:
    ts = pd.date_range("2024-01-01", periods=3000, freq="h", tz="UTC")
    folds = WalkForwardSplit(n_folds=3, val_bars=200, test_bars=300, train_bars=600).folds(
        ts, pd.Timedelta(hours=1), reach=2
    )
    assert folds[-1].test[-1] == 2999  # the last fold ends on the last sample
    for a, b in zip(folds, folds[1:], strict=False):
        assert a.test[-1] < b.test[0] and b.test[0] - a.test[-1] <= 3  # tiles, purge apart
        assert a.train[0] == b.train[0] == 0 and len(b.train) > len(a.train)  # expanding


@pytest.mark.parametrize("mode", ["expanding", "rolling"])
def test_walk_forward_test_start_tiles_from_the_date_and_no_label_crosses(mode: str) -> None:
    ts = pd.date_range("2024-01-01", periods=3000, freq="h", tz="UTC")
    bar, reach = pd.Timedelta(hours=1), 5
    split = WalkForwardSplit(
        val_bars=200, test_bars=300, train_bars=600, mode=mode, test_start="2024-03-24 08:00"
    )
    folds = split.folds(ts, bar, reach=reach)
    start = int(ts.get_loc(pd.Timestamp("2024-03-24 08:00", tz="UTC")))
    assert start == 2000 and len(folds) == 4  # 2000, 2300, 2600, 2900 (100 samples) -> end
    assert folds[0].test[0] == start and folds[-1].test[-1] == 2999
    for k, fold in enumerate(folds):
        lo = start + 300 * k
        assert fold.test[0] == lo and fold.describe(ts)["test_from"] == str(ts[lo])
        # every train and val label ends before the next segment starts, by exactly the purge
        assert ts[fold.train[-1]] + reach * bar < ts[fold.val[0]]
        assert ts[fold.val[-1]] + reach * bar < ts[fold.test[0]]
        assert ts[fold.val[-1]] + (reach + 1) * bar == ts[fold.test[0]]  # nothing over-purged
    for a, b in zip(folds, folds[1:], strict=False):
        assert b.test[0] == a.test[-1] + 1  # test segments tile without gap or overlap
    # one bar later moves every boundary by one bar, and the purge moves with it
    later = dataclasses.replace(split, test_start="2024-03-24 09:00").folds(ts, bar, reach=reach)
    assert [f.test[0] for f in later] == [f.test[0] + 1 for f in folds[: len(later)]]
    assert all(ts[f.val[-1]] + reach * bar < ts[f.test[0]] for f in later)
    # a date off the bar grid starts at the next bar
    off = dataclasses.replace(split, test_start="2024-03-24 07:30").folds(ts, bar, reach=reach)
    assert off[0].test[0] == start
    with pytest.raises(Exception, match="split.test_start=2025-01-01 lies outside the samples"):
        dataclasses.replace(split, test_start="2025-01-01").folds(ts, bar, reach=reach)
    with pytest.raises(Exception, match="split.test_start='soon' is not a date"):
        dataclasses.replace(split, test_start="soon").folds(ts, bar, reach=reach)


def test_split_too_small_names_the_numbers() -> None:
    ts = pd.date_range("2024-01-01", periods=500, freq="h", tz="UTC")
    with pytest.raises(Exception, match=r"fold 0 has too few samples .* from 500 samples"):
        WalkForwardSplit(n_folds=4, val_bars=100, test_bars=100, train_bars=400).folds(
            ts, pd.Timedelta(hours=1), reach=2
        )


def test_scaler_and_target_scale_fit_on_training_rows_only() -> None:
    frame = make_ohlcv(900, seed=11)
    s = build_samples(_candles(frame), _features(), TargetSpec())
    fold = HoldoutSplit().folds(s.windows.timestamps, s.step, s.target.reach)[0]

    def fitted(samples: SampleSet) -> tuple[dict[str, object], list[float]]:
        dm = ForecastDataModule(samples, fold)
        dm.setup("fit")
        return dm.scaler.to_dict(), dm.target_scale.tolist()

    base = fitted(s)
    rows = train_rows(s, fold.train)
    later = np.arange(rows[-1] + 1, len(s.features))
    mutated = dataclasses.replace(s, features=s.features.copy(), targets=s.targets.copy())
    mutated.features[later] *= 100.0  # val/test feature rows
    mutated.targets[later] *= 100.0  # val/test labels
    assert fitted(mutated) == base
    # and the probe is not vacuous: a change inside the training rows moves the fit
    mutated.features[rows[len(rows) // 2]] += 1000.0
    assert fitted(mutated)[0] != base[0]


def test_whole_data_path_is_truncation_invariant() -> None:
    """Samples, features and defined labels from history up to k equal the full-history ones."""
    frame = make_ohlcv(700, seed=5)
    full = build_samples(_candles(frame), _features(), TargetSpec(horizon=[1, 4]))
    for k in (400, 555, 699):
        part = build_samples(_candles(frame.iloc[:k]), _features(), TargetSpec(horizon=[1, 4]))
        np.testing.assert_allclose(part.features, full.features[:k], rtol=1e-9, equal_nan=True)
        common = np.isin(full.windows.ends, part.windows.ends)
        # every sample available at k is one the full history has, at the same bar
        assert set(part.windows.ends) <= set(full.windows.ends)
        # samples whose labels are complete by k exist in both
        complete = full.windows.ends[full.windows.ends + full.target.reach < k]
        assert set(complete) <= set(part.windows.ends)
        np.testing.assert_array_equal(part.targets[complete], full.targets[complete])
        assert common.sum() == len(part.windows.ends)
