"""Significance tests for forecast comparisons and backtest Sharpe ratios (numpy/scipy only).

- :func:`diebold_mariano`: equal predictive accuracy of two forecasts (Diebold & Mariano, 1995)
  with the Harvey, Leybourne & Newbold (1997) small-sample correction; :func:`dm_vs` runs it per
  horizon on two aligned ``PredictionFrame`` s.
- :func:`binomial_test_accuracy` / :func:`direction_test`: is a hit rate above a coin's?
- :func:`block_bootstrap_sharpe_ci`: percentile interval of an annualised Sharpe ratio from a
  circular moving-block bootstrap, which keeps the serial dependence of returns.

Sign convention everywhere: model 1 (or ``frame_model``) against model 2 (``frame_ref``); the loss
differential is ``d_t = L(e1_t) - L(e2_t)``, so a **negative** DM statistic means model 1 has the
lower loss.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps

FloatArray = npt.NDArray[np.float64]

log = logging.getLogger(__name__)

__all__ = [
    "DMResult",
    "DirectionResult",
    "binomial_test_accuracy",
    "block_bootstrap_sharpe_ci",
    "diebold_mariano",
    "direction_test",
    "dm_vs",
    "summary_tests",
]

LOSSES = ("squared", "absolute")
ALTERNATIVES = ("two-sided", "less", "greater")
KEYS = ["symbol", "fold", "horizon", "timestamp"]
MIN_DM_SAMPLES = 10
MIN_OVERLAP = 0.9


class DMResult(NamedTuple):
    """Outcome of a Diebold-Mariano test.

    Attributes:
        statistic: DM statistic (HLN-corrected when requested); negative when model 1 has the
            lower mean loss. NaN when the loss differential has zero variance.
        p_value: p-value for the chosen alternative (1.0 when the statistic is NaN).
        mean_loss_diff: mean of ``L(e1) - L(e2)``.
        n: number of loss differentials.
        horizon: autocovariance horizon used (lags ``0 .. horizon-1``); 1 when a negative
            long-run variance forced the fallback (see :func:`diebold_mariano`).
        loss: ``squared`` or ``absolute``.
    """

    statistic: float
    p_value: float
    mean_loss_diff: float
    n: int
    horizon: int
    loss: str


class DirectionResult(NamedTuple):
    """Hit rate of directional calls and its one-sided binomial p-value against a coin.

    Attributes:
        accuracy: share of correct directional calls.
        n: number of calls scored.
        p_value: ``P(X >= hits)`` for ``X ~ Binomial(n, p0)``.
    """

    accuracy: float
    n: int
    p_value: float


def _loss(e: FloatArray, loss: str) -> FloatArray:
    return e**2 if loss == "squared" else np.abs(e)


def _p_value(stat: float, alternative: str, dist: sps.rv_continuous | sps.rv_frozen) -> float:
    if alternative == "two-sided":
        return float(min(1.0, 2.0 * dist.sf(abs(stat))))
    if alternative == "less":
        return float(dist.cdf(stat))
    return float(dist.sf(stat))


def _autocovariances(d: FloatArray, max_lag: int) -> FloatArray:
    """``gamma_k = (1/n) sum_{t>k} (d_t - mean)(d_{t-k} - mean)`` for ``k = 0 .. max_lag``."""
    n = d.size
    dc = d - d.mean()
    return np.array([float(dc[k:] @ dc[: n - k]) / n for k in range(max_lag + 1)])


def _dm_from_diff(d: FloatArray, horizon: int, loss: str, alternative: str, hln: bool) -> DMResult:
    """DM test on a validated loss differential ``d`` (see :func:`diebold_mariano`)."""
    n = d.size
    mean_d = float(d.mean())
    gammas = _autocovariances(d, horizon - 1)
    # gamma_0 at rounding level of d's scale is a constant d (float mean of a constant is not
    # always exact); every |gamma_k| <= gamma_0, so the whole long-run variance is zero then.
    scale = float(np.max(np.abs(d)))
    if gammas[0] <= (64.0 * np.finfo(np.float64).eps * scale) ** 2:
        if scale == 0.0 or mean_d == 0.0:
            return DMResult(float("nan"), 1.0, mean_d, n, horizon, loss)
        stat = math.copysign(math.inf, mean_d)
        p_inf = _p_value(stat, alternative, sps.norm)
        return DMResult(stat, p_inf, mean_d, n, horizon, loss)
    lrv = float(gammas[0] + 2.0 * gammas[1:].sum())
    if lrv <= 0.0:
        log.warning(
            "Diebold-Mariano: negative long-run variance with horizon=%d (n=%d); "
            "falling back to horizon=1",
            horizon,
            n,
        )
        horizon, lrv = 1, float(gammas[0])
    stat = mean_d / math.sqrt(lrv / n)
    if hln:
        h = horizon
        stat *= math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
        p = _p_value(stat, alternative, sps.t(df=n - 1))
    else:
        p = _p_value(stat, alternative, sps.norm)
    return DMResult(float(stat), p, mean_d, n, horizon, loss)


def diebold_mariano(
    e1: npt.ArrayLike,
    e2: npt.ArrayLike,
    horizon: int = 1,
    loss: str = "squared",
    alternative: str = "two-sided",
    hln: bool = True,
) -> DMResult:
    """Diebold-Mariano test of equal predictive accuracy for two aligned error series.

    With ``d_t = L(e1_t) - L(e2_t)`` and sample autocovariances ``gamma_k`` (divisor ``n``), the
    long-run variance of the mean is ``V = (gamma_0 + 2 * sum_{k=1}^{h-1} gamma_k) / n``: optimal
    ``h``-step forecasts have MA(h-1) errors, so the rectangular (truncated, unweighted) kernel
    stops at lag ``h - 1`` (the DM convention, as R's ``forecast::dm.test``). The statistic is
    ``mean(d) / sqrt(V)``. With ``hln`` it is multiplied by Harvey, Leybourne & Newbold's (1997)
    factor ``sqrt((n + 1 - 2h + h(h-1)/n) / n)`` and referred to Student-t with ``n - 1`` degrees
    of freedom; otherwise to the standard normal. For ``h = 1`` with ``hln`` this is exactly the
    one-sample t-test of ``mean(d) = 0``.

    Edge cases:
        - zero variance of ``d`` (e.g. identical forecasts): statistic NaN and p-value 1.0 when
          ``mean(d) == 0``; when ``d`` is a non-zero constant (one model always better by the
          same amount) the statistic is ``+-inf`` and the p-value its limit (0 or 1).
        - the rectangular kernel can give a negative ``V`` for ``h > 1``; then, as R's
          ``dm.test``, the test is redone with ``h = 1`` (logged as a warning, and the result's
          ``horizon`` is 1).

    Args:
        e1: errors of model 1 ``[N]`` (forecast minus outcome; the sign does not matter).
        e2: errors of model 2 ``[N]``, aligned with ``e1``.
        horizon: forecast horizon ``h >= 1`` in rows (lags ``1 .. h-1`` enter ``V``); assumes one
            row per bar.
        loss: ``squared`` or ``absolute``.
        alternative: ``two-sided``; ``less`` (model 1 has lower expected loss); ``greater``
            (model 1 has higher expected loss).
        hln: apply the HLN correction and use Student-t(n-1); else the asymptotic normal.

    Returns:
        :class:`DMResult`.

    Raises:
        ValueError: on shape mismatch, non-finite errors, ``N < 10``, ``horizon`` outside
            ``[1, N)`` or an unknown ``loss``/``alternative``.

    Shapes:
        ``[N], [N] -> DMResult``.
    """
    a = np.asarray(e1, dtype=np.float64)
    b = np.asarray(e2, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"expected two aligned 1-D arrays, got shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("errors contain NaN or inf")
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r}; choose one of {', '.join(LOSSES)}")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative={alternative!r}; choose one of {', '.join(ALTERNATIVES)}")
    n = a.size
    if n < MIN_DM_SAMPLES:
        raise ValueError(f"Diebold-Mariano needs at least {MIN_DM_SAMPLES} errors, got {n}")
    if not 1 <= horizon < n:
        raise ValueError(f"horizon must lie in [1, {n}), got {horizon}")

    return _dm_from_diff(_loss(a, loss) - _loss(b, loss), horizon, loss, alternative, hln)


def _aligned(frame_model: pd.DataFrame, frame_ref: pd.DataFrame) -> pd.DataFrame:
    """Inner join on (symbol, fold, horizon, timestamp); refuse joins that drop > 10% of a side."""
    cols = [*KEYS, "y_true", "y_pred"]
    for name, frame in (("frame_model", frame_model), ("frame_ref", frame_ref)):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {missing}")
        if frame.empty:
            raise ValueError(f"{name} is empty")
    joined = frame_model[cols].merge(
        frame_ref[cols], on=KEYS, how="inner", suffixes=("_m", "_r"), validate="one_to_one"
    )
    for name, frame in (("frame_model", frame_model), ("frame_ref", frame_ref)):
        share = len(joined) / len(frame)
        if share < MIN_OVERLAP:
            raise ValueError(
                f"misaligned PredictionFrames: only {len(joined)} of {len(frame)} rows of {name} "
                f"({share:.1%}) match the other frame on {KEYS}; need {MIN_OVERLAP:.0%}"
            )
    y_m, y_r = joined["y_true_m"].to_numpy(float), joined["y_true_r"].to_numpy(float)
    if not np.allclose(y_m, y_r, rtol=1e-5, atol=1e-8):
        worst = float(np.max(np.abs(y_m - y_r)))
        raise ValueError(
            f"misaligned PredictionFrames: y_true differs on matching keys (max |diff| {worst:g})"
        )
    return joined


def dm_vs(
    frame_model: pd.DataFrame,
    frame_ref: pd.DataFrame,
    loss: str = "squared",
    horizon: int | None = None,
    alternative: str = "two-sided",
    hln: bool = True,
) -> dict[int, DMResult]:
    """Diebold-Mariano test of ``frame_model`` against ``frame_ref``, per forecast horizon.

    The frames are inner-joined on ``(symbol, fold, horizon, timestamp)``; if fewer than 90% of
    either frame's rows match, or ``y_true`` differs on matched rows, the frames are misaligned
    (a bug upstream) and a ``ValueError`` is raised. Errors are ``y_pred - y_true``. For each
    horizon ``h``, the loss differentials of all symbols (and folds) sharing a timestamp are
    averaged into one cross-sectional mean per timestamp, so correlation across symbols is not
    mistaken for independent evidence; the series, ordered by timestamp, goes to
    :func:`diebold_mariano` with ``horizon=h`` (lags up to ``h - 1``; this assumes consecutive
    rows are consecutive bars, i.e. a sample every bar).

    Args:
        frame_model: PredictionFrame of the model under test ("model 1").
        frame_ref: PredictionFrame of the reference (e.g. the naive zero forecast).
        loss: ``squared`` or ``absolute``.
        horizon: test only this forecast horizon; None tests every horizon in the join.
        alternative: as in :func:`diebold_mariano` (``less``: the model beats the reference).
        hln: as in :func:`diebold_mariano`.

    Returns:
        ``{h: DMResult}`` ordered by horizon; negative statistics favour ``frame_model``.

    Raises:
        ValueError: on misaligned frames, a missing requested horizon, or via
            :func:`diebold_mariano` (e.g. fewer than 10 timestamps).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r}; choose one of {', '.join(LOSSES)}")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative={alternative!r}; choose one of {', '.join(ALTERNATIVES)}")
    joined = _aligned(frame_model, frame_ref)
    y = joined["y_true_m"].to_numpy(float)
    d = _loss(joined["y_pred_m"].to_numpy(float) - y, loss) - _loss(
        joined["y_pred_r"].to_numpy(float) - y, loss
    )
    joined = joined.assign(d=d)
    horizons = sorted(int(h) for h in joined["horizon"].unique())
    if horizon is not None:
        if horizon not in horizons:
            raise ValueError(f"horizon {horizon} not in the frames (have {horizons})")
        horizons = [horizon]
    out: dict[int, DMResult] = {}
    for h in horizons:
        series = joined.loc[joined["horizon"] == h].groupby("timestamp", sort=True)["d"].mean()
        d_h = series.to_numpy(float)
        if d_h.size < MIN_DM_SAMPLES:
            raise ValueError(
                f"Diebold-Mariano needs at least {MIN_DM_SAMPLES} timestamps, horizon {h} has "
                f"{d_h.size}"
            )
        if not 1 <= h < d_h.size:
            raise ValueError(f"horizon {h} must be below the number of timestamps {d_h.size}")
        out[h] = _dm_from_diff(d_h, h, loss, alternative, hln)
    return out


