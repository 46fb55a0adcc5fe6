"""Multi-asset samples: stacking per-symbol samples, time-grid splits, audits, model inputs.

Two synthetic symbols that do not share a clock exactly: ETHUSDT starts 100 bars later and has a
10-bar outage of its own, so any mix-up of rows, offsets or time boundaries shows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.backtest.engine import TRADE_COLUMNS, BacktestResult
from cryptoforecast.backtest.portfolio import equal_weight_portfolio
from cryptoforecast.data.audit import audit_purge, audit_time_alignment, audit_windows
from cryptoforecast.data.datamodule import (
    ForecastDataModule,
    SampleSet,
    build_samples,
    stack_samples,
    train_rows,
)
from cryptoforecast.data.loader import Candles, DataSpec
from cryptoforecast.data.quality import QualityReport
from cryptoforecast.data.schema import DataError
from cryptoforecast.data.splits import Fold, HoldoutSplit, WalkForwardSplit, split_on_time_grid
from cryptoforecast.data.synthetic import make_ohlcv
from cryptoforecast.data.targets import TargetSpec
from cryptoforecast.data.windows import WindowIndex
from cryptoforecast.evaluation.predictions import make_prediction_frame, score, score_by_symbol
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.features.transforms import LogReturns, RealizedVolatility
from cryptoforecast.models.baselines import NaiveForecaster
from cryptoforecast.models.lightgbm_forecaster import LightGBMForecaster

SYMBOLS = ("BTCUSDT", "ETHUSDT")
LOOKBACK = 16


def _candles(frame: pd.DataFrame, symbol: str) -> Candles:
    return Candles(
        frame=frame,
        report=QualityReport(source="syn", interval="1h"),
        sample_start=frame.index[0],
        spec=DataSpec(source="file", path=f"{symbol}.csv", symbol=symbol, days=None),
    )


@pytest.fixture(scope="module")
def parts() -> list[SampleSet]:
    features = FeatureSet(
        [LogReturns(lags=(1, 4)), RealizedVolatility(windows=(12,))], lookback=LOOKBACK
    )
    btc = make_ohlcv(900, seed=1, price=30_000.0)
    eth = make_ohlcv(900, seed=2, price=2_000.0).iloc[100:]
    eth = eth.drop(eth.index[400:410])  # an outage only ETH has
    target = TargetSpec(horizon=[1, 4])
    return [
        build_samples(_candles(frame, sym), features, target)
        for frame, sym in ((btc, "BTCUSDT"), (eth, "ETHUSDT"))
    ]


@pytest.fixture(scope="module")
def stacked(parts: list[SampleSet]) -> SampleSet:
    return stack_samples(parts)


def _holdout(s: SampleSet) -> Fold:
    return split_on_time_grid(HoldoutSplit(), s.windows.timestamps, s.step, s.target.reach)[0]


def _local(s: SampleSet, k: int, positions: np.ndarray) -> np.ndarray:
    """Positions (into s.windows) of symbol k's samples, and their windows' local row ends."""
    block = s.blocks[k]
    return s.windows.ends[positions] - block.start


def test_one_hot_columns_are_constant_per_symbol_and_features_never_mix(
    stacked: SampleSet, parts: list[SampleSet]
) -> None:
    s, f = stacked, parts[0].n_features
    assert s.feature_names == [*parts[0].feature_names, "symbol_BTCUSDT", "symbol_ETHUSDT"]
    assert s.symbols == list(SYMBOLS) and s.symbol == "BTCUSDT+ETHUSDT"
    for k, (block, part) in enumerate(zip(s.blocks, parts, strict=True)):
        rows = s.features[block.start : block.stop]
        assert (rows[:, f + k] == 1.0).all() and (rows[:, f + 1 - k] == 0.0).all()
        np.testing.assert_array_equal(rows[:, :f], part.features)  # NaN warm-ups included
        np.testing.assert_array_equal(s.targets[block.start : block.stop], part.targets)
        np.testing.assert_array_equal(s.close[block.start : block.stop], part.close)
        assert s.index[block.start : block.stop].equals(part.index)


def test_windows_read_only_their_own_symbols_rows(
    stacked: SampleSet, parts: list[SampleSet]
) -> None:
    s, f = stacked, parts[0].n_features
    assert (np.diff(s.windows.timestamps.asi8) >= 0).all()  # positions run forward in time
    rows = s.windows.ends[:, None] + np.arange(1 - LOOKBACK, 1)[None, :]  # [S, L]
    names = s.sample_symbols()
    for k, (block, part) in enumerate(zip(s.blocks, parts, strict=True)):
        mine = names == part.symbol
        assert ((rows[mine] >= block.start) & (rows[mine] < block.stop)).all()
        local = s.windows.ends[mine] - block.start
        np.testing.assert_array_equal(local, part.windows.ends)  # same samples, same order
        assert s.windows.timestamps[mine].equals(part.windows.timestamps)
        part_rows = local[:, None] + np.arange(1 - LOOKBACK, 1)[None, :]
        np.testing.assert_array_equal(s.features[rows[mine]][..., :f], part.features[part_rows])
        assert (s.features[rows[mine]][..., f + k] == 1.0).all()
    assert audit_windows(s) == []


def test_every_model_input_path_reads_the_right_rows(
    stacked: SampleSet, parts: list[SampleSet]
) -> None:
    s, f = stacked, parts[0].n_features
    fold = _holdout(s)
    names = s.sample_symbols(fold.test)
    dm = ForecastDataModule(s, fold)
    dm.setup("fit")
    for k, part in enumerate(parts):
        mine = fold.test[names == part.symbol]
        local_pos = np.searchsorted(part.windows.ends, _local(s, k, mine))
        # LightGBM (flattened windows): the symbol's own window, plus its one-hot at every lag
        lgbm = LightGBMForecaster(inputs="window")
        x = lgbm.design_matrix(s, mine).reshape(len(mine), LOOKBACK, f + 2)
        x_part = lgbm.design_matrix(part, local_pos).reshape(len(mine), LOOKBACK, f)
        np.testing.assert_array_equal(x[..., :f], x_part)
        assert (x[..., f + k] == 1.0).all() and (x[..., f + 1 - k] == 0.0).all()
        # naive "last change" reads closes t-h .. t of the same symbol
        naive = NaiveForecaster("last")
        np.testing.assert_allclose(naive.predict(s, mine), naive.predict(part, local_pos))
        # torch windows: the scaled rows of the symbol's own block
        one_hot = np.zeros((len(part.index), 2))
        one_hot[:, k] = 1.0
        expected = dm.scaler.transform(np.hstack([part.features, one_hot]))
        test_set = dm.datasets["test"]
        for i in np.flatnonzero(names == part.symbol)[:: max(1, len(mine) // 25)]:
            t = int(s.windows.ends[fold.test[i]]) - s.blocks[k].start
            window, _ = test_set[int(i)]
            np.testing.assert_allclose(
                window.numpy(), expected[t - LOOKBACK + 1 : t + 1], rtol=1e-6, atol=1e-6
            )


def test_scaler_fits_on_every_symbols_training_rows_only(stacked: SampleSet) -> None:
    s = stacked
    fold = _holdout(s)
    rows = train_rows(s, fold.train)
    train_ends = s.windows.ends[fold.train]
    for block in s.blocks:
        ends = train_ends[(train_ends >= block.start) & (train_ends < block.stop)]
        mine = rows[(rows >= block.start) & (rows < block.stop)]
        np.testing.assert_array_equal(mine, np.arange(ends.min() - LOOKBACK + 1, ends.max() + 1))
    assert len(rows) == len(np.unique(rows))

    def fitted(samples: SampleSet) -> tuple[dict[str, object], list[float]]:
        dm = ForecastDataModule(samples, fold)
        dm.setup("fit")
        return dm.scaler.to_dict(), dm.target_scale.tolist()

    base = fitted(s)
    others = np.setdiff1d(np.arange(len(s.index)), rows)
    mutated = dataclasses.replace(s, features=s.features.copy(), targets=s.targets.copy())
    mutated.features[others] *= 100.0  # every symbol's val/test (and unused warm-up) rows
    mutated.targets[others] *= 100.0
    assert fitted(mutated) == base
    eth_train = rows[rows >= s.blocks[1].start]
    mutated.features[eth_train[len(eth_train) // 2], 0] += 1000.0  # one ETH training row
    assert fitted(mutated)[0] != base[0]


@pytest.mark.parametrize(
    "split",
    [HoldoutSplit(), WalkForwardSplit(n_folds=2, val_bars=100, test_bars=100, train_bars=300)],
)
def test_folds_cut_every_symbol_at_the_same_times(
    stacked: SampleSet, parts: list[SampleSet], split: HoldoutSplit | WalkForwardSplit
) -> None:
    s, btc = stacked, parts[0]
    folds = split_on_time_grid(split, s.windows.timestamps, s.step, s.target.reach)
    # BTC has a sample at every time ETH has one, so the common grid is BTC's own clock: BTC's
    # segments must be exactly those of a BTC-only split, and ETH's the same time ranges.
    alone = split.folds(btc.windows.timestamps, btc.step, btc.target.reach)
    assert [f.number for f in folds] == [f.number for f in alone]
    names = s.sample_symbols()
    for fold, solo in zip(folds, alone, strict=True):
        assert audit_purge(s, fold) == [] and audit_time_alignment(s, fold) == []
        for part in ("train", "val", "test"):
            pos = getattr(fold, part)
            stamps = {sym: s.windows.timestamps[pos[names[pos] == sym]] for sym in SYMBOLS}
            assert stamps["BTCUSDT"].equals(btc.windows.timestamps[getattr(solo, part)])
            assert set(stamps["ETHUSDT"]) <= set(stamps["BTCUSDT"]) and len(stamps["ETHUSDT"])
        assert set(fold.train) | set(fold.val) | set(fold.test) <= set(range(len(s.windows)))


def test_planted_leaks_fail_the_multi_asset_audits(stacked: SampleSet) -> None:
    s = stacked
    fold = _holdout(s)
    names = s.sample_symbols()
    eth = np.flatnonzero(names == "ETHUSDT")
    # 1) ETH's train segment extends into the test period
    leaky = Fold(0, np.union1d(fold.train, np.intersect1d(eth, fold.test)), fold.val, fold.test)
    assert any("last train label (ETHUSDT) ends" in v for v in audit_purge(s, leaky))
    assert any("not in train" in v for v in audit_time_alignment(s, leaky))
    # 2) ETH's validation starts inside the purge gap (BTC's does not)
    gap = np.arange(fold.train[-1] + 1, fold.val[0])
    eth_gap = np.intersect1d(eth, gap)
    assert len(eth_gap) >= s.target.reach - 1  # the purge really dropped ETH samples
    early = Fold(0, fold.train, np.union1d(eth_gap, fold.val), fold.test)
    assert any("first val sample (ETHUSDT)" in v for v in audit_purge(s, early))
    assert any("BTCUSDT sample" in v for v in audit_time_alignment(s, early))
    # 3) a window ending 2 rows into ETH's block reads BTC's last rows
    t = s.blocks[1].start + 2
    ends = np.append(s.windows.ends, t)
    crossing = dataclasses.replace(s, windows=WindowIndex(ends, s.index[ends], LOOKBACK))
    assert any("cross another symbol's rows" in v for v in audit_windows(crossing))
    # ... and the one-hot check catches it even when the row ranges are unknown
    unblocked = dataclasses.replace(crossing, blocks=())
    assert any("mixes symbols" in v for v in audit_windows(unblocked))


def test_stack_refuses_mismatched_parts(parts: list[SampleSet]) -> None:
    with pytest.raises(DataError, match="at least 2 symbols"):
        stack_samples(parts[:1])
    with pytest.raises(DataError, match="repeated symbols"):
        stack_samples([parts[0], parts[0]])
    other = dataclasses.replace(parts[1], feature_names=["x", *parts[1].feature_names[1:]])
    with pytest.raises(DataError, match="ETHUSDT and BTCUSDT disagree"):
        stack_samples([parts[0], other])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"symbols": "BTCUSDT"}, "must be a list"),
        ({"symbols": ["BTCUSDT"]}, "fewer than 2 symbols"),
        ({"symbols": ["BTCUSDT", "btcusdt"]}, r"repeats \['BTCUSDT'\]"),
        ({"symbol": "SOLUSDT", "symbols": list(SYMBOLS)}, "data.symbol=SOLUSDT is not in"),
        ({"source": "file", "path": "x.csv", "symbols": list(SYMBOLS)}, "source=file"),
    ],
)
def test_data_spec_refuses_contradictory_symbols(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        DataSpec(**kwargs)  # type: ignore[arg-type]


def test_data_spec_per_symbol() -> None:
    spec = DataSpec(symbol="ETHUSDT", symbols=["BTCUSDT", "ETHUSDT"], days=30)  # type: ignore[arg-type]
    assert spec.symbols == SYMBOLS
    specs = spec.per_symbol()
    assert [(p.symbol, p.symbols, p.days) for p in specs] == [
        ("BTCUSDT", None, 30),
        ("ETHUSDT", None, 30),
    ]
    assert DataSpec().per_symbol() == [DataSpec()]
    with pytest.raises(DataError, match="no bundled data for symbol='DOGEUSDT'.*bundled files"):
        DataSpec(symbols=("BTCUSDT", "DOGEUSDT")).per_symbol()


def test_prediction_frame_carries_each_samples_symbol() -> None:
    ts = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    stamps = ts[[0, 0, 1, 1, 2, 2]]
    symbols = np.array(["A", "B"] * 3, dtype=object)
    y_true = np.array([[0.01], [-0.02], [0.03], [0.01], [-0.01], [0.02]])
    y_pred = np.array([[0.02], [-0.01], [-0.01], [0.02], [-0.02], [0.01]])
    base = np.array([100.0, 10.0, 101.0, 10.1, 102.0, 10.2])
    frame = make_prediction_frame(stamps, symbols, 0, [1], y_true, y_pred, base)
    assert list(frame["symbol"]) == list(symbols)
    per = score_by_symbol(frame, "test")
    assert per["test/A/directional_accuracy"] == pytest.approx(2 / 3)
    assert per["test/B/directional_accuracy"] == pytest.approx(1.0)
    assert per["test/A/rmse"] == score(frame[frame["symbol"] == "A"], "x")["x/rmse"]
    assert score_by_symbol(frame[frame["symbol"] == "A"], "test") == {}
    with pytest.raises(ValueError, match="symbols 2"):
        make_prediction_frame(stamps, symbols[:2], 0, [1], y_true, y_pred, base)


def _result(times: list[str], net: list[float], bench_equity: list[float]) -> BacktestResult:
    n = len(times)
    bars = pd.DataFrame(
        {
            "timestamp": pd.DatetimeIndex(times, tz="UTC"),
            "position": np.ones(n),
            "gross": np.asarray(net) + 0.001,
            "cost": np.full(n, 0.001),
            "net": net,
            "benchmark_equity": bench_equity,
        }
    )
    trades = pd.DataFrame({c: [0] for c in TRADE_COLUMNS}).assign(net_return=[sum(net)])
    return BacktestResult(bars=bars, trades=trades, metrics={"periods_per_year": 8760.0})


def test_equal_weight_portfolio_by_hand() -> None:
    a = _result(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00"],
                [0.01, -0.02, 0.03], [1.01, 0.99, 1.02])  # fmt: skip
    b = _result(["2024-01-01 00:00", "2024-01-01 02:00"], [0.02, 0.04], [1.02, 1.0404])
    out = equal_weight_portfolio({"A": a, "B": b})
    np.testing.assert_allclose(out.bars["net"], [0.015, -0.01, 0.035])  # B flat over its gap
    bench = [(0.01 + 0.02) / 2, (0.99 / 1.01 - 1) / 2, (1.02 / 0.99 - 1 + 0.02) / 2]
    np.testing.assert_allclose(out.bars["benchmark_equity"], np.cumprod(1 + np.array(bench)))
    np.testing.assert_allclose(out.bars["position"], [1.0, 0.5, 1.0])
    assert out.metrics["total_return"] == pytest.approx(1.015 * 0.99 * 1.035 - 1)
    assert out.metrics["n_trades"] == 2 and list(out.trades["symbol"]) == ["A", "B"]
    b.metrics["periods_per_year"] = 2190.0
    with pytest.raises(ValueError, match="different periods_per_year"):
        equal_weight_portfolio({"A": a, "B": b})


def test_naive_drift_is_estimated_per_symbol(parts: list[SampleSet], stacked: SampleSet) -> None:
    # A pooled drift over stacked closes would include one bogus BTC -> ETH step.
    fold = _holdout(stacked)
    naive = NaiveForecaster("drift")
    naive.fit(stacked, fold, Path("unused"))
    pred = naive.predict(stacked, fold.test)
    for k, part in enumerate(parts):
        mine = np.flatnonzero(stacked.sample_symbols(fold.test) == SYMBOLS[k])
        rows = train_rows(stacked, fold.train)
        own = rows[(rows >= stacked.blocks[k].start) & (rows < stacked.blocks[k].stop)]
        drift = np.mean(np.diff(np.log(stacked.close[own])))
        np.testing.assert_allclose(pred[mine], drift * np.array([[1.0, 4.0]]).repeat(len(mine), 0))
        assert len(mine) > 0 and part.symbol == SYMBOLS[k]
