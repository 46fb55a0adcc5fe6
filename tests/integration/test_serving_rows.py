"""Bad candles in predict and serve: errors name the user's file and row or the request index.

The Predictor checks only the tail of the candles it keeps; its messages still count rows in the
user's file (``row N``, data rows from 1) or the request (``candles[i]``, 0-based), and the
whole request is range-checked, so an impossible timestamp is a 422, never a 500 or a forecast.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from cryptoforecast.cli import main
from cryptoforecast.data.quality import QualityPolicy
from cryptoforecast.data.schema import DataError
from cryptoforecast.data.sources import bundled_path, read_candle_file
from cryptoforecast.serving.app import create_app
from cryptoforecast.serving.predictor import Predictor

from .test_serving import bundle_of

pytestmark = pytest.mark.slow  # trains the session's LightGBM run once when run alone


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.from_bundle(bundle_of("lightgbm"))


@pytest.fixture(scope="module")
def tail() -> pd.DataFrame:
    """The newest 5000 bundled BTCUSDT candles as read from a file (RangeIndex 0..4999)."""
    return read_candle_file(bundled_path("BTCUSDT")).tail(5000).reset_index(drop=True)


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def _one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines on the console


def test_cli_predict_names_the_file_and_the_row_in_it(
    tmp_path: Path,
    predictor: Predictor,
    tail: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tail.copy()
    bad.loc[4949, "low"] = bad.loc[4949, "high"] * 2  # data row 4950, inside the checked tail
    path = _write(bad, tmp_path / "user_candles.csv")
    with pytest.raises(DataError) as info:
        predictor.predict(read_candle_file(path))
    msg = str(info.value)
    assert msg.startswith(f"{path}: data quality errors (rows are data rows counted from 1")
    assert "low above min(open, close) in 1 row(s): row 4950 (2026-03-18T07:00:00Z)" in msg
    assert "candles:" not in msg
    args = ["predict", "--bundle", str(bundle_of("lightgbm")), "--data", str(path)]
    assert main(args) == 1
    err = _one_line(capsys.readouterr().err)
    assert "user_candles.csv: data quality errors" in err and "row 4950 (" in err


def test_cli_predict_off_grid_flag_repairs_only_when_asked(
    tmp_path: Path, tail: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = _write(tail, tmp_path / "clean.csv")
    jitter = tail.copy()
    jitter.loc[4990, "timestamp"] -= pd.Timedelta(seconds=2)  # row 4991 of the file
    path = _write(jitter, tmp_path / "jitter.csv")
    args = ["predict", "--bundle", str(bundle_of("lightgbm")), "--data"]
    assert main([*args, str(path)]) == 1
    err = _one_line(capsys.readouterr().err)
    assert "1 timestamp(s) not on the 1h grid, first: row 4991 2026-03-19T23:59:58Z;" in err
    assert main([*args, str(clean)]) == 0
    expected = capsys.readouterr().out
    assert main([*args, str(path), "--off-grid", "snap"]) == 0  # forward to 00:00, its own bar
    assert capsys.readouterr().out == expected
    # dropping leaves a hole inside the model's window: refused, never filled
    assert main([*args, str(path), "--off-grid", "drop"]) == 1
    assert "not consecutive 1h bars" in _one_line(capsys.readouterr().err)
    assert main(["data", "check", str(path), "--json", "--off-grid", "snap"]) == 0


def test_serve_names_the_request_index_not_the_kept_tail(
    predictor: Predictor, tail: pd.DataFrame
) -> None:
    client = TestClient(create_app(predictor))
    candles = tail.tail(200).copy()
    candles["timestamp"] = candles["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = candles.to_dict(orient="records")
    body[190]["low"] = body[190]["high"] * 2
    response = client.post("/predict", json={"candles": body})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("request: data quality errors (candles[i] is the 0-based index")
    assert "low above min(open, close) in 1 row(s): candles[190] (2026-03-20T00:00:00Z)" in detail


@pytest.mark.parametrize("position", [0, 199])
@pytest.mark.parametrize("value", [-1, "0001-01-01", "9999-12-31", 10**16, "2008-06-01"])
def test_serve_refuses_out_of_range_timestamps_with_422(
    predictor: Predictor, tail: pd.DataFrame, position: int, value: object
) -> None:
    client = TestClient(create_app(predictor))
    candles = tail.tail(200).copy()
    candles["timestamp"] = candles["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = candles.to_dict(orient="records")
    body[position]["timestamp"] = value
    response = client.post("/predict", json={"candles": body})
    assert response.status_code == 422, response.text[:300]
    detail = response.json()["detail"]
    if isinstance(detail, list):  # refused by the request model (serving/app.py)
        assert detail[0]["loc"][:4] == ["body", "candles", str(position), "timestamp"], detail
        text = detail[0]["msg"]
    else:  # inside the request model's bounds, refused by the data checks (data/sources.py)
        assert detail.startswith(f"request: candles[{position}]: timestamp {value!r}")
        text = detail
    assert "range" in text or "beyond" in text or "plausible" in text, text


def test_python_frames_are_named_by_position_and_repaired_by_the_policy(
    predictor: Predictor, tail: pd.DataFrame
) -> None:
    frame = tail.tail(200).set_index("timestamp")  # a DatetimeIndex frame, no file behind it
    frame.attrs = {}
    frame.iloc[150, frame.columns.get_loc("volume")] = float("inf")
    with pytest.raises(
        DataError, match=r"(?s)^candles: .*infinite volume in 1 row\(s\): candles\[150\]"
    ):
        predictor.predict(frame)
    shifted = tail.tail(200).copy()
    shifted.attrs = {}
    shifted.loc[shifted.index[-3], "timestamp"] += pd.Timedelta(minutes=5)
    snap = Predictor.from_bundle(bundle_of("lightgbm"), quality=QualityPolicy(off_grid="snap"))
    # snapped forward onto the next bar's slot: a conflicting duplicate, named in the request
    with pytest.raises(DataError, match=r"conflicting duplicate .* candles\[197\] close=.*"):
        snap.predict(shifted)


def test_canonical_frames_out_of_range_leave_the_fast_path_and_are_refused(
    predictor: Predictor, tail: pd.DataFrame
) -> None:
    old = tail.tail(200).copy()
    old.attrs = {}
    old["timestamp"] -= pd.Timedelta(days=365 * 20)  # 2006: clean, canonical, on the grid
    assert predictor.clean_tail(tail.tail(200)) is not None
    assert predictor.clean_tail(old) is None
    with pytest.raises(DataError, match=r"^candles: candles\[0\]: timestamp .* plausible range"):
        predictor.predict(old)
