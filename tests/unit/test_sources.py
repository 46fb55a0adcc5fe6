"""Reading candle files: formats, timestamp encodings, column names, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.data.loader import DataSpec, load_candles
from cryptoforecast.data.schema import DataError
from cryptoforecast.data.sources import bundled_path, infer_interval, read_candle_file


def _write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name", ["c.csv", "c.csv.gz", "c.parquet"])
@pytest.mark.parametrize("encoding", ["iso", "ms", "us", "s"])
def test_formats_and_timestamp_encodings_round_trip(
    tmp_path: Path, candles: pd.DataFrame, name: str, encoding: str
) -> None:
    out = candles.reset_index()
    epoch_ns = out["timestamp"].dt.as_unit("ns").astype("int64").to_numpy()
    if encoding == "iso":
        out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        out["timestamp"] = epoch_ns // {"s": 10**9, "ms": 10**6, "us": 10**3}[encoding]
    raw = read_candle_file(_write(out, tmp_path / name))
    assert list(raw.columns[:6]) == ["timestamp", "open", "high", "low", "close", "volume"]
    assert (raw["timestamp"].to_numpy() == candles.index.to_numpy()).all()
    np.testing.assert_allclose(raw["close"].to_numpy(), candles["close"].to_numpy())


def test_mixed_ms_and_us_rows_parse_per_value(tmp_path: Path, candles: pd.DataFrame) -> None:
    # Binance spot archives switched from ms to us in 2025: a stitched file can hold both.
    out = candles.reset_index().head(10)
    ns = out["timestamp"].dt.as_unit("ns").astype("int64").to_numpy()
    out["timestamp"] = np.where(np.arange(10) < 5, ns // 10**6, ns // 10**3)
    raw = read_candle_file(_write(out, tmp_path / "mixed.csv"))
    assert (raw["timestamp"].to_numpy() == candles.index[:10].to_numpy()).all()


def test_iso_and_epoch_timestamps_mixed_in_one_file_parse_per_value(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    out = candles.reset_index().head(12)
    ns = out["timestamp"].dt.as_unit("ns").astype("int64").to_numpy()
    texts = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy()
    out["timestamp"] = [
        texts[i] if i % 4 == 0 else str(ns[i] // (10**9, 10**6, 10**3)[i % 4 - 1])
        for i in range(12)
    ]  # ISO, s, ms, us, ISO, ...
    raw = read_candle_file(_write(out, tmp_path / "mixed_iso_epoch.csv"))
    assert (raw["timestamp"].to_numpy() == candles.index[:12].to_numpy()).all()


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("-1", r"data row 6: timestamp '-1' is 1969-12-31T23:59:59Z, outside the plausible range"),
        ("0001-01-01", r"data row 6: timestamp '0001-01-01' is outside the range pandas can"),
        ("9999-12-31", r"data row 6: timestamp '9999-12-31' is outside the range pandas can"),
        ("10000000000000000", r"data row 6: timestamp '10000000000000000' \(epoch us\) is beyond"),
        ("2008-12-31T23:00:00Z", r"data row 6: .* is 2008-12-31T23:00:00Z, outside the plausible"),
        ("2100-01-01", r"data row 6: timestamp '2100-01-01' is 2100-01-01T00:00:00Z, outside"),
    ],
)
def test_out_of_range_timestamps_are_clear_errors_in_data_check(
    tmp_path: Path,
    candles_csv: Path,
    capsys: pytest.CaptureFixture[str],
    value: str,
    match: str,
) -> None:
    from cryptoforecast.cli import main

    lines = candles_csv.read_text().splitlines()
    lines[6] = value + lines[6][lines[6].index(",") :]  # data row 6
    bad = tmp_path / "range.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match):
        read_candle_file(bad)
    assert main(["data", "check", str(bad)]) == 1
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "range.csv: data row 6: timestamp" in err and "Traceback" not in err


def test_column_names_are_case_insensitive_and_extra_columns_kept(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    out = (
        candles.reset_index().rename(columns=str.upper).rename(columns={"TIMESTAMP": "Open_Time"})
    )
    out["trades"] = 3
    raw = read_candle_file(_write(out, tmp_path / "upper.csv"))
    assert "trades" in raw.columns and (raw["trades"] == 3).all()
    assert raw["timestamp"].iloc[0] == candles.index[0]


def test_missing_column_names_file_and_found_columns(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    path = _write(candles.reset_index().drop(columns="volume"), tmp_path / "novol.csv")
    with pytest.raises(DataError, match=r"novol\.csv: missing column\(s\) \['volume'\]"):
        read_candle_file(path)


def test_unparseable_timestamp_names_row_and_value(tmp_path: Path, candles_csv: Path) -> None:
    lines = candles_csv.read_text().splitlines()
    lines[4] = "yesterday" + lines[4][lines[4].index(",") :]  # data row 4
    bad = tmp_path / "badts.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataError, match=r"badts\.csv: data row 4: cannot parse timestamp 'yesterday'"
    ):
        read_candle_file(bad)


def test_non_numeric_price_names_row_column_and_value(tmp_path: Path, candles_csv: Path) -> None:
    lines = candles_csv.read_text().splitlines()
    cells = lines[7].split(",")
    cells[4] = "12,3".replace(",", ";")  # close column, data row 7
    lines[7] = ",".join(cells)
    bad = tmp_path / "badnum.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataError, match=r"data row 7: column 'close' has non-numeric value '12;3'"
    ):
        read_candle_file(bad)


def test_unsupported_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(DataError, match="unsupported file type"):
        read_candle_file(tmp_path / "x.xlsx")
    with pytest.raises(DataError, match="file not found"):
        read_candle_file(tmp_path / "nope.csv")


def test_bundled_data_is_real_btc_with_known_span() -> None:
    raw = read_candle_file(bundled_path("BTCUSDT"))
    assert len(raw) == 71_888
    assert raw["timestamp"].iloc[0] == pd.Timestamp("2018-01-01", tz="UTC")
    assert raw["timestamp"].iloc[-1] == pd.Timestamp("2026-03-20 09:00", tz="UTC")
    assert infer_interval(raw["timestamp"], "bundled") == "1h"


def test_unknown_bundled_symbol_lists_what_is_bundled() -> None:
    with pytest.raises(DataError, match="bundled files: binance_spot_BTCUSDT_1h.csv.gz"):
        bundled_path("DOGEUSDT")


def test_load_file_source_with_days_and_history(candles_csv: Path) -> None:
    spec = DataSpec(source="file", path=str(candles_csv), days=10)
    got = load_candles(spec, history_bars=50)
    assert got.sample_start == pd.Timestamp("2024-01-16", tz="UTC")  # 600 bars end 01-25 23:00
    assert len(got.frame) == 240 + 50
    assert got.frame.index[0] == got.sample_start - pd.Timedelta(hours=50)


def test_load_start_end_window(candles_csv: Path) -> None:
    spec = DataSpec(
        source="file", path=str(candles_csv), days=None, start="2024-01-02", end="2024-01-03"
    )
    got = load_candles(spec)
    assert len(got.frame) == 24
    assert got.frame.index[0] == pd.Timestamp("2024-01-02", tz="UTC")


def test_empty_selection_error_names_the_span(candles_csv: Path) -> None:
    spec = DataSpec(source="file", path=str(candles_csv), days=None, start="2030-01-01")
    with pytest.raises(DataError, match="no candles between 2030-01-01"):
        load_candles(spec)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"source": "kraken"}, "data.source='kraken'; choose one of bundled, file"),
        ({"source": "file"}, "needs data.path"),
        ({"interval": "7m"}, "unknown interval '7m'"),
        ({"days": -3}, "data.days must be positive"),
    ],
)
def test_bad_spec_is_refused_clearly(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(DataError, match=match):
        DataSpec(**kwargs)  # type: ignore[arg-type]


def test_misspelt_spec_key_fails_loudly() -> None:
    with pytest.raises(TypeError, match="dayz"):
        DataSpec(dayz=3)  # type: ignore[call-arg]
