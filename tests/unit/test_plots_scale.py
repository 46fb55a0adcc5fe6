"""Plots and tables that say what they show: test periods in ``compare``, bar charts that show
small differences, attention relative to uniform, monitor reference lines that stay visible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cryptoforecast.cli import main
from cryptoforecast.evaluation.compare import (
    PERIOD_COLUMN,
    comparison_table,
    find_runs,
    period_warning,
    plot_metric,
    write_comparison,
)
from cryptoforecast.serving.monitor import MonitorSpec, plot_monitor, threshold_lines
from cryptoforecast.tracking.plots import plot_attention_by_lag

matplotlib.use("Agg")


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each figure showed when it was saved: per axes its limits, bars, lines, labels."""
    seen: list[dict[str, Any]] = []
    original = Figure.savefig

    def record(fig: Figure, *args: Any, **kwargs: Any) -> Any:
        seen.append(
            {
                "axes": [
                    {
                        "xlim": ax.get_xlim(),
                        "ylim": ax.get_ylim(),
                        "bars": [p.get_width() for p in ax.patches],
                        "hlines": [
                            (line.get_ydata()[0], line.get_label())
                            for line in ax.get_lines()
                            if len(set(np.asarray(line.get_ydata(), dtype=float))) == 1
                        ],
                        "xlabel": ax.get_xlabel(),
                        "ylabel": ax.get_ylabel(),
                        "legend": [t.get_text() for t in ax.get_legend().get_texts()]
                        if ax.get_legend()
                        else [],
                    }
                    for ax in fig.axes
                ]
            }
        )
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return seen


# ------------------------------------------------------------------------- compare


def _run(folder: Path, rmse: float, start: str, n: int = 48) -> None:
    (folder / ".hydra").mkdir(parents=True)
    metrics = {"test/rmse": rmse, "baseline/rmse": 100.0, "test/mae": rmse * 0.7}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / ".hydra" / "config.yaml").write_text("model:\n  name: tcn\n")
    stamps = pd.date_range(start, periods=n, freq="h", tz="UTC")
    pd.DataFrame({"timestamp": stamps, "y_true": 0.0, "y_pred": 0.0}).to_parquet(
        folder / "predictions.parquet"
    )


