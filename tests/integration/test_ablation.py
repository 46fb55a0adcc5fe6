"""The ablation runner end to end on tiny studies (real config, real train pipeline)."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from rich.console import Console

from cryptoforecast.pipelines.ablation import (
    FoldMismatchError,
    conclusion,
    load_study_file,
)
from cryptoforecast.pipelines.ablation_report import (
    RunOptions,
    main,
    marker,
    run_study,
)

# Two small walk-forward folds on 45 days of bundled BTCUSDT, fixed end: seconds per arm.
TINY = [
    "data.end=2026-02-20",
    "data.days=45",
    "features=minimal",
    "model.variant=lightweight",
    "logger=none",
    "split=walk_forward",
    "split.n_folds=2",
    "split.val_bars=96",
    "split.test_bars=96",
    "split.train_bars=400",
    "callbacks.progress_bar=null",
    "trainer.enable_progress_bar=false",
]
CALENDAR = "+features.transforms.calendar={_target_:cryptoforecast.features.transforms.Calendar}"


def _write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.slow
def test_study_writes_reports_skips_pending_and_reuses_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study_file = _write(
        tmp_path / "studies.yaml",
        {
            "shared": [*TINY, "model=lightgbm", "+model.module.n_estimators=20"],
            "studies": {
                "calendar": {
                    "question": "Does a calendar block help LightGBM?",
                    "claim": {"text": "calendar cuts RMSE by 15%", "rmse_change_pct": -15},
                    "arms": {"minimal": [], "calendar": [CALENDAR]},
                },
                "pending": {
                    "question": "A study whose model config does not exist yet.",
                    "note": "needs conf/model/not_there_yet.yaml",
                    "arms": {"a": [], "b": ["model=not_there_yet"]},
                },
            },
        },
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("# Ablations\n\nHand-written intro.\n")

    assert main([str(study_file), "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "skipped pending" in first and "needs conf/model/not_there_yet.yaml" in first
    assert first.count("trained in") == 2 and "reused" not in first

    table = pd.read_csv(out / "calendar.csv", index_col="arm")
    assert list(table.index) == ["minimal", "calendar", "persistence (zero return)"]
    assert (table.loc[["minimal", "calendar"], "rmse"] > 0).all()
    doc = json.loads((out / "calendar.json").read_text())
    (comp,) = doc["comparisons"]
    assert comp["treatment"] == "calendar" and comp["baseline"] == "minimal"
    assert 0.0 <= comp["dm_p"] <= 1.0 and comp["dm_n"] == 192
    lo, hi = comp["return_rmse_change_ci95"]
    assert lo < comp["return_rmse_change_pct"] < hi
    assert doc["info"]["n_folds"] == 2 and doc["info"]["rows_dropped"] == {
        "minimal/seed42": 0,
        "calendar/seed42": 0,
    }
    # the wording in the report is the wording function applied to the reported numbers
    words = conclusion(
        "calendar", "minimal", comp["rmse_change_pct"], comp["dm_stat"], comp["dm_p"]
    )
    assert doc["conclusions"] == [words]
    assert doc["claim_verdict"].startswith('The claim "calendar cuts RMSE by 15%"')
    readme = (out / "README.md").read_text()
    assert readme.startswith("# Ablations\n\nHand-written intro.")
    start, end = marker("calendar", False), marker("calendar", True)
    section = readme[readme.index(start) : readme.index(end)]
    assert "| calendar |" in section and "DM p" in section and words[1:] in section
    assert "--out=" in section and marker("pending", False) not in readme
    assert (out / "calendar.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "runs/calendar/calendar/seed42/.hydra/config.yaml").is_file()

    # rerun: both arms reused, same numbers, the README section replaced (not appended)
    assert main([str(study_file), "--out", str(out), "--only", "calendar"]) == 0
    second = capsys.readouterr().out
    assert second.count("reused (resolved config unchanged)") == 2 and "trained in" not in second
    assert json.loads((out / "calendar.json").read_text())["comparisons"] == doc["comparisons"]
    assert (out / "README.md").read_text().count(start) == 1


@pytest.mark.slow
def test_identical_folds_check_fails_on_a_planted_mismatch(tmp_path: Path) -> None:
    # arm "later" ends its data one day later: its four test days are shifted by 24 bars
    study_file = _write(
        tmp_path / "studies.yaml",
        {
            "shared": [*TINY, "model=naive"],
            "studies": {
                "shifted": {
                    "question": "Planted mismatch.",
                    "arms": {"base": [], "later": ["data.end=2026-02-21"]},
                }
            },
        },
    )
    spec = load_study_file(study_file)
    study = spec.studies["shifted"]
    options = RunOptions(study_file, tmp_path / "out", tmp_path / "runs")
    console = Console(file=io.StringIO())
    with pytest.raises(FoldMismatchError) as err:
        run_study(study, spec, options, console)
    msg = str(err.value)
    assert "'shifted'" in msg and "168 rows are common" in msg
    assert "base/seed42: 192 rows, 24 not in every arm (first: BTCUSDT h1 2026-02-11" in msg
    assert "later/seed42: 192 rows, 24 not in every arm" in msg
    assert "align: intersection" in msg
    assert not (tmp_path / "out" / "shifted.csv").exists()

    # align: intersection evaluates the 168 common rows, says how many were dropped, and
    # recomputes the backtest on them; the runs are reused
    result = run_study(dataclasses.replace(study, align="intersection"), spec, options, console)
    assert result.info["rows_dropped"] == {"base/seed42": 24, "later/seed42": 24}
    assert result.info["n_rows"] == 168
    assert all(r["reused"] == [True] for r in result.arms.values())
    assert result.arms["base"]["n_trades"] == 0  # naive zero forecasts never go long
    # identical (zero) forecasts: no test possible, and the report says so
    assert "identical forecasts" in result.conclusions[0]
    page = (tmp_path / "out" / "shifted.md").read_text()
    assert "rows dropped" in page
    # the page names the trading rule behind its backtest columns
    assert all(r["backtest_rule"] == "cost" for r in result.arms.values())
    assert "Total return, Sharpe and trades: after fees and slippage, `cost` rule" in page