def binomial_test_accuracy(
    n_correct: int, n: int, p0: float = 0.5, alternative: str = "greater"
) -> float:
    """Exact binomial test of a hit rate (``scipy.stats.binomtest``).

    Args:
        n_correct: correct calls ``k``.
        n: calls scored.
        p0: hit probability under the null (0.5: a fair coin).
        alternative: ``greater`` (``P(X >= k)``), ``less`` or ``two-sided``.

    Returns:
        The p-value. Hits are assumed independent: overlapping ``h > 1`` labels are serially
        correlated, which makes the p-value too small there.

    Raises:
        ValueError: on ``n < 1``, ``k`` outside ``[0, n]`` or ``p0`` outside ``[0, 1]``.
    """
    if n < 1 or not 0 <= n_correct <= n:
        raise ValueError(f"need n >= 1 and 0 <= n_correct <= n, got n_correct={n_correct}, n={n}")
    if not 0.0 <= p0 <= 1.0:
        raise ValueError(f"p0 must lie in [0, 1], got {p0}")
    result = sps.binomtest(int(n_correct), int(n), p=p0, alternative=alternative)
    return float(result.pvalue)


def direction_test(frame: pd.DataFrame, p0: float = 0.5) -> dict[int, DirectionResult]:
    """Directional hit rate per horizon of a PredictionFrame, with a one-sided binomial test.

    Regression frames: a hit is ``(y_pred > 0) == (y_true > 0)`` on rows with ``y_true != 0``
    (as :func:`metrics.directional_accuracy`; a zero forecast counts as "not up"). Classifier
    frames (a ``p_up`` column; ``y_true`` holds 0/1 labels): a hit is
    ``(p_up > 0.5) == (y_true > 0.5)``, as :func:`predictions.score`.

    Args:
        frame: a PredictionFrame (all symbols and folds are pooled per horizon).
        p0: null hit probability.

    Returns:
        ``{h: DirectionResult}`` ordered by horizon.

    Raises:
        ValueError: if a horizon has no scorable row.
    """
    out: dict[int, DirectionResult] = {}
    for h in sorted(int(v) for v in frame["horizon"].unique()):
        part = frame.loc[frame["horizon"] == h]
        y = part["y_true"].to_numpy(float)
        if "p_up" in part.columns:
            hits = (part["p_up"].to_numpy(float) > 0.5) == (y > 0.5)
        else:
            keep = y != 0.0
            hits = (part["y_pred"].to_numpy(float)[keep] > 0.0) == (y[keep] > 0.0)
        if hits.size == 0:
            raise ValueError(f"direction_test: no row with a direction at horizon {h}")
        k, n = int(hits.sum()), int(hits.size)
        out[h] = DirectionResult(k / n, n, binomial_test_accuracy(k, n, p0, "greater"))
    return out


