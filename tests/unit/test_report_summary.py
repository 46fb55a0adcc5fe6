"""The console summary: labelled cells, per-horizon metrics, tests beside them, 80 columns."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from cryptoforecast.evaluation.predictions import make_prediction_frame
from cryptoforecast.evaluation.stats import direction_test, dm_vs, summary_tests
from cryptoforecast.utils.report import print_summary

REGRESSION = ("rmse", "mae", "mape", "r2", "directional_accuracy", "f1", "ic")
CLASSIFICATION = ("accuracy", "auc", "brier", "log_loss", "f1", "directional_accuracy")
BACKTEST = {
    "total_return": -0.2553,
    "sharpe": -1.234,
    "max_drawdown": -0.31,
    "n_trades": 36.0,
    "exposure": 0.4711,
    "bh_total_return": -0.209,
    "bh_sharpe": -0.9,
    "bh_max_drawdown": -0.28,
}


# realistic widths: BTC price errors in the thousands for h=24, negative R² and IC
VALUES = {"rmse": 1444.53, "mae": 1311.06, "mape": 1.437, "log_loss": 18.8686}


def _metrics(names: tuple[str, ...], keys: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in keys:
        for name in names:
            for k, prefix in enumerate(("test", "baseline", "baseline_last")):
                out[f"{prefix}{key}/{name}"] = VALUES.get(name, -0.4975) + 0.01 * k
        out[f"test{key}/dm_stat"], out[f"test{key}/dm_p"] = -12.5, 0.0000123  # widest cell
        out[f"test{key}/hit_p"] = 0.0456
    out.update({f"backtest/{k}": v for k, v in BACKTEST.items()})
    return out


def _render(metrics: dict[str, float], symbols: tuple[str, ...] = ()) -> list[str]:
    console = Console(file=io.StringIO(), width=80, record=True)
    print_summary(metrics, "attention_lstm vs persistence (BTCUSDT)", symbols, console=console)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    return lines


def _row(lines: list[str], label: str) -> list[str]:
    """The cells of the one line whose first cell is ``label`` (so it did not wrap)."""
    rows = [line.strip() for line in lines if line.strip().startswith(f"{label}  ")]
    assert len(rows) == 1, f"{label!r} is not one unwrapped row:\n" + "\n".join(lines)
    return re.split(r"\s{2,}", rows[0])


def test_regression_rows_are_labelled_with_tests_beside() -> None:
    lines = _render(_metrics(REGRESSION, [""]))
    assert "zero ret." in lines[2] and "last chg." in lines[2] and "vs zero ret." in lines[2]
    assert _row(lines, "RMSE (price)") == [
        "RMSE (price)",
        "1444.53",
        "1444.54",
        "1444.55",
        "DM -12.50 p <0.001",
    ]
    assert _row(lines, "dir. accuracy")[-1] == "binom. p 0.046"
    for label in ("MAE (price)", "MAPE (%)", "R² (returns)", "F1 of up", "IC (Spearman)"):
        _row(lines, label)
    text = "\n".join(lines)
    assert "Diebold-Mariano" in text and "binom. p" in text


def test_multi_horizon_shows_key_metrics_per_horizon() -> None:
    lines = _render(_metrics(REGRESSION, ["/h1", "/h4", "/h24"]))
    for h in (1, 4, 24):
        assert _row(lines, f"h{h} RMSE (price)")[-1] == "DM -12.50 p <0.001"
        assert _row(lines, f"h{h} dir. accuracy")[-1] == "binom. p 0.046"
        for label in ("MAE (price)", "R² (returns)", "IC (Spearman)"):
            _row(lines, f"h{h} {label}")


def test_classification_shows_auc_brier_log_loss() -> None:
    lines = _render(_metrics(CLASSIFICATION, [""]))
    assert _row(lines, "Brier score")[-1] == "DM -12.50 p <0.001"
    assert _row(lines, "accuracy")[-1] == "binom. p 0.046"
    for label in ("AUC", "log loss", "F1 of up"):
        _row(lines, label)
    assert "p_up" in "\n".join(lines)  # the DM loss is named


def test_backtest_rows_are_labelled_and_sign_block_is_a_second_row() -> None:
    metrics = _metrics(REGRESSION, [""])
    lines = _render(metrics)
    header = next(line for line in lines if "strategy" in line)
    for col in ("total ret.", "Sharpe", "max DD", "trades", "exposure"):
        assert col in header
    assert _row(lines, "model") == ["model", "-25.5 %", "-1.23", "-31.0 %", "36", "47.1 %"]
    assert _row(lines, "buy & hold") == [
        "buy & hold",
        "-20.9 %",
        "-0.90",
        "-28.0 %",
        "-",
        "100.0 %",
    ]
    assert not any(line.strip().startswith("model, sign rule") for line in lines)
    metrics.update({f"backtest_sign/{k}": v / 2 for k, v in BACKTEST.items()})
    lines = _render(metrics)
    assert _row(lines, "model, sign rule")[1:3] == ["-12.8 %", "-0.62"]


def test_multi_symbol_sections_fit() -> None:
    metrics = _metrics(REGRESSION, ["", "/BTCUSDT", "/ETHUSDT"])
    for sym in ("BTCUSDT", "ETHUSDT"):
        metrics.update({f"backtest/{sym}/{k}": v for k, v in BACKTEST.items()})
    lines = _render(metrics, ("BTCUSDT", "ETHUSDT"))
    for sym in ("BTCUSDT", "ETHUSDT"):
        _row(lines, f"{sym} RMSE (price)")
        _row(lines, f"{sym} dir. accuracy")
        assert _row(lines, f"{sym} model")[1] == "-25.5 %"
        _row(lines, f"{sym} buy & hold")


def _frames(horizons: list[int], classifier: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 200
    ts = pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC")
    y = rng.normal(0, 0.01, (n, len(horizons)))
    pred = 0.5 * y + rng.normal(0, 0.005, y.shape)
    close = np.full(n, 100.0)
    if classifier:
        labels = (y > 0).astype(float)
        p = 1 / (1 + np.exp(-pred * 300))
        model = make_prediction_frame(
            ts, "BTCUSDT", 0, horizons, labels, (p > 0.5) * 1.0, close, p
        )
        half = np.full_like(p, 0.5)
        ref = make_prediction_frame(ts, "BTCUSDT", 0, horizons, labels, half * 0, close, half)
        return model, ref
    model = make_prediction_frame(ts, "BTCUSDT", 0, horizons, y, pred, close)
    return model, make_prediction_frame(ts, "BTCUSDT", 0, horizons, y, 0 * pred, close)


def test_summary_tests_match_dm_and_binomial_per_horizon() -> None:
    model, ref = _frames([1, 4])
    out = summary_tests(model, ref)
    dm, hits = dm_vs(model, ref), direction_test(model)
    for h in (1, 4):
        assert out[f"test/h{h}/dm_stat"] == pytest.approx(dm[h].statistic)
        assert out[f"test/h{h}/dm_p"] == pytest.approx(dm[h].p_value)
        assert out[f"test/h{h}/hit_p"] == pytest.approx(hits[h].p_value)
    assert out["test/h1/dm_stat"] < 0  # the informative forecast beats zero


def test_summary_tests_classifier_uses_brier_of_p_up() -> None:
    model, ref = _frames([1], classifier=True)
    out = summary_tests(model, ref)
    brier_m = (model["p_up"] - model["y_true"]) ** 2
    brier_r = (ref["p_up"] - ref["y_true"]) ** 2
    assert np.sign(out["test/dm_stat"]) == np.sign(brier_m.mean() - brier_r.mean())
    assert 0.0 <= out["test/hit_p"] <= 1.0


def test_summary_tests_too_short_gives_nan() -> None:
    model, ref = _frames([1])
    out = summary_tests(model.head(5), ref.head(5))
    assert np.isnan(out["test/dm_stat"]) and np.isnan(out["test/dm_p"])
    assert 0.0 <= out["test/hit_p"] <= 1.0
