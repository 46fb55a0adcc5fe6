"""Monitoring on a real tiny bundle: paper-trade writes it, the CLI re-scores it, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.cli import main
from cryptoforecast.data.sources import bundled_path, read_candle_file

from .test_export_runs import run_folder
from .test_serving import bundle_of

SMALL = ["--window", "24", "--min-periods", "12", "--drift-window", "48"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    """The lightgbm bundle, its test-segment predictions and a candle file around them."""
    bundle = bundle_of("lightgbm")
    trained = pd.read_parquet(run_folder("lightgbm") / "predictions.parquet")
    data = tmp_path_factory.mktemp("monitor") / "candles.parquet"
    raw = read_candle_file(bundled_path("BTCUSDT"))
    first = trained["timestamp"].iloc[0]
    raw[raw["timestamp"] >= first - pd.Timedelta(days=10)].to_parquet(data, index=False)
    return bundle, data, trained


def test_paper_trade_writes_the_monitor_and_the_cli_rescores_it_identically(
    setup: tuple[Path, Path, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, data, trained = setup
    capsys.readouterr()
    start = trained["timestamp"].iloc[0].isoformat()
    span = ["--start", start, "--end", trained["timestamp"].iloc[-1].isoformat()]
    paper = tmp_path / "paper"
    argv = ["--bundle", str(bundle), "--data", str(data)]
    assert main(["paper-trade", *argv, *span, "--out", str(paper)]) == 0
    printed = json.loads(capsys.readouterr().out)
    for name in ("alerts.jsonl", "monitor.parquet", "monitor_summary.json", "monitor.png"):
        assert (paper / name).is_file(), name
    summary = json.loads((paper / "monitor_summary.json").read_text())
    assert printed["alerts"] == summary["alerts"]["total"]
    assert summary["n_decisions"] == printed["n_decisions"] == len(trained)

    # the monitor's realised labels are the training labels of the same bars
    scores = pd.read_parquet(paper / "scores.parquet").set_index("timestamp")
    ref = trained.set_index("timestamp")
    np.testing.assert_allclose(scores["y_true"], ref["y_true"], rtol=1e-9)
    # the candle file holds the outcome of every decision, the last ones included
    assert summary["n_pending"] == 0 and summary["n_scored"] == len(trained)

    # re-scoring the saved decisions, and running the model bar by bar, give the same timeline
    for source in (["--decisions", str(paper / "decisions.parquet")], span):
        out = tmp_path / source[0].strip("-")
        assert main(["monitor", *argv, *source, *SMALL, "--out", str(out), "--json"]) == 0
        rep = json.loads(capsys.readouterr().out)
        frame = pd.read_parquet(out / "monitor.parquet")
        assert rep["n_decisions"] == len(frame) == len(trained)
        assert rep["thresholds"]["window"] == 24 and rep["thresholds"]["drift_min_periods"] == 48
        lines = (out / "alerts.jsonl").read_text().splitlines()
        assert len(lines) == rep["alerts"]["total"]
        assert all(
            json.loads(x)["kind"] in ("directional_accuracy", "mae_ratio", "drift") for x in lines
        )
        assert (out / "monitor.png").stat().st_size > 10_000
        # the last row, recomputed by hand from the scores known by then
        last = frame.iloc[-1]
        done = scores[scores["known_at"] <= last["as_of"]].dropna(subset=["y_true"]).tail(24)
        hits = (done["y_pred"] > 0) == (done["y_true"] > 0)
        assert last["da"] == pytest.approx(hits[done["y_true"] != 0].mean())
        # the summary: the last 24 decisions whose labels the candle file holds
        done = scores[scores["known_at"] <= pd.Timestamp(rep["as_of"])].dropna(subset=["y_true"])
        done = done.tail(24)
        ratio = (done["y_true"] - done["y_pred"]).abs().mean() / done["y_true"].abs().mean()
        assert rep["mae_ratio"] == pytest.approx(ratio) and rep["n_pending"] == 0
        assert np.isfinite(rep["max_psi"]) and rep["worst_features"][0]["psi"] == rep["max_psi"]
        if source[0] == "--decisions":
            first = frame
    pd.testing.assert_frame_equal(first, frame)


def test_monitor_cli_refuses_bad_input_with_a_clear_message(
    setup: tuple[Path, Path, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, data, trained = setup
    argv = ["monitor", "--bundle", str(bundle), "--data", str(data), "--out", str(tmp_path / "m")]
    missing = tmp_path / "nope.parquet"
    bad = tmp_path / "bad.parquet"
    trained.drop(columns="y_pred").to_parquet(bad, index=False)
    eth = tmp_path / "eth.parquet"
    trained.assign(symbol="ETHUSDT").to_parquet(eth, index=False)
    cases = [
        (["--decisions", str(missing)], f"{missing}: file not found"),
        (["--decisions", str(bad)], "decisions: missing column(s) y_pred"),
        (["--decisions", str(eth)], "symbol(s) ['ETHUSDT'], but the model forecasts BTCUSDT"),
        ([], "give --start (the first decision bar) or --decisions"),
        (["--start", "yesterday-ish"], "--start 'yesterday-ish': not a timestamp"),
        (["--start", "2026-03-01", "--window", "0"], "monitor.window must be a positive integer"),
        (["--bundle", str(tmp_path)], "not a model bundle"),
    ]
    capsys.readouterr()
    for extra, message in cases:
        assert main([*argv, *extra]) == 1, extra
        err = capsys.readouterr().err
        assert message in " ".join(err.split()), (extra, err)
        assert "Traceback" not in err
    assert not (tmp_path / "m").exists()  # nothing written on bad input
