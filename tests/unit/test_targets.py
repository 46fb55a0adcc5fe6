"""Targets: the one forward-looking computation, checked bar by bar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.data.schema import DataError
from cryptoforecast.data.synthetic import make_ohlcv
from cryptoforecast.data.targets import TargetSpec, make_targets


@pytest.mark.parametrize("lag", [0, 1, 2])
@pytest.mark.parametrize("horizon", [1, 4, 24])
def test_return_target_definition_and_nan_tail(lag: int, horizon: int) -> None:
    close = make_ohlcv(200, seed=1)["close"]
    y, base = make_targets(close, TargetSpec(horizon=horizon, execution_lag=lag))
    c = close.to_numpy()
    for t in (0, 17, 200 - lag - horizon - 1):
        assert y[t, 0] == pytest.approx(np.log(c[t + lag + horizon] / c[t + lag]), rel=1e-12)
        assert base[t] == c[t + lag]
    assert np.isnan(y[-(lag + horizon) :, 0]).all() and np.isfinite(y[: -(lag + horizon), 0]).all()


def test_multi_horizon_columns_follow_config_order() -> None:
    close = make_ohlcv(100, seed=2)["close"]
    y, _ = make_targets(close, TargetSpec(horizon=[4, 1, 24]))
    single = {h: make_targets(close, TargetSpec(horizon=h))[0][:, 0] for h in (1, 4, 24)}
    for j, h in enumerate([4, 1, 24]):
        np.testing.assert_array_equal(y[:, j], single[h])


def test_labels_never_span_a_gap() -> None:
    frame = make_ohlcv(50, seed=3).drop(index=make_ohlcv(50, seed=3).index[[20]])  # bar 20 missing
    y, base = make_targets(frame["close"], TargetSpec(horizon=2, execution_lag=1))
    # rows 16..18 (bars 16..18) need bar 19..21 chains: bar 17 needs 18,19,20 -> gap
    times = frame.index
    for i in range(len(times) - 3):
        consecutive = times[i + 3] - times[i] == pd.Timedelta(hours=3)
        assert np.isfinite(y[i, 0]) == consecutive


def test_direction_labels() -> None:
    close = pd.Series(
        [1.0, 2.0, 1.0, 1.0, 3.0],
        index=pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC"),
    )
    y, _ = make_targets(close, TargetSpec(horizon=1, execution_lag=0, kind="direction"))
    np.testing.assert_array_equal(y[:, 0], [1.0, 0.0, 0.0, 1.0, np.nan])  # flat counts as not up


def test_targets_are_truncation_consistent() -> None:
    # The value at t from history up to k equals the full-history value wherever it is defined.
    close = make_ohlcv(120, seed=4)["close"]
    full, _ = make_targets(close, TargetSpec(horizon=[1, 4]))
    for k in (30, 77, 119):
        part, _ = make_targets(close.iloc[:k], TargetSpec(horizon=[1, 4]))
        defined = np.isfinite(part)
        np.testing.assert_array_equal(part[defined], full[:k][defined])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"horizon": 0}, "positive integers"),
        ({"horizon": [1, 1]}, "duplicates"),
        ({"execution_lag": -1}, "execution_lag must be >= 0"),
        ({"kind": "price"}, "choose one of return, direction"),
    ],
)
def test_bad_target_spec(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(DataError, match=match):
        TargetSpec(**kwargs)  # type: ignore[arg-type]
