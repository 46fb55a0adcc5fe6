"""``cryptoforecast data check`` lists return spikes, in the table and in the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cryptoforecast.cli import main


@pytest.fixture
def spiky_csv(tmp_path: Path, candles: pd.DataFrame) -> Path:
    """The synthetic candles with a +50 % close planted at bar 400 (2024-01-17 16:00 UTC)."""
    raw = candles.reset_index()
    raw.loc[400, "close"] = raw.loc[400, "open"] * 1.5
    raw.loc[400, "high"] = raw.loc[400, "close"]
    raw["timestamp"] = raw["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    path = tmp_path / "spiky.csv"
    raw.to_csv(path, index=False)
    return path


def test_spikes_are_listed_in_the_table(
    spiky_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", str(spiky_csv)]) == 0
    out = capsys.readouterr().out
    assert "return spikes (flagged, kept" in out
    raw = pd.read_csv(spiky_csv)
    ret = 100 * (raw.loc[400, "close"] / raw.loc[399, "close"] - 1)
    row = next(line for line in out.splitlines() if "2024-01-17T16:00:00Z" in line)
    assert f"{ret:+.2f} %" in row
    assert f"{raw.loc[400, 'close']:,.2f}" in row and f"{raw.loc[399, 'close']:,.2f}" in row


def test_spikes_are_listed_in_the_json(
    spiky_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", str(spiky_csv), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    raw = pd.read_csv(spiky_csv)
    spike = next(s for s in rep["spikes"] if s["timestamp"] == "2024-01-17T16:00:00Z")
    assert spike["close"] == pytest.approx(raw.loc[400, "close"])
    assert spike["previous_close"] == pytest.approx(raw.loc[399, "close"])
    assert spike["robust_z"] > 15 and spike["log_return"] == pytest.approx(0.4, abs=0.1)


def test_long_spike_lists_are_cut_with_a_pointer_to_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["data", "check", "BTCUSDT", "--max-list", "2"]) == 0
    out = capsys.readouterr().out
    assert "2018-06-10T17:00:00Z" in out  # the bundled data's first spike
    assert "2018-06-29T22:00:00Z" not in out  # the third is past --max-list
    assert "... 61 more (--json" in out  # 63 spikes in the bundled BTCUSDT candles
