"""Stacking ensemble: base models' out-of-sample forecasts combined by a meta-learner.

Scheme, per fold (train | val | test, purged):

1. The validation segment is cut in time into ``val_a`` (early stopping of the base models) and
   ``val_b`` (the meta-learner's training data), with a purge of ``execution_lag + max(h)`` bars
   between them.
2. Every base model is fitted on ``train`` and early-stopped on ``val_a`` (a fresh model and a
   fresh scaler each), then predicts ``val_b``: a period none of them trained or early-stopped on.
3. The meta-learner (Ridge on standardised base forecasts without intercept, or the plain mean;
   logistic regression for classifiers) is fitted on those ``val_b`` forecasts only.
4. Test forecasts are the meta-learner applied to the base models' test forecasts.

So the meta-learner never sees a forecast made by a model trained on that period, and nothing of
the test segment is used before predicting it (``tests/unit/test_ensemble.py`` checks both).

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
from sklearn.linear_model import LogisticRegression, RidgeCV

from cryptoforecast.data.datamodule import SampleSet
from cryptoforecast.data.splits import Fold
from cryptoforecast.models.base import Forecaster

log = logging.getLogger(__name__)

METAS = ("ridge", "mean")


class StackingEnsemble:
    """Combine base forecasters with a meta-learner trained on out-of-sample forecasts.

    Args:
        base_models: names of ``conf/model`` configs (e.g. attention_lstm, tcn, lightgbm).
        meta: ``ridge`` (RidgeCV over alphas on standardised forecasts, no intercept, so "no
            signal" stays a zero forecast) or ``mean`` (equal weights).
        meta_fraction: share of the validation segment (its later part) used to fit the meta.
        make_base: builds a fresh Forecaster for a base model name (injected by the factory).
    """

    def __init__(
        self,
        base_models: list[str],
        meta: str = "ridge",
        meta_fraction: float = 0.5,
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
        self.base_models, self.meta, self.meta_fraction = list(base_models), meta, meta_fraction
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
            forecasts.append(base.predict(samples, meta_pos))
            self.bases[name] = base
            log.info("ensemble base %s fitted (fold %d)", name, fold.number)
        x = np.stack(forecasts, axis=-1)  # M x [S, H] -> [S, H, M]
        y = samples.targets[samples.windows.ends[meta_pos]]  # [S, H]
        self._fit_meta(x, y, classifier=samples.target.kind == "direction")
        (out_dir / "ensemble.json").write_text(
            json.dumps(
                {"base_models": self.base_models, "meta": self.meta, "weights": self.weights,
                 "scale": self.scales, "intercept": self.intercepts, "link": self.link,
                 "meta_samples": len(meta_pos), "val_a_samples": len(self.inner.val)},
                indent=2,
            ) + "\n"
        )  # fmt: skip
        return metrics

    def _fit_meta(self, x: np.ndarray, y: np.ndarray, classifier: bool) -> None:
        """One meta-learner per horizon on ``x`` ``[S, H, M]`` against ``y`` ``[S, H]``."""
        self._metas: list[object] = []
        self._scale = np.maximum(x.std(axis=0), 1e-12)  # [H, M], from meta-train rows only
        self.weights, self.intercepts = [], []
        self.link = "logistic" if classifier and self.meta != "mean" else "identity"
        n_models = x.shape[-1]
        for h in range(x.shape[1]):
            if self.meta == "mean":
                self._metas.append(None)
                self.weights.append([1.0 / n_models] * n_models)
                self.intercepts.append(0.0)
                continue
            z = x[:, h, :] / self._scale[h]
            if classifier:
                model: object = LogisticRegression(C=1.0).fit(z, y[:, h] > 0.5)
                coef = model.coef_[0]  # type: ignore[attr-defined]
            else:
                model = RidgeCV(alphas=np.logspace(-3, 3, 13), fit_intercept=False).fit(z, y[:, h])
                coef = model.coef_  # type: ignore[attr-defined]
            self._metas.append(model)
            self.weights.append([float(c) for c in coef])
            self.intercepts.append(float(np.ravel(model.intercept_)[0]))  # type: ignore[attr-defined]
        # mean combines the raw forecasts; ridge/logistic the standardised ones
        self.scales = (
            np.ones_like(self._scale).tolist() if self.meta == "mean" else self._scale.tolist()
        )

    def model_size_bytes(self) -> int:
        """Serialized size of all fitted base models (the meta-learner's weights are tiny)."""
        from cryptoforecast.evaluation.profiling import serialized_size_bytes

        return sum(serialized_size_bytes(b) for b in self.bases.values())

    def predict(self, samples: SampleSet, positions: np.ndarray) -> np.ndarray:
        """Meta-combined forecasts ``[S, H]`` (p_up for classifiers)."""
        if not self.bases:
            raise RuntimeError("predict() before fit()")
        x = np.stack([b.predict(samples, positions) for b in self.bases.values()], axis=-1)
        out = np.empty(x.shape[:2])
        for h, meta in enumerate(self._metas):
            if meta is None:
                out[:, h] = x[:, h, :].mean(axis=-1)
            elif isinstance(meta, LogisticRegression):
                out[:, h] = meta.predict_proba(x[:, h, :] / self._scale[h])[:, 1]
            else:
                out[:, h] = meta.predict(x[:, h, :] / self._scale[h])  # type: ignore[attr-defined]
        return out
