"""Significance tests: Diebold-Mariano, binomial hit-rate tests, block-bootstrap Sharpe intervals.

No reference DM implementation is installed (statsmodels and arch are absent), so the references
are a by-hand computation on a 10-point series and, for h=1 with the HLN correction, the
one-sample t-test of scipy (the two coincide exactly).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cryptoforecast.evaluation.predictions import make_prediction_frame
from cryptoforecast.evaluation.stats import (
    DMResult,
    binomial_test_accuracy,
    block_bootstrap_sharpe_ci,
    diebold_mariano,
    direction_test,
    dm_vs,
)

# ------------------------------------------------------------------ Diebold-Mariano: known values

# e2 = 0 and squared loss: d = e1**2 = [1, 4, 0, 1, 9, 1, 4, 0, 1, 1], mean 22/10 = 2.2
E1 = np.array([1.0, -2.0, 0.0, 1.0, 3.0, -1.0, 2.0, 0.0, -1.0, 1.0])
E2 = np.zeros(10)


def test_dm_by_hand_h1() -> None:
    # deviations d - 2.2: [-1.2, 1.8, -2.2, -1.2, 6.8, -1.2, 1.8, -2.2, -1.2, -1.2]
    gamma0 = (1.44 + 3.24 + 4.84 + 1.44 + 46.24 + 1.44 + 3.24 + 4.84 + 1.44 + 1.44) / 10  # 6.96
    var_mean = gamma0 / 10
    dm = 2.2 / math.sqrt(var_mean)
    hln = math.sqrt((10 + 1 - 2 * 1 + 1 * 0 / 10) / 10)  # sqrt(0.9)
    res = diebold_mariano(E1, E2, horizon=1)
    assert res.statistic == pytest.approx(dm * hln, rel=1e-12)
    assert res.p_value == pytest.approx(2 * sps.t(df=9).sf(dm * hln), rel=1e-10)
    assert res.mean_loss_diff == pytest.approx(2.2)
    assert (res.n, res.horizon, res.loss) == (10, 1, "squared")
    raw = diebold_mariano(E1, E2, horizon=1, hln=False)
    assert raw.statistic == pytest.approx(dm, rel=1e-12)
    assert raw.p_value == pytest.approx(2 * sps.norm.sf(dm), rel=1e-10)


def test_dm_by_hand_h3() -> None:
    # gamma_k = (1/n) sum_{t>=k} dev_t * dev_{t-k}
    gamma0 = 69.6 / 10
    gamma1 = (
        1.8 * -1.2 + -2.2 * 1.8 + -1.2 * -2.2 + 6.8 * -1.2 + -1.2 * 6.8
        + 1.8 * -1.2 + -2.2 * 1.8 + -1.2 * -2.2 + -1.2 * -1.2
    ) / 10  # fmt: skip
    gamma2 = (
        -2.2 * -1.2 + -1.2 * 1.8 + 6.8 * -2.2 + -1.2 * -1.2
        + 1.8 * 6.8 + -2.2 * -1.2 + -1.2 * 1.8 + -1.2 * -2.2
    ) / 10  # fmt: skip
    assert (gamma1, gamma2) == (pytest.approx(-2.184), pytest.approx(0.232))
    var_mean = (gamma0 + 2 * (gamma1 + gamma2)) / 10  # 0.3056 > 0: no fallback
    hln = math.sqrt((10 + 1 - 2 * 3 + 3 * 2 / 10) / 10)  # sqrt(0.56)
    expected = 2.2 / math.sqrt(var_mean) * hln
    res = diebold_mariano(E1, E2, horizon=3)
    assert res.horizon == 3
    assert res.statistic == pytest.approx(expected, rel=1e-12)
    assert res.p_value == pytest.approx(2 * sps.t(df=9).sf(expected), rel=1e-10)
    one_sided = diebold_mariano(E1, E2, horizon=3, alternative="greater")
    assert one_sided.p_value == pytest.approx(res.p_value / 2, rel=1e-10)
    assert diebold_mariano(E1, E2, horizon=3, alternative="less").p_value == pytest.approx(
        1 - res.p_value / 2, rel=1e-10
    )


def test_dm_h1_with_hln_is_the_one_sample_t_test() -> None:
    rng = np.random.default_rng(0)
    e1, e2 = rng.normal(size=80), rng.normal(scale=1.1, size=80)
    for loss, d in (("squared", e1**2 - e2**2), ("absolute", np.abs(e1) - np.abs(e2))):
        ref = sps.ttest_1samp(d, 0.0)
        res = diebold_mariano(e1, e2, loss=loss)
        assert res.statistic == pytest.approx(ref.statistic, rel=1e-10)
        assert res.p_value == pytest.approx(ref.pvalue, rel=1e-10)


def test_dm_identical_forecasts_give_nan_and_p_one() -> None:
    e = np.random.default_rng(1).normal(size=50)
    for h in (1, 3):
        res = diebold_mariano(e, e.copy(), horizon=h)
        assert math.isnan(res.statistic) and res.p_value == 1.0 and res.mean_loss_diff == 0.0
    # a constant non-zero differential: one model always better by the same amount
    const = diebold_mariano(np.full(20, 2.0), np.full(20, 1.0))
    assert const.statistic == math.inf and const.p_value == 0.0


def test_dm_clearly_better_model_is_strongly_negative() -> None:
    rng = np.random.default_rng(2)
    small, large = rng.normal(scale=0.5, size=500), rng.normal(scale=1.0, size=500)
    res = diebold_mariano(small, large, horizon=2)
    assert res.statistic < -10 and res.p_value < 1e-6 and res.mean_loss_diff < 0
    assert diebold_mariano(small, large, alternative="less").p_value < 1e-6
    assert diebold_mariano(small, large, alternative="greater").p_value > 1 - 1e-6
    # swapping the models flips the sign
    swapped = diebold_mariano(large, small, horizon=2)
    assert swapped.statistic == pytest.approx(-res.statistic)


def test_dm_negative_variance_falls_back_to_h1(caplog: pytest.LogCaptureFixture) -> None:
    # alternating differential: strong negative lag-1 autocovariance makes V < 0 at h=2
    d_sign = np.tile([1.0, -1.0], 10)
    e1 = np.sqrt(1.5 + d_sign)
    e2 = np.ones(20)
    with caplog.at_level(logging.WARNING, logger="cryptoforecast.evaluation.stats"):
        res = diebold_mariano(e1, e2, horizon=2)
    assert res.horizon == 1 and "falling back" in caplog.text
    assert res.statistic == pytest.approx(diebold_mariano(e1, e2, horizon=1).statistic)


def test_dm_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        diebold_mariano(np.ones(9), np.zeros(9))
    with pytest.raises(ValueError, match="aligned"):
        diebold_mariano(np.ones(12), np.zeros(11))
    with pytest.raises(ValueError, match="NaN"):
        diebold_mariano(np.r_[np.ones(11), np.nan], np.zeros(12))
    with pytest.raises(ValueError, match="horizon"):
        diebold_mariano(E1, E2, horizon=0)
    with pytest.raises(ValueError, match="loss="):
        diebold_mariano(E1, E2, loss="huber")
    with pytest.raises(ValueError, match="alternative="):
        diebold_mariano(E1, E2, alternative="two_sided")


def _ma_errors(rng: np.random.Generator, theta: list[float], reps: int, n: int) -> np.ndarray:
    """``[2, reps, n]`` independent MA(q) series ``e_t = eps_t + sum_j theta_j eps_{t-j}``."""
    q = len(theta)
    eps = rng.normal(size=(2, reps, n + q))
    e = eps[:, :, q:].copy()
    for j, w in enumerate(theta, start=1):
        e += w * eps[:, :, q - j : q - j + n]  # eps_{t-j}
    return e


@pytest.mark.parametrize(("horizon", "theta"), [(1, []), (4, [0.6, 0.4, 0.2])])
def test_dm_size_under_the_null(horizon: int, theta: list[float]) -> None:
    """Two independent equal-variance error series: about 5% rejections at the 5% level."""
    e = _ma_errors(np.random.default_rng(11), theta, reps=500, n=200)
    p = np.array([diebold_mariano(e[0, i], e[1, i], horizon=horizon).p_value for i in range(500)])
    # 500 runs: the rate's standard error at 5% is 1%; seeds 0-2 gave 4-6.6% for n = 100-500
    assert 0.02 <= np.mean(p < 0.05) <= 0.09


# ------------------------------------------------------------------ dm_vs on PredictionFrames


def _frame(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    symbol: str = "BTC",
    fold: int = 0,
    start: str = "2024-01-01",
) -> pd.DataFrame:
    n, h = y_true.shape
    ts = pd.date_range(start, periods=n, freq="1h", tz="UTC")
    return make_prediction_frame(ts, symbol, fold, [1, 4][:h], y_true, y_pred, np.full(n, 100.0))


def test_dm_vs_matches_diebold_mariano_per_horizon() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=(300, 2))
    good, ref = y + rng.normal(scale=0.5, size=y.shape), np.zeros_like(y)
    out = dm_vs(_frame(y, good), _frame(y, ref), loss="absolute")
    assert list(out) == [1, 4]
    for j, h in enumerate([1, 4]):
        direct = diebold_mariano(good[:, j] - y[:, j], -y[:, j], horizon=h, loss="absolute")
        assert out[h] == DMResult(*direct)
    only = dm_vs(_frame(y, good), _frame(y, ref), horizon=4)
    assert list(only) == [4] and only[4].horizon == 4 and only[4].loss == "squared"
    with pytest.raises(ValueError, match="horizon 2 not in"):
        dm_vs(_frame(y, good), _frame(y, ref), horizon=2)


def test_dm_vs_averages_symbols_per_timestamp_and_ignores_row_order() -> None:
    rng = np.random.default_rng(4)
    y_a, y_b = rng.normal(size=(100, 1)), rng.normal(size=(100, 1))
    p_a, p_b = rng.normal(size=(100, 1)), rng.normal(size=(100, 1))
    model = pd.concat([_frame(y_a, p_a, "BTC"), _frame(y_b, p_b, "ETH")])
    ref = pd.concat([_frame(y_a, 0 * y_a, "BTC"), _frame(y_b, 0 * y_b, "ETH")])
    out = dm_vs(model.sample(frac=1.0, random_state=0), ref)[1]
    d = ((p_a - y_a) ** 2 - y_a**2 + (p_b - y_b) ** 2 - y_b**2)[:, 0] / 2
    assert out.n == 100
    assert out.statistic == pytest.approx(sps.ttest_1samp(d, 0.0).statistic, rel=1e-10)


def test_dm_vs_refuses_misaligned_frames() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(size=(100, 1))
    model = _frame(y, y * 0.5)
    # the reference starts 15 bars later: 85 of the model's 100 rows match
    shifted = _frame(y[15:], 0 * y[15:], start="2024-01-01 15:00")
    with pytest.raises(ValueError, match="misaligned"):
        dm_vs(model, shifted)
    with pytest.raises(ValueError, match="misaligned"):
        dm_vs(model, _frame(y, 0 * y, fold=1))  # same bars, other fold label
    other_truth = _frame(y + 0.1, 0 * y)
    with pytest.raises(ValueError, match="y_true differs"):
        dm_vs(model, other_truth)
    # 95% overlap is accepted and only the matched rows are tested
    near = _frame(y[5:], 0 * y[5:], start="2024-01-01 05:00")
    assert dm_vs(model, near)[1].n == 95


# ------------------------------------------------------------------ binomial / direction tests


def test_binomial_hand_value_and_scipy() -> None:
    # P(X >= 9 | n=10, p=0.5) = (C(10,9) + C(10,10)) / 2**10 = 11/1024
    assert binomial_test_accuracy(9, 10) == pytest.approx(11 / 1024, rel=1e-12)
    for k, n, p0, alt in (
        (60, 100, 0.5, "greater"),
        (40, 100, 0.5, "less"),
        (7, 20, 0.3, "two-sided"),
    ):
        ref = sps.binomtest(k, n, p=p0, alternative=alt).pvalue
        assert binomial_test_accuracy(k, n, p0, alt) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError):
        binomial_test_accuracy(11, 10)
    with pytest.raises(ValueError):
        binomial_test_accuracy(1, 10, p0=1.5)


def test_direction_test_regression_frame() -> None:
    y = np.array([[0.1], [-0.2], [0.3], [0.0], [-0.1], [0.2], [0.05], [-0.3], [0.1], [0.2]])
    # hits on non-zero y: +,+ / -,- / +,- (miss) / zero row skipped / -,0 (0 is "not up": hit)
    pred = np.array([[0.2], [-0.1], [-0.3], [0.5], [0.0], [0.1], [0.1], [-0.1], [0.3], [0.4]])
    res = direction_test(_frame(y, pred))[1]
    assert (res.n, res.accuracy) == (9, pytest.approx(8 / 9))
    assert res.p_value == pytest.approx(sps.binomtest(8, 9, 0.5, "greater").pvalue)


def test_direction_test_classifier_frame() -> None:
    labels = np.array([[1.0], [0.0], [1.0], [1.0], [0.0], [0.0]])
    frame = _frame(labels, labels)
    frame["p_up"] = [0.9, 0.2, 0.4, 0.6, 0.5, 0.7]  # hits: y y n y y(0.5 is "down") n
    res = direction_test(frame)[1]
    assert (res.n, res.accuracy) == (6, pytest.approx(4 / 6))
    assert res.p_value == pytest.approx(binomial_test_accuracy(4, 6))


# ------------------------------------------------------------------ bootstrap Sharpe interval


def test_bootstrap_covers_the_true_sharpe() -> None:
    mu, sd, ppy = 0.05, 1.0, 252.0
    true_sharpe = mu / sd * math.sqrt(ppy)
    rng = np.random.default_rng(0)
    covered = 0
    for i in range(200):
        r = rng.normal(mu, sd, 1000)
        sharpe, lo, hi = block_bootstrap_sharpe_ci(r, ppy, n_boot=1000, seed=i)
        assert lo < sharpe < hi
        assert sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(ppy), rel=1e-10)
        covered += lo <= true_sharpe <= hi
    assert 0.88 <= covered / 200 <= 0.99  # this seed: 0.95


def test_bootstrap_is_deterministic_per_seed() -> None:
    r = np.random.default_rng(1).normal(0.001, 0.01, 5000)
    a = block_bootstrap_sharpe_ci(r, 8760, seed=7)
    assert a == block_bootstrap_sharpe_ci(r, 8760, seed=7)
    assert a[1:] != block_bootstrap_sharpe_ci(r, 8760, seed=8)[1:]
    assert a[0] == block_bootstrap_sharpe_ci(r, 8760, seed=8)[0]


def test_block_bootstrap_is_wider_for_autocorrelated_returns() -> None:
    rng = np.random.default_rng(3)
    n, phi = 2000, 0.5
    eps = rng.normal(0.02, 1.0, n)
    r = np.empty(n)
    r[0] = eps[0]
    for t in range(1, n):
        r[t] = phi * r[t - 1] + eps[t]
    _, lo_b, hi_b = block_bootstrap_sharpe_ci(r, 252)  # block ceil(2000**(1/3)) = 13
    _, lo_i, hi_i = block_bootstrap_sharpe_ci(r, 252, block=1)
    # the variance of the mean grows by (1+phi)/(1-phi) = 3, so ~1.7x the width; seeds: 1.4-1.7
    assert hi_b - lo_b > 1.3 * (hi_i - lo_i)


def test_bootstrap_edge_cases() -> None:
    assert all(math.isnan(v) for v in block_bootstrap_sharpe_ci(np.full(100, 0.01), 365))
    assert all(math.isnan(v) for v in block_bootstrap_sharpe_ci(np.zeros(100), 365))
    r = np.random.default_rng(2).normal(size=50)
    # one circular block of length n: every resample is a rotation, with the same Sharpe
    s, lo, hi = block_bootstrap_sharpe_ci(r, 365, block=50)
    assert lo == pytest.approx(s, rel=1e-9) and hi == pytest.approx(s, rel=1e-9)
    with pytest.raises(ValueError, match="block"):
        block_bootstrap_sharpe_ci(r, 365, block=51)
    with pytest.raises(ValueError, match="NaN"):
        block_bootstrap_sharpe_ci(np.r_[r, np.nan], 365)
    with pytest.raises(ValueError, match="alpha"):
        block_bootstrap_sharpe_ci(r, 365, alpha=1.0)
