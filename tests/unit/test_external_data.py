"""Daily external series: loading with clear errors, publication times and bar alignment."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.data.external import (
    align_to_bars,
    load_daily_series,
    publication_times,
    resolve_external_path,
    warn_if_uncovered,
)
from cryptoforecast.data.schema import DataError


def _write(tmp_path: Path, text: str, name: str = "daily.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _hours(start: str, n: int) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="h", tz="UTC", name="timestamp")


def test_bundled_files_load() -> None:
    fg = load_daily_series("fear_greed", ["value"])
    assert len(fg.values) == 2942
    assert fg.values.index[0] == pd.Timestamp("2018-02-01", tz="UTC")
    assert fg.last_date == pd.Timestamp("2026-02-24", tz="UTC")
    assert fg.values.index.is_monotonic_increasing and fg.values.index.is_unique
    onchain = load_daily_series("btc_onchain", ["mvrv", "nupl", "realized_price"])
    rp = onchain.values["realized_price"]
    assert rp.first_valid_index() == pd.Timestamp("2014-11-17", tz="UTC")
    assert onchain.values["nupl"].first_valid_index() == pd.Timestamp("2011-05-04", tz="UTC")
    assert onchain.last_date == pd.Timestamp("2026-03-19", tz="UTC")


def test_unsorted_is_sorted_and_exact_duplicates_collapse(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "date,value\n2024-01-03,30\n2024-01-01,10\n2024-01-02,20\n2024-01-01,10\n"
    )
    series = load_daily_series(path, ["value"])
    assert series.values["value"].tolist() == [10.0, 20.0, 30.0]
    assert series.values.index.is_monotonic_increasing


def test_empty_cell_is_a_missing_day(tmp_path: Path) -> None:
    path = _write(tmp_path, "date,value,other\n2024-01-01,10,x\n2024-01-02,,y\n")
    values = load_daily_series(path, ["value"]).values["value"]
    assert values.iloc[0] == 10.0 and np.isnan(values.iloc[1])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("date,value\n2024-01-01,10\n2024-01-02,1O\n", r"data row 2: column 'value'.*'1O'"),
        ("date,value\n2024-01-01,10\nJan 2nd,20\n", r"data row 2: cannot parse date 'Jan 2nd'"),
        ("date,value\n2024-01-01T06:00:00Z,10\n", r"data row 1: date .* not a calendar day"),
        (
            "date,value\n2024-01-01,10\n2024-01-01,11\n",
            r"2024-01-01 appears in data rows \[1, 2\]",
        ),
        ("date,value\n2024-01-01,inf\n", r"data row 1: column 'value' has non-numeric"),
        ("day,value\n2024-01-01,10\n", r"missing column\(s\) \['date'\]"),
    ],
)
def test_bad_files_name_file_row_and_value(tmp_path: Path, body: str, expected: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(DataError, match=expected) as info:
        load_daily_series(path, ["value"])
    assert str(path) in str(info.value)


def test_missing_file_lists_bundled_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fear_greed, btc_onchain"):
        resolve_external_path(tmp_path / "nope.csv")


def test_publication_time_is_day_close_plus_delay() -> None:
    dates = pd.DatetimeIndex(["2024-01-01", "2024-02-29"], tz="UTC")
    got = publication_times(dates, delay_hours=2.5)
    expected = pd.DatetimeIndex(["2024-01-02 02:30", "2024-03-01 02:30"], tz="UTC")
    assert got.equals(expected)
    with pytest.raises(ValueError, match="delay_hours"):
        publication_times(dates, -1.0)


@pytest.fixture
def daily() -> pd.Series:
    """Days 1, 2, 3 and 6 of Jan 2024 (4 and 5 missing)."""
    index = pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-06"], tz="UTC")
    return pd.Series([1.0, 2.0, 3.0, 6.0], index=index)


def test_value_switches_when_the_bar_close_reaches_publication(daily: pd.Series) -> None:
    bars = _hours("2024-01-01 00:00", 24 * 8)
    got = pd.Series(align_to_bars(daily, bars, "1h", delay_hours=2, max_age_hours=200), bars)
    # day 1 is published 2024-01-02 02:00: the bar opening 01:00 closes at 02:00
    assert np.isnan(got["2024-01-02 00:00"])
    assert got["2024-01-02 01:00"] == 1.0
    assert got["2024-01-03 00:00"] == 1.0  # closes 01:00, day 2 due 02:00
    assert got["2024-01-03 01:00"] == 2.0
    # days 4 and 5 are missing: day 3 is carried (no interpolation) until day 6 is published
    assert (got["2024-01-04 01:00":"2024-01-07 00:00"] == 3.0).all()
    assert got["2024-01-07 01:00"] == 6.0
    assert np.isnan(got.iloc[:25]).sum() == 25  # nothing before the first publication


def test_stale_values_become_nan(daily: pd.Series) -> None:
    bars = _hours("2024-01-04 00:00", 24 * 4)
    got = pd.Series(align_to_bars(daily, bars, "1h", delay_hours=0, max_age_hours=30), bars)
    # day 3 published 2024-01-04 00:00; 30 h later (2024-01-05 06:00 close) it is still usable
    assert got["2024-01-05 05:00"] == 3.0
    assert np.isnan(got["2024-01-05 06:00"])
    assert got["2024-01-05 06:00":"2024-01-06 22:00"].isna().all()  # 41 stale bars
    assert got["2024-01-06 23:00"] == 6.0  # closes 2024-01-07 00:00, when day 6 is published
    assert got.isna().sum() == 41


def test_lag_and_interval(daily: pd.Series) -> None:
    bars = _hours("2024-01-01 20:00", 12)  # day 1 is published 2024-01-02 00:00 (delay 0)
    lag0 = align_to_bars(daily, bars, "1h", 0.0, 72.0)
    lag4 = align_to_bars(daily, bars, "1h", 0.0, 72.0, lag_hours=4)
    assert np.isnan(lag0[:3]).all() and (lag0[3:] == 1.0).all()  # bar 23:00 closes 00:00
    assert np.isnan(lag4[:7]).all() and (lag4[7:] == 1.0).all()  # 4 hours later
    four = pd.date_range("2024-01-01 16:00", periods=4, freq="4h", tz="UTC")
    got = align_to_bars(daily, four, "4h", 0.0, 72.0)  # the 20:00 bar closes at 00:00
    assert np.isnan(got[0]) and got[1] == 1.0


def test_coverage_warning_names_file_and_last_date(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path, "date,value\n2024-01-01,10\n2024-01-02,20\n")
    series = load_daily_series(path, ["value"])
    inside = _hours("2024-01-02 00:00", 24)
    with caplog.at_level(logging.WARNING):
        assert not warn_if_uncovered(series, inside, "1h", 1.0, 72.0)
        assert warn_if_uncovered(series, _hours("2024-01-05 00:00", 48), "1h", 1.0, 72.0)
    assert str(path) in caplog.text and "ends on 2024-01-02" in caplog.text
