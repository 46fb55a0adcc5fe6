"""Numpy metrics: hand-computed values, agreement with scikit-learn/scipy/torchmetrics, errors."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
)
from torchmetrics.regression import MeanAbsoluteError

from cryptoforecast.evaluation import metrics as M

PAIR_METRICS: list[Callable[[np.ndarray, np.ndarray], float]] = [
    M.rmse,
    M.mae,
    M.mape,
    M.r2,
    M.directional_accuracy,
    M.information_coefficient,
]


@pytest.fixture
def rand_pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    y = rng.normal(0.0, 0.02, 500)
    return y, 0.5 * y + rng.normal(0.0, 0.02, 500)


# --- hand-computed values -------------------------------------------------------------------


def test_known_values() -> None:
    y, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 6.0])
    # errors 0, -1, 1, -2 -> squared 0, 1, 1, 4
    assert M.rmse(y, p) == pytest.approx(math.sqrt(6.0 / 4.0))
    assert M.mae(y, p) == pytest.approx(1.0)
    assert M.mape(y, p) == pytest.approx(100.0 * (0 + 1 / 2 + 1 / 3 + 2 / 4) / 4)
    # SS_res = 6, mean 2.5, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert M.r2(y, p) == pytest.approx(1.0 - 6.0 / 5.0)
    # ranks of p: 1, 3, 2, 4 -> d^2 = 0, 1, 1, 0 -> rho = 1 - 6*2 / (4*15)
    assert M.information_coefficient(y, p) == pytest.approx(0.8)


def test_mape_skips_zero_denominators() -> None:
    assert M.mape([0.0, 2.0], [5.0, 1.0]) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="zero"):
        M.mape([0.0, 0.0], [1.0, 1.0])


def test_r2_constant_target_follows_sklearn() -> None:
    assert M.r2([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert M.r2([1.0, 1.0], [1.0, 2.0]) == 0.0 == r2_score([1.0, 1.0], [1.0, 2.0])


def test_directional_accuracy_zero_handling() -> None:
    y = np.array([0.01, -0.02, 0.0, 0.03, -0.01])
    p = np.array([0.02, 0.0, 0.5, -0.01, -0.03])
    # row 2 (y == 0) excluded; p == 0 is "not up" -> correct for the down move in row 1
    # kept rows: (+,+) ok, (-,0) ok, (+,-) wrong, (-,-) ok -> 3 / 4
    assert M.directional_accuracy(y, p) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="zero"):
        M.directional_accuracy([0.0, 0.0], [1.0, -1.0])


def test_precision_recall_f1_known_and_zero_division() -> None:
    t = np.array([True, True, False, False, True])
    p = np.array([True, False, True, False, True])
    precision, recall, f1 = M.precision_recall_f1(t, p)  # tp 2, fp 1, fn 1
    assert (precision, recall) == pytest.approx((2 / 3, 2 / 3))
    assert f1 == pytest.approx(2 / 3)
    assert M.precision_recall_f1([True, False], [False, False]) == (0.0, 0.0, 0.0)
    assert M.precision_recall_f1([1, 0], [1, 1]) == pytest.approx((0.5, 1.0, 2 / 3))


def test_information_coefficient_constant_is_nan() -> None:
    assert math.isnan(M.information_coefficient([0.1, -0.2, 0.3], [0.0, 0.0, 0.0]))
    assert math.isnan(M.information_coefficient([0.1], [0.2]))


def test_price_from_log_return() -> None:
    out = M.price_from_log_return([100.0, 200.0], [0.0, math.log(1.5)])
    np.testing.assert_allclose(out, [100.0, 300.0])
    with pytest.raises(ValueError, match="positive"):
        M.price_from_log_return([0.0, 1.0], [0.1, 0.1])


def test_regression_report_units() -> None:
    base = np.array([100.0, 200.0, 50.0, 80.0])
    y = np.array([0.01, -0.02, 0.03, -0.01])
    p = np.array([0.02, 0.01, 0.01, -0.02])
    report = M.regression_report(y, p, base)
    assert set(report) == {
        "rmse",
        "mae",
        "mape",
        "r2",
        "directional_accuracy",
        "precision",
        "recall",
        "f1",
        "ic",
    }
    price_true, price_pred = base * np.exp(y), base * np.exp(p)
    assert report["mae"] == pytest.approx(np.mean(np.abs(price_true - price_pred)))
    assert report["rmse"] == pytest.approx(np.sqrt(np.mean((price_true - price_pred) ** 2)))
    assert report["mape"] == pytest.approx(
        100 * np.mean(np.abs(price_true - price_pred) / price_true)
    )
    assert report["r2"] == pytest.approx(r2_score(y, p))
    # signs: (+,+) (-,+) (+,+) (-,-) -> 3/4; up class: tp 2, fp 1, fn 0
    assert report["directional_accuracy"] == pytest.approx(0.75)
    assert (report["precision"], report["recall"]) == pytest.approx((2 / 3, 1.0))
    assert all(isinstance(v, float) for v in report.values())


# --- agreement with the reference libraries -------------------------------------------------


def test_agrees_with_sklearn(rand_pair: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = rand_pair
    assert M.rmse(y, p) == pytest.approx(math.sqrt(mean_squared_error(y, p)), rel=1e-12)
    assert M.mae(y, p) == pytest.approx(mean_absolute_error(y, p), rel=1e-12)
    assert M.r2(y, p) == pytest.approx(r2_score(y, p), rel=1e-12)
    prices_true, prices_pred = 100 * np.exp(y), 100 * np.exp(p)
    assert M.mape(prices_true, prices_pred) == pytest.approx(
        100 * mean_absolute_percentage_error(prices_true, prices_pred), rel=1e-12
    )


def test_precision_recall_f1_agrees_with_sklearn(rand_pair: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = rand_pair
    t_up, p_up = y > 0, p > 0
    ref = precision_recall_fscore_support(t_up, p_up, average="binary", zero_division=0)
    assert M.precision_recall_f1(t_up, p_up) == pytest.approx(ref[:3], rel=1e-12)


@pytest.mark.parametrize("with_ties", [False, True])
def test_ic_agrees_with_spearmanr(
    rand_pair: tuple[np.ndarray, np.ndarray], with_ties: bool
) -> None:
    y, p = rand_pair
    if with_ties:  # rounding creates many ties on both sides
        y, p = np.round(y, 2), np.round(p, 2)
    ref = spearmanr(y, p).statistic
    assert M.information_coefficient(y, p) == pytest.approx(ref, rel=1e-10)


def test_mae_agrees_with_torchmetrics(rand_pair: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = rand_pair
    tm = MeanAbsoluteError().set_dtype(torch.float64)  # metric states default to float32
    tm.update(torch.from_numpy(p), torch.from_numpy(y))
    assert M.mae(y, p) == pytest.approx(float(tm.compute()), rel=1e-10)
    # the float32 tensors LitForecaster logs agree to float32 precision
    tm32 = MeanAbsoluteError()
    tm32.update(torch.from_numpy(p).float(), torch.from_numpy(y).float())
    assert M.mae(y, p) == pytest.approx(float(tm32.compute()), rel=1e-5)


# --- input validation ------------------------------------------------------------------------


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_rejects_shape_mismatch(metric: Callable[[np.ndarray, np.ndarray], float]) -> None:
    with pytest.raises(ValueError, match="shape"):
        metric(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="1-D"):
        metric(np.ones((3, 2)), np.ones((3, 2)))


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_rejects_nan(metric: Callable[[np.ndarray, np.ndarray], float]) -> None:
    with pytest.raises(ValueError, match="NaN"):
        metric(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="NaN"):
        metric(np.array([1.0, 2.0]), np.array([np.inf, 2.0]))


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_rejects_empty(metric: Callable[[np.ndarray, np.ndarray], float]) -> None:
    with pytest.raises(ValueError, match="empty"):
        metric(np.array([]), np.array([]))


def test_composite_functions_validate_too() -> None:
    with pytest.raises(ValueError, match="shape"):
        M.precision_recall_f1([True, False], [True])
    with pytest.raises(ValueError, match="0/1"):
        M.precision_recall_f1([1.0, np.nan], [1, 0])
    with pytest.raises(ValueError, match="empty"):
        M.precision_recall_f1([], [])
    with pytest.raises(ValueError, match="shape"):
        M.regression_report([0.1, 0.2], [0.1, 0.2], [100.0])
    with pytest.raises(ValueError, match="NaN"):
        M.regression_report([0.1, 0.2], [0.1, 0.2], [100.0, np.nan])
    with pytest.raises(ValueError, match="shape"):
        M.price_from_log_return([100.0, 101.0], [0.1])


def test_classification_report_agrees_with_sklearn() -> None:
    from sklearn.metrics import (
        accuracy_score,
        brier_score_loss,
        log_loss,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    from cryptoforecast.evaluation.metrics import classification_report

    rng = np.random.default_rng(3)
    y = rng.random(500) > 0.45
    p = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, 500), 0, 1)
    p[:3] = [0.0, 1.0, 0.5]  # edges: exact 0/1 and the 0.5 threshold (predicted "not up")
    rep = classification_report(y, p)
    pr, rc, f1, _ = precision_recall_fscore_support(y, p > 0.5, average="binary", zero_division=0)
    assert rep["accuracy"] == pytest.approx(accuracy_score(y, p > 0.5))
    assert rep["directional_accuracy"] == rep["accuracy"]
    assert (rep["precision"], rep["recall"], rep["f1"]) == pytest.approx((pr, rc, f1))
    assert rep["brier"] == pytest.approx(brier_score_loss(y, p))
    assert rep["log_loss"] == pytest.approx(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)))
    assert rep["auc"] == pytest.approx(roc_auc_score(y, p))


def test_classification_report_edge_cases() -> None:
    from cryptoforecast.evaluation.metrics import classification_report

    assert np.isnan(classification_report(np.ones(4, bool), np.full(4, 0.7))["auc"])
    with pytest.raises(ValueError, match=r"p_up must lie in \[0, 1\]"):
        classification_report(np.array([True, False]), np.array([1.2, 0.1]))
