"""Resampling 1h -> 4h / 1d against hand-computed bars."""

from __future__ import annotations

import pandas as pd
import pytest

from cryptoforecast.data.resample import resample_candles
from cryptoforecast.data.schema import DataError


def _bars(n: int, start: str = "2024-01-01 00:00") -> pd.DataFrame:
    idx = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=n, freq="h", name="timestamp")
    i = pd.Series(range(n), index=idx, dtype="float64")
    return pd.DataFrame(
        {"open": 100 + i, "high": 110 + i, "low": 90 + i, "close": 101 + i, "volume": 1 + i}
    )


def test_4h_bars_by_hand() -> None:
    out = resample_candles(_bars(9), "4h", "1h")  # 00-03, 04-07 complete; 08 alone is trailing
    assert list(out.index) == [
        pd.Timestamp("2024-01-01 00:00", tz="UTC"),
        pd.Timestamp("2024-01-01 04:00", tz="UTC"),
    ]
    first = out.iloc[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        100,
        113,
        90,
        104,
        10,
    )
    second = out.iloc[1]
    assert (second.open, second.high, second.low, second.close, second.volume) == (
        104,
        117,
        94,
        108,
        26,
    )


def test_buckets_align_to_utc_epoch_not_to_first_bar() -> None:
    out = resample_candles(_bars(9, "2024-01-01 02:00"), "4h", "1h")
    # 02-03 is an incomplete *leading* bucket: kept (it traded), the trailing 08-11 is dropped.
    assert [t.hour for t in out.index] == [0, 4]
    assert out.iloc[0].volume == 1 + 2
    assert out.iloc[1].open == 102 and out.iloc[1].close == 101 + 5


def test_daily_and_trailing_incomplete_day_dropped() -> None:
    out = resample_candles(_bars(24 * 2 + 5), "1d", "1h")
    assert len(out) == 2
    assert out.iloc[1].open == 124 and out.iloc[1].close == 101 + 47
    assert out.iloc[1].high == 110 + 47 and out.iloc[1].low == 90 + 24


def test_gaps_do_not_create_bars_and_partial_inner_bucket_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bars = _bars(16).drop(index=_bars(16).index[[5, 8, 9, 10, 11]])  # 08-11 fully missing
    out = resample_candles(bars, "4h", "1h")
    assert [t.hour for t in out.index] == [0, 4, 12]
    assert out.iloc[1].volume == 5 + 7 + 8  # hour 5 missing
    assert "built from fewer than 4 1h bars" in caplog.text


def test_same_interval_is_identity_and_bad_ratio_errors() -> None:
    bars = _bars(5)
    assert resample_candles(bars, "1h", "1h") is bars
    with pytest.raises(DataError, match="cannot resample 4h candles to 6h"):
        resample_candles(bars, "6h", "4h")
    with pytest.raises(DataError, match="cannot resample 1h candles to 30m"):
        resample_candles(bars, "30m", "1h")