def _sharpe_centred(s1: FloatArray, s2: FloatArray, n: int, mu: float, ann: float) -> FloatArray:
    """Annualised Sharpe (ddof=1) of resamples from sums of returns centred on the sample mean.

    ``s1 = sum(r - mu)`` and ``s2 = sum((r - mu)**2)`` over each resample; the variance
    ``(s2 - s1**2 / n) / (n - 1)`` does not depend on ``mu`` and so never subtracts two large
    numbers. Variances at rounding level (a constant resample) give NaN.
    """
    var = (s2 - s1**2 / n) / (n - 1)
    tiny = (64.0 * np.finfo(np.float64).eps) ** 2 * np.maximum(s2 / n, mu**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.where(var > tiny, (s1 / n + mu) / np.sqrt(var), np.nan) * ann
    return out


def block_bootstrap_sharpe_ci(
    returns: npt.ArrayLike,
    periods_per_year: float,
    block: int | None = None,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Annualised Sharpe ratio with a circular moving-block bootstrap percentile interval.

    Each resample joins ``ceil(N / block)`` blocks of ``block`` consecutive returns whose starts
    are drawn uniformly from the ``N`` positions, wrapping around the end (circular, so every
    return is equally likely to be drawn), and is cut to ``N`` returns. Fixed-length blocks
    (not the stationary bootstrap's random lengths) let every resample's sum and sum of squares
    be added up from precomputed block sums, so the cost is ``O(n_boot * N / block)``;
    ``block=1`` is the i.i.d. bootstrap. Sharpe is ``mean / std(ddof=1) * sqrt(periods_per_year)``
    with no risk-free rate.

    Args:
        returns: per-period strategy returns ``[N]``.
        periods_per_year: periods per year (8760 for hourly bars, 365 for daily crypto bars).
        block: block length; None uses ``ceil(N ** (1/3))``.
        n_boot: bootstrap resamples.
        alpha: the interval is ``[alpha/2, 1 - alpha/2]`` percentiles of the resampled Sharpes.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same interval.

    Returns:
        ``(sharpe, lo, hi)``; all NaN when the returns are constant (Sharpe undefined).

    Raises:
        ValueError: on non-finite returns, ``N < 2``, ``block`` outside ``[1, N]``,
            ``n_boot < 1``, ``alpha`` outside ``(0, 1)`` or ``periods_per_year <= 0``.

    Shapes:
        ``[N] -> 3 scalars``.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or r.size < 2:
        raise ValueError(f"need a 1-D array of at least 2 returns, got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("returns contain NaN or inf")
    n = r.size
    b = math.ceil(n ** (1.0 / 3.0) - 1e-9) if block is None else int(block)
    if not 1 <= b <= n:
        raise ValueError(f"block must lie in [1, {n}], got {block}")
    if n_boot < 1 or not 0.0 < alpha < 1.0 or periods_per_year <= 0:
        raise ValueError(
            f"need n_boot >= 1, 0 < alpha < 1, periods_per_year > 0; got {n_boot}, {alpha}, "
            f"{periods_per_year}"
        )
    ann = math.sqrt(periods_per_year)
    mu = float(r.mean())
    rc = r - mu
    point = _sharpe_centred(np.array([rc.sum()]), np.array([rc @ rc]), n, mu, ann)
    if not np.isfinite(point[0]):  # constant returns: the Sharpe ratio is undefined
        return float("nan"), float("nan"), float("nan")
    sharpe = float(point[0])

    # Block sums over circular windows: S[s] = sum of rc[s .. s+len-1 (mod n)].
    k_full, rem = divmod(n, b)
    ext = np.concatenate((rc, rc[: b - 1]))
    c1 = np.concatenate(([0.0], np.cumsum(ext)))
    c2 = np.concatenate(([0.0], np.cumsum(ext**2)))
    starts = np.arange(n)
    full1, full2 = c1[starts + b] - c1[starts], c2[starts + b] - c2[starts]
    part1, part2 = c1[starts + rem] - c1[starts], c2[starts + rem] - c2[starts]

    rng = np.random.default_rng(seed)
    n_blocks = k_full + (rem > 0)
    s1 = np.empty(n_boot)
    s2 = np.empty(n_boot)
    chunk = max(1, 4_000_000 // n_blocks)  # keep the index array at ~32 MB
    for lo in range(0, n_boot, chunk):
        m = min(chunk, n_boot - lo)
        idx = rng.integers(0, n, size=(m, n_blocks))
        full = idx[:, :k_full]
        s1[lo : lo + m] = full1[full].sum(axis=1)
        s2[lo : lo + m] = full2[full].sum(axis=1)
        if rem:
            s1[lo : lo + m] += part1[idx[:, -1]]
            s2[lo : lo + m] += part2[idx[:, -1]]
    boot = _sharpe_centred(s1, s2, n, mu, ann)
    if np.isnan(boot).all():
        return sharpe, float("nan"), float("nan")
    lo_q, hi_q = np.nanquantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0])
    return sharpe, float(lo_q), float(hi_q)


def summary_tests(
    frame: pd.DataFrame, ref: pd.DataFrame, prefix: str = "test"
) -> dict[str, float]:
    """DM test of ``frame`` against ``ref`` and the hit rate's binomial p-value, per horizon.

    What the console summary prints beside the metrics: ``{key}/dm_stat`` and ``{key}/dm_p``
    (two-sided Diebold-Mariano on squared errors, HLN-corrected; for classifiers on the
    squared error of ``p_up``, i.e. the Brier score) and ``{key}/hit_p`` (one-sided binomial
    p-value of the directional hit rate against 50 %), where ``key`` is ``prefix`` for one
    horizon and ``{prefix}/h{h}`` for several (as :func:`predictions.score`). A horizon too
    short for a test (fewer than 10 timestamps) gets NaN rather than an error.

    Args:
        frame: the model's PredictionFrame.
        ref: the reference PredictionFrame (zero-return persistence), same rows.
        prefix: key prefix.

    Returns:
        Flat ``{key/name: value}``.
    """
    horizons = sorted(int(h) for h in frame["horizon"].unique())
    if "p_up" in frame.columns:  # classifiers: the DM loss is the Brier score of p_up
        frame = frame.assign(y_pred=frame["p_up"])
        ref = ref.assign(y_pred=ref["p_up"]) if "p_up" in ref.columns else ref
    out: dict[str, float] = {}
    for h in horizons:
        key = prefix if len(horizons) == 1 else f"{prefix}/h{h}"
        try:
            dm = dm_vs(frame, ref, loss="squared", horizon=h)[h]
            out[f"{key}/dm_stat"], out[f"{key}/dm_p"] = dm.statistic, dm.p_value
        except ValueError as exc:
            log.info("no DM test for horizon %d: %s", h, exc)
            out[f"{key}/dm_stat"] = out[f"{key}/dm_p"] = math.nan
        try:
            out[f"{key}/hit_p"] = direction_test(frame.loc[frame["horizon"] == h])[h].p_value
        except ValueError as exc:
            log.info("no binomial test for horizon %d: %s", h, exc)
            out[f"{key}/hit_p"] = math.nan
    return out
