"""Stacking ensemble: base models' out-of-sample forecasts combined by a meta-learner.

Scheme, per fold (train | val | test, purged):

1. The validation segment is cut in time into ``val_a`` (early stopping of the base models) and
   ``val_b`` (the meta-learner's training data), with a purge of ``execution_lag + max(h)`` bars
   between them.
2. Every base model is fitted on ``train`` and early-stopped on ``val_a`` (a fresh model and a
   fresh scaler each), then predicts ``val_b``: a period none of them trained or early-stopped on.
3. The meta-learner is fitted on those ``val_b`` forecasts only: ``nnls`` finds non-negative
   weights summing to at most one (a weighted average shrunk towards "no signal": zero return,
   or ``p_up`` 0.5 for classifiers; least squares on the forecasts, Brier score on ``p_up``), so
   it never inverts a base model; ``mean`` is the equal-weight average.
4. The ``nnls`` weights are kept only when they beat the equal-weight average significantly on
   forecasts they were not fitted on: ``val_b`` is cut in two time blocks (purged), weights
   fitted on each block forecast the other, and a one-sided Diebold-Mariano test (squared
   loss, HLN correction, :func:`cryptoforecast.evaluation.stats.diebold_mariano`) compares the
   two; with ``p >= fallback_alpha`` the horizon falls back to equal weights.
5. Test forecasts are the meta-learner applied to the base models' test forecasts.

So the meta-learner never sees a forecast made by a model trained on that period, and nothing of
the test segment is used before predicting it (``tests/unit/test_ensemble.py`` checks both).
Every base model is built with the ensemble's ``model.variant`` and ``model.base_overrides``.

``ensemble.json`` records the combination exactly as :meth:`StackingEnsemble.predict` applies it,
per horizon ``h``: ``link(sum_m x[h, m] * weights[h][m] / scale[h][m] + intercept[h])`` with
``link`` ``identity`` or ``logistic`` (the export builds its ONNX graph from it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.optimize import minimize, nnls

from cryptoforecast.data.datamodule import SampleSet
from cryptoforecast.data.splits import Fold
from cryptoforecast.evaluation.stats import MIN_DM_SAMPLES, diebold_mariano
from cryptoforecast.models.base import Forecaster

log = logging.getLogger(__name__)

METAS = ("nnls", "mean")


class StackingEnsemble:
    """Combine base forecasters with a meta-learner trained on out-of-sample forecasts.

    Args:
        base_models: names of ``conf/model`` configs (e.g. attention_lstm, tcn, lightgbm).
        meta: ``nnls`` (non-negative weights summing to at most one, see the module doc) or
            ``mean`` (equal weights).
        meta_fraction: share of the validation segment (its later part) used to fit the meta.
        fallback_alpha: ``nnls`` weights are kept only when the Diebold-Mariano p-value of their
            out-of-fold gain over equal weights is below this; else equal weights.
        make_base: builds a fresh Forecaster for a base model name (injected by the factory).
    """

    def __init__(
        self,
        base_models: list[str],
        meta: str = "nnls",
        meta_fraction: float = 0.5,
        fallback_alpha: float = 0.05,
        make_base: Callable[[str], Forecaster] | None = None,
    ) -> None:
        if not base_models:
            raise ValueError("the ensemble needs at least one base model")
        if "ensemble" in base_models:
            raise ValueError("an ensemble cannot contain itself (base_models lists 'ensemble')")
        if meta not in METAS:
            raise ValueError(f"meta={meta!r}; choose one of {', '.join(METAS)}")
        if not 0 < meta_fraction < 1:
            raise ValueError(f"meta_fraction must be in (0, 1), got {meta_fraction}")
        if not 0 < fallback_alpha <= 1:
            raise ValueError(f"fallback_alpha must be in (0, 1], got {fallback_alpha}")
        self.base_models, self.meta, self.meta_fraction = list(base_models), meta, meta_fraction
        self.fallback_alpha = fallback_alpha
        self.equal_weight: list[bool] = []  # per horizon: fell back to (or chose) equal weights
        self.p_values: list[float] = []  # per horizon: DM p-value of nnls over equal weights
        self.make_base = make_base
        self.bases: dict[str, Forecaster] = {}
        self.inner: Fold | None = None
        self.weights: list[list[float]] = []
        self.scales: list[list[float]] = []  # divisor of each base forecast, per horizon
        self.intercepts: list[float] = []
        self.link = "identity"

    def split_validation(self, samples: SampleSet, fold: Fold) -> Fold:
        """``Fold(train, val_a, val_b)``: the base models' fold, with val_b for the meta."""
        val = fold.val
        n_meta = int(round(len(val) * self.meta_fraction))
        if n_meta < 10 or len(val) - n_meta < 10:
            raise ValueError(
                f"fold {fold.number}: validation has {len(val)} samples; the ensemble needs at "
                "least 10 for early stopping and 10 for the meta-learner (longer val segments)"
            )
        val_a, val_b = val[: len(val) - n_meta], val[len(val) - n_meta :]
        ts = samples.windows.timestamps
        reach = samples.target.reach * samples.step
        val_a = val_a[ts[val_a] + reach < ts[val_b[0]]]  # purge: no val_a label reaches val_b
        return Fold(fold.number, fold.train, val_a, val_b)

    def fit(self, samples: SampleSet, fold: Fold, out_dir: Path) -> dict[str, float]:
        """Fit the base models on (train, val_a) and the meta-learner on their val_b forecasts."""
        if self.make_base is None:
            raise RuntimeError("StackingEnsemble needs make_base (built through the factory)")
        self.inner = self.split_validation(samples, fold)
        meta_pos = self.inner.test
        metrics: dict[str, float] = {"ops/train_seconds": 0.0, "ops/params": 0.0}
        forecasts = []
        for name in self.base_models:
            base = self.make_base(name)
            fitted = base.fit(samples, self.inner, out_dir / name)
            metrics["ops/train_seconds"] += fitted.get("ops/train_seconds", 0.0)
            metrics["ops/params"] += fitted.get("ops/params", 0.0)
            metrics.update({f"{name}/{k}": v for k, v in fitted.items() if k.startswith("train/")})
            forecasts.append(base.predict(samples, meta_pos))
            self.bases[name] = base
            log.info("ensemble base %s fitted (fold %d)", name, fold.number)
        x = np.stack(forecasts, axis=-1)  # M x [S, H] -> [S, H, M]
        y = samples.targets[samples.windows.ends[meta_pos]]  # [S, H]
        times = samples.windows.timestamps[meta_pos].as_unit("ns").asi8
        reach = int(samples.target.reach * samples.step.value)
        classifier = samples.target.kind == "direction"
        self._fit_meta(x, y, classifier, times, reach, list(samples.target.horizons))
        for j, h in enumerate(samples.target.horizons):
            for name, w in zip(self.base_models, self.weights[j], strict=True):
                metrics[f"ensemble/h{h}/weight/{name}"] = w
            metrics[f"ensemble/h{h}/equal_weight"] = float(self.equal_weight[j])
            metrics[f"ensemble/h{h}/dm_p"] = self.p_values[j]
        (out_dir / "ensemble.json").write_text(
            json.dumps(
                {"base_models": self.base_models, "meta": self.meta, "weights": self.weights,
                 "scale": self.scales, "intercept": self.intercepts, "link": self.link,
                 "equal_weight": self.equal_weight,
                 "dm_p": [None if np.isnan(p) else p for p in self.p_values],
                 "fallback_alpha": self.fallback_alpha,
                 "meta_samples": len(meta_pos), "val_a_samples": len(self.inner.val)},
                indent=2,
            ) + "\n"
        )  # fmt: skip
        return metrics

    def _fit_meta(
        self,
        x: np.ndarray,
        y: np.ndarray,
        classifier: bool,
        times: np.ndarray,
        reach: int,
        horizons: list[int],
    ) -> None:
        """One combination per horizon on ``x`` ``[S, H, M]`` against ``y`` ``[S, H]``.

        ``times`` are the samples' end times and ``reach`` the label reach (int ns), for the
        purged two-block check of the ``nnls`` weights against equal weights; ``horizons`` (bars)
        set the DM test's lag window.
        """
        center = 0.5 if classifier else 0.0  # "no signal": p_up 0.5, or a zero return
        n_models = x.shape[-1]
        equal = np.full(n_models, 1.0 / n_models)
        self.weights, self.intercepts, self.equal_weight, self.p_values = [], [], [], []
        self.link = "identity"
        for h in range(x.shape[1]):
            xc, yc = x[:, h, :] - center, y[:, h] - center
            if self.meta == "mean":
                w, p_value, use_equal = equal, float("nan"), True
            else:
                w = constrained_weights(xc, yc)
                p_value = _oof_gain_p_value(xc, yc, times, reach, h_bars=horizons[h])
                use_equal = not p_value < self.fallback_alpha
                log.info(
                    "ensemble meta h%d: nnls weights %s, DM p=%.3g vs equal weights -> %s",
                    h,
                    np.round(w, 4).tolist(),
                    p_value,
                    "equal weights" if use_equal else "nnls",
                )
                w = equal if use_equal else w
            self.weights.append([float(v) for v in w])
            self.intercepts.append(float(center * (1.0 - w.sum())))
            self.equal_weight.append(bool(use_equal))
            self.p_values.append(p_value)
        self.scales = np.ones((x.shape[1], n_models)).tolist()

    def model_size_bytes(self) -> int:
        """Serialized size of all fitted base models (the meta-learner's weights are tiny)."""
        from cryptoforecast.evaluation.profiling import serialized_size_bytes

        return sum(serialized_size_bytes(b) for b in self.bases.values())

    def predict(self, samples: SampleSet, positions: np.ndarray) -> np.ndarray:
        """Meta-combined forecasts ``[S, H]`` (p_up for classifiers), as ``ensemble.json``."""
        if not self.bases:
            raise RuntimeError("predict() before fit()")
        x = np.stack([b.predict(samples, positions) for b in self.bases.values()], axis=-1)
        z = (x / np.asarray(self.scales) * np.asarray(self.weights)).sum(axis=-1)
        z = z + np.asarray(self.intercepts)
        return 1.0 / (1.0 + np.exp(-z)) if self.link == "logistic" else z