def test_compare_groups_and_warns_on_different_test_periods(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(tmp_path / "a", 101.0, "2026-03-01")
    _run(tmp_path / "b", 99.0, "2026-01-01")
    _run(tmp_path / "c", 100.5, "2026-03-01")
    table = comparison_table(find_runs([tmp_path]), sort="test/rmse")
    # grouped by period (first period: the best run's), sorted by test/rmse within a group
    assert list(table.index) == ["b", "c", "a"]
    assert list(table[PERIOD_COLUMN]) == [
        "2026-01-01 00:00 -> 2026-01-02 23:00",
        "2026-03-01 00:00 -> 2026-03-02 23:00",
        "2026-03-01 00:00 -> 2026-03-02 23:00",
    ]
    warning = period_warning(table)
    assert warning is not None and "2 different periods" in warning
    assert "2026-03-01 00:00 -> 2026-03-02 23:00 (2 run(s))" in warning
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "2 different periods" in out


def test_compare_same_period_has_no_period_column(tmp_path: Path) -> None:
    _run(tmp_path / "a", 101.0, "2026-03-01")
    _run(tmp_path / "b", 99.0, "2026-03-01")
    table = comparison_table(find_runs([tmp_path]))
    assert PERIOD_COLUMN not in table.columns and period_warning(table) is None


def test_compare_bars_are_differences_to_persistence(tmp_path: Path, saved: list) -> None:
    _run(tmp_path / "a", 101.0, "2026-03-01")
    _run(tmp_path / "b", 98.0, "2026-03-01")
    table = comparison_table(find_runs([tmp_path]))
    plot_metric(table, "test/rmse", tmp_path / "rmse.png")
    (ax,) = saved[0]["axes"]
    assert ax["bars"] == pytest.approx([-2.0, 1.0])  # % vs baseline/rmse = 100, table order
    lo, hi = ax["xlim"]
    assert lo < -2.0 and hi > 1.0 and hi - lo < 10.0  # a 3-point spread fills the axis
    assert "difference to zero-return persistence" in ax["xlabel"] and "%" in ax["xlabel"]


def test_compare_without_baseline_zooms_to_the_data(tmp_path: Path, saved: list) -> None:
    _run(tmp_path / "a", 101.0, "2026-03-01")
    _run(tmp_path / "b", 99.0, "2026-03-01")
    table = comparison_table(find_runs([tmp_path]))
    plot_metric(table, "test/mae", tmp_path / "mae.png")  # no baseline/mae column
    (ax,) = saved[0]["axes"]
    lo, hi = ax["xlim"]
    assert 60.0 < lo < 69.3 and 70.7 < hi < 80.0  # around 69.3 .. 70.7, not from 0
    assert "zoomed" in ax["xlabel"]


# ------------------------------------------------------------------------- attention


def test_attention_by_lag_is_relative_to_uniform(tmp_path: Path, saved: list) -> None:
    L = 64
    rng = np.random.default_rng(0)
    by_lag = (1.0 + 0.006 * rng.standard_normal((2, L))) / L  # +-0.6 % around uniform: noise
    plot_attention_by_lag(by_lag, tmp_path / "lag.png", "t")
    (ax,) = saved[0]["axes"]
    assert ax["ylim"][0] == 0.0 and ax["ylim"][1] >= 2.0  # noise looks flat, as it is
    assert (1.0, "uniform (1/L = 1/64)") in ax["hlines"]
    assert "uniform" in ax["ylabel"]
    peaked = np.full((1, L), 0.5 / (L - 1))
    peaked[0, 0] = 0.5  # half the weight on bar t: 32 x uniform
    plot_attention_by_lag(peaked, tmp_path / "peak.png", "t")
    assert saved[1]["axes"][0]["ylim"][1] >= 32.0


# ------------------------------------------------------------------------- monitor


def test_threshold_lines_merge_equal_levels() -> None:
    lines = ((0.5, "grey", "coin flip"), (0.5, "red", "alert"))
    assert threshold_lines(lines) == [(0.5, "red", "coin flip = alert")]
    apart = ((0.5, "grey", "coin flip"), (0.45, "red", "alert"))
    assert threshold_lines(apart) == list(apart)


def test_monitor_plot_shows_the_coin_flip_line(tmp_path: Path, saved: list) -> None:
    n = 30
    frame = pd.DataFrame(
        {
            "as_of": pd.date_range("2026-03-01", periods=n, freq="h", tz="UTC"),
            "da": np.linspace(0.4, 0.6, n),
            "mae_ratio": np.linspace(0.9, 1.1, n),
            "max_psi": np.linspace(0.0, 0.4, n),
        }
    )
    plot_monitor(frame, tmp_path / "monitor.png", "m", MonitorSpec())  # da_floor 0.5
    da = saved[0]["axes"][0]
    assert "coin flip = alert (0.5)" in da["legend"]
    plot_monitor(frame, tmp_path / "m2.png", "m", MonitorSpec(da_floor=0.45))
    assert {"coin flip (0.5)", "alert (0.45)"} <= set(saved[1]["axes"][0]["legend"])


def test_compare_multi_horizon_runs_show_each_horizon(tmp_path: Path, saved: list) -> None:
    """Runs with ``target.horizon=[1,4]`` have ``test/h1/rmse``..., no ``test/rmse``."""
    for name, (h1, h4) in {"a": (101.0, 205.0), "b": (99.0, 210.0)}.items():
        folder = tmp_path / name
        (folder / ".hydra").mkdir(parents=True)
        metrics = {
            "test/h1/rmse": h1,
            "test/h4/rmse": h4,
            "baseline/h1/rmse": 100.0,
            "baseline/h4/rmse": 200.0,
        }
        (folder / "metrics.json").write_text(json.dumps(metrics))
    table = comparison_table(find_runs([tmp_path]), sort="test/rmse")
    assert list(table.index) == ["b", "a"]  # by the shortest horizon's RMSE
    assert ["test/h1/rmse", "test/h4/rmse", "baseline/h1/rmse", "baseline/h4/rmse"] == [
        c for c in table.columns if "rmse" in c
    ]
    written = write_comparison(table, tmp_path / "out", "test/rmse")
    assert [p.name for p in written[2:]] == [
        "comparison_test_h1_rmse.png",
        "comparison_test_h4_rmse.png",
    ]
    assert saved[1]["axes"][0]["bars"] == pytest.approx([5.0, 2.5])  # h4 vs its persistence
