"""The `cryptoforecast data` commands: report, JSON, exit codes, no tracebacks, light imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cryptoforecast.cli import main

CLI = [sys.executable, "-m", "cryptoforecast.cli"]


def test_data_check_bundled_json_reports_known_gaps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "BTCUSDT", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    for key in (
        "rows",
        "start",
        "end",
        "missing_bars",
        "gaps",
        "longest_gap_bars",
        "duplicates_dropped",
        "zero_volume_bars",
        "spikes",
        "warnings",
        "errors",
    ):
        assert key in rep
    assert len(rep["gaps"]) == 27 and rep["longest_gap_bars"] == 33
    assert rep["gaps"][1] == {"after": "2018-02-08T00:00:00Z", "missing_bars": 33}
    assert len(rep["zero_volume_bars"]) == 3 and rep["errors"] == []


def test_data_check_table_for_a_file(
    candles_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", str(candles_csv)]) == 0
    out = capsys.readouterr().out
    assert "rows" in out and "600" in out and "ok" in out


def test_bad_file_exits_1_with_message_and_no_traceback(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    raw = candles.reset_index()
    raw.loc[3, "close"] = -1.0
    path = tmp_path / "neg.csv"
    raw.to_csv(path, index=False)
    res = subprocess.run([*CLI, "data", "check", str(path)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "non-positive close in 1 row(s): row 4" in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_unreadable_file_exits_1_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv.gz"
    path.write_bytes(b"this is not gzip")
    res = subprocess.run([*CLI, "data", "check", str(path)], capture_output=True, text=True)
    assert res.returncode == 1 and "garbage.csv.gz: cannot read file" in res.stderr
    assert "Traceback" not in res.stderr


def test_help_imports_no_heavy_modules() -> None:
    code = (
        "import sys; from cryptoforecast.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'lightning', 'pandas') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in res.stdout