def constrained_weights(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares weights ``w >= 0`` with ``sum(w) <= 1`` for ``y ~ x @ w`` (no intercept).

    NNLS (:func:`scipy.optimize.nnls`) first; when its weights sum to more than one the
    optimum lies on ``sum(w) = 1`` and SLSQP finds it from the rescaled NNLS weights.

    Shapes:
        ``x: [S, M]``, ``y: [S] -> [M]``.
    """
    scale = float(np.std(y)) or 1.0  # returns ~1e-3: rescale so the solvers' tolerances bite
    a, b = x / scale, y / scale
    w, _ = nnls(a, b)
    if w.sum() <= 1.0:
        return np.asarray(w, dtype=np.float64)
    start = w / w.sum()
    res = minimize(
        lambda v: float(np.sum((a @ v - b) ** 2)),
        start,
        jac=lambda v: 2.0 * a.T @ (a @ v - b),
        bounds=[(0.0, 1.0)] * x.shape[1],
        constraints=[{"type": "ineq", "fun": lambda v: 1.0 - v.sum()}],
        method="SLSQP",
    )
    v = np.clip(res.x if res.success else start, 0.0, None)
    return np.asarray(v / max(1.0, v.sum()), dtype=np.float64)


def _oof_gain_p_value(
    x: np.ndarray, y: np.ndarray, times: np.ndarray, reach: int, h_bars: int
) -> float:
    """One-sided DM p-value that the constrained weights beat equal weights out of fold.

    ``val_b`` is cut at its middle time into two blocks; samples of the first block whose label
    reaches the second are dropped (purge). Weights fitted on each block forecast the other,
    and the squared errors of those forecasts are compared with the equal-weight average's on
    the same samples. 1.0 (keep equal weights) when a block has too few samples to test.
    """
    cut = times[len(times) // 2]
    first = np.flatnonzero((times < cut) & (times + reach < cut))
    second = np.flatnonzero(times >= cut)
    if min(len(first), len(second)) < max(MIN_DM_SAMPLES, x.shape[1] + 1):
        log.warning("ensemble meta: val_b too short for the out-of-fold check; equal weights")
        return 1.0
    e_meta, e_equal = [], []
    for fit_on, score_on in ((first, second), (second, first)):
        w = constrained_weights(x[fit_on], y[fit_on])
        e_meta.append(x[score_on] @ w - y[score_on])
        e_equal.append(x[score_on].mean(axis=1) - y[score_on])
    h = min(h_bars, len(first) + len(second) - 1)
    result = diebold_mariano(
        np.concatenate(e_meta), np.concatenate(e_equal), horizon=h, alternative="less"
    )
    return float(result.p_value)
