"""Quality checks: one test per kind of bad input, each naming the file, row and value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.data.loader import DataSpec, load_candles
from cryptoforecast.data.quality import QualityPolicy, check_candles
from cryptoforecast.data.schema import DataError
from cryptoforecast.data.sources import read_candle_file


def _raw(candles: pd.DataFrame) -> pd.DataFrame:
    return candles.reset_index()


def _write_and_load(tmp_path: Path, raw: pd.DataFrame) -> None:
    path = tmp_path / "bad.csv"
    raw.to_csv(path, index=False)
    load_candles(DataSpec(source="file", path=str(path), days=None))


def test_clean_data_has_no_errors_or_warnings(candles: pd.DataFrame) -> None:
    frame, rep = check_candles(_raw(candles), "syn", "1h")
    assert rep.ok and rep.warnings == [] and rep.rows == 600 and rep.missing_bars == 0
    assert frame.index.name == "timestamp" and str(frame.index.tz) == "UTC"
    pd.testing.assert_frame_equal(frame, candles, check_freq=False, check_index_type=False)


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        ("close", np.nan, r"NaN close in 1 row\(s\): row 11 \(2024-01-01T10:00:00Z\) close=nan"),
        (
            "open",
            -5.0,
            r"non-positive open in 1 row\(s\): row 11 \(2024-01-01T10:00:00Z\) open=-5\.0",
        ),
        ("low", 0.0, r"non-positive low in 1 row\(s\): row 11 .* low=0\.0"),
        ("volume", -1.0, r"negative volume in 1 row\(s\): row 11 .* volume=-1\.0"),
        ("high", 1.0, r"high below max\(open, close\) in 1 row\(s\): row 11 .* high=1\.0"),
        ("low", 1e9, r"low above min\(open, close\) in 1 row\(s\): row 11 .* low=1000000000\.0"),
    ],
)
def test_bad_values_raise_naming_file_row_timestamp_and_value(
    tmp_path: Path, candles: pd.DataFrame, column: str, value: float, match: str
) -> None:
    raw = _raw(candles)
    raw.loc[10, column] = value
    with pytest.raises(DataError, match=match) as info:
        _write_and_load(tmp_path, raw)
    assert "bad.csv" in str(info.value)


def test_many_errors_are_summarised_not_all_listed(candles: pd.DataFrame) -> None:
    raw = _raw(candles)
    raw.loc[:19, "volume"] = -1.0
    _, rep = check_candles(raw, "syn", "1h")
    assert "negative volume in 20 row(s)" in rep.errors[0] and "and 15 more" in rep.errors[0]


def test_exact_duplicates_dropped_and_counted(candles: pd.DataFrame) -> None:
    raw = _raw(candles)
    raw = pd.concat([raw, raw.iloc[[3, 4, 4]]], ignore_index=True)
    frame, rep = check_candles(raw, "syn", "1h")
    assert rep.ok and rep.duplicates_dropped == 3 and len(frame) == 600
    assert frame.index.is_unique and frame.index.is_monotonic_increasing


def test_conflicting_duplicates_raise_naming_both_rows(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    raw = _raw(candles)
    extra = raw.iloc[[5]].copy()
    extra["close"] = extra["close"] * 1.001
    extra["high"] = extra[["high", "close"]].max(axis=1)
    raw = pd.concat([raw, extra], ignore_index=True)
    with pytest.raises(
        DataError,
        match=r"conflicting duplicate timestamp 2024-01-01T05:00:00Z: "
        r"row 6 close=.*, row 601 close=",
    ):
        _write_and_load(tmp_path, raw)


def test_unsorted_rows_are_sorted_and_reported(candles: pd.DataFrame) -> None:
    raw = _raw(candles).iloc[::-1].reset_index(drop=True)
    frame, rep = check_candles(raw, "syn", "1h")
    assert rep.ok and rep.unsorted_rows == 599 and frame.index.is_monotonic_increasing
    _, strict = check_candles(raw, "syn", "1h", QualityPolicy(sort=False))
    assert "out of order" in strict.errors[0]


def test_gaps_are_kept_and_listed(candles: pd.DataFrame) -> None:
    raw = _raw(candles).drop(index=[100, 101, 102, 300]).reset_index(drop=True)
    frame, rep = check_candles(raw, "syn", "1h")
    assert rep.ok and len(frame) == 596 and rep.expected_bars == 600
    assert rep.missing_bars == 4 and rep.longest_gap_bars == 3
    assert [(g.after, g.missing_bars) for g in rep.gaps] == [
        ("2024-01-05T03:00:00Z", 3),
        ("2024-01-13T11:00:00Z", 1),
    ]


def test_off_grid_timestamp_is_an_error(candles: pd.DataFrame) -> None:
    raw = _raw(candles)
    raw.loc[50, "timestamp"] += pd.Timedelta(minutes=30)
    _, rep = check_candles(raw, "syn", "1h")
    assert rep.errors[0].startswith(
        "1 timestamp(s) not on the 1h grid, first: row 51 2024-01-03T02:30:00Z;"
    )


def test_off_grid_message_is_short_counts_all_and_quotes_three_iso_rows(
    candles: pd.DataFrame,
) -> None:
    raw = _raw(candles)
    raw.loc[100:399, "timestamp"] += pd.Timedelta(milliseconds=1500)  # 300 rows
    _, rep = check_candles(raw, "syn", "1h")
    (msg,) = [e for e in rep.errors if "grid" in e]
    assert msg == (
        "300 timestamp(s) not on the 1h grid, first: row 101 2024-01-05T04:00:01.5Z, "
        "row 102 2024-01-05T05:00:01.5Z, row 103 2024-01-05T06:00:01.5Z ...; "
        "data.quality.off_grid=snap or drop (CLI: --off-grid) repairs them"
    )
    assert "Timestamp(" not in msg and len(msg) < 300


def test_off_grid_rows_snap_forward_or_drop_when_asked(candles: pd.DataFrame) -> None:
    raw = _raw(candles)
    raw = raw.drop(index=[51]).reset_index(drop=True)  # row 51 now holds the 02:00 bar
    raw.loc[50, "timestamp"] -= pd.Timedelta(minutes=20)  # 01:40: belongs to the 02:00 slot
    frame, rep = check_candles(raw, "syn", "1h", QualityPolicy(off_grid="snap"))
    assert rep.ok and len(frame) == 599 and rep.missing_bars == 1
    # forward, never back: the bar stamped 01:40 is not passed off as the 01:00 bar
    assert frame.loc[pd.Timestamp("2024-01-03T02:00", tz="UTC"), "close"] == raw.loc[50, "close"]
    assert "1 off-grid timestamp(s) snapped forward" in rep.warnings[0]
    assert "row 51 2024-01-03T01:40:00Z -> 2024-01-03T02:00:00Z" in rep.warnings[0]
    frame, rep = check_candles(raw, "syn", "1h", QualityPolicy(off_grid="drop"))
    assert rep.ok and len(frame) == 598 and rep.missing_bars == 2
    assert rep.warnings[0].startswith("1 off-grid row(s) dropped")
    # a snapped row landing on an existing bar with other values is refused, naming both rows
    clash = _raw(candles)
    clash.loc[50, "timestamp"] += pd.Timedelta(minutes=20)  # 02:20 -> the 03:00 bar's slot
    _, rep = check_candles(clash, "syn", "1h", QualityPolicy(off_grid="snap"))
    assert "conflicting duplicate timestamp 2024-01-03T03:00:00Z: row 51 close=" in rep.errors[0]
    assert ", row 52 close=" in rep.errors[0]


def test_off_grid_policy_comes_from_data_quality_config(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    raw = _raw(candles)
    raw.loc[50, "timestamp"] += pd.Timedelta(minutes=30)
    path = tmp_path / "jitter.csv"
    raw.to_csv(path, index=False)
    with pytest.raises(
        DataError, match=r"(?s)jitter\.csv: data quality errors.*not on the 1h grid"
    ):
        load_candles(DataSpec(source="file", path=str(path), days=None))
    spec = DataSpec(source="file", path=str(path), days=None, quality={"off_grid": "drop"})
    assert len(load_candles(spec).frame) == 599
    with pytest.raises(DataError, match=r"data\.quality\.off_grid='round'; choose one of"):
        DataSpec(quality={"off_grid": "round"})
    with pytest.raises(DataError, match=r"data\.quality: unknown key\(s\) \['offgrid'\]"):
        DataSpec(quality={"offgrid": "drop"})


@pytest.mark.parametrize("column", ["open", "high", "low", "close", "volume"])
@pytest.mark.parametrize("text", ["inf", "-inf"])
def test_infinite_values_are_refused_like_nan(
    tmp_path: Path, candles: pd.DataFrame, column: str, text: str
) -> None:
    raw = _raw(candles).astype({column: object})
    raw.loc[10, column] = text
    path = tmp_path / "inf.csv"
    raw.to_csv(path, index=False)
    _, rep = check_candles(read_candle_file(path), str(path), "1h")
    value = float(text)
    assert rep.errors == [
        f"infinite {column} in 1 row(s): row 11 (2024-01-01T10:00:00Z) {column}={value!r}"
    ]
    with pytest.raises(DataError, match=rf"(?s)inf\.csv: data quality errors .*infinite {column}"):
        load_candles(DataSpec(source="file", path=str(path), days=None))  # so never trained on


def test_data_check_exits_1_on_infinite_volume(
    tmp_path: Path, candles: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptoforecast.cli import main

    raw = _raw(candles)
    raw.loc[[20, 30], "volume"] = np.inf
    path = tmp_path / "infvol.csv"
    raw.to_csv(path, index=False)
    assert main(["data", "check", str(path), "--json"]) == 1
    (error,) = json.loads(capsys.readouterr().out)["errors"]
    assert error.startswith(
        "infinite volume in 2 row(s): row 21 (2024-01-01T20:00:00Z) volume=inf"
    )


def test_zero_volume_flat_bars_and_spikes_are_flagged_not_changed(candles: pd.DataFrame) -> None:
    raw = _raw(candles)
    p = raw.loc[200, "open"]
    raw.loc[200, ["high", "low", "close", "volume"]] = [p, p, p, 0.0]
    raw.loc[400, "close"] = raw.loc[400, "open"] * 1.5  # a 40% log-return hour
    raw.loc[400, "high"] = raw.loc[400, "close"]
    frame, rep = check_candles(raw, "syn", "1h")
    assert rep.ok
    assert rep.zero_volume_bars == ["2024-01-09T08:00:00Z"]
    assert [s["timestamp"] for s in rep.spikes][:1] == ["2024-01-17T16:00:00Z"]
    assert frame["close"].iloc[400] == raw.loc[400, "close"]  # flagged, not repaired


def test_bundled_btc_report_matches_the_documented_facts() -> None:
    from cryptoforecast.data.sources import bundled_path

    _, rep = check_candles(read_candle_file(bundled_path("BTCUSDT")), "bundled", "1h")
    assert rep.ok and rep.rows == 71_888 and len(rep.gaps) == 27 and rep.missing_bars == 122
    assert (rep.longest_gap_bars, rep.longest_gap_after) == (33, "2018-02-08T00:00:00Z")
    assert rep.zero_volume_bars == [
        "2019-06-07T21:00:00Z",
        "2021-02-11T03:00:00Z",
        "2023-03-24T12:00:00Z",
    ]
    assert any(s["timestamp"] == "2020-03-12T10:00:00Z" for s in rep.spikes)  # Black Thursday


def test_report_saves_as_json(tmp_path: Path, candles: pd.DataFrame) -> None:
    _, rep = check_candles(_raw(candles), "syn", "1h")
    data = json.loads(rep.save(tmp_path / "q.json").read_text())
    assert data["rows"] == 600 and data["gaps"] == [] and data["errors"] == []
