"""Stacking ensemble: the meta-learner only ever sees out-of-sample base forecasts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cryptoforecast.data.datamodule import SampleSet, build_samples, train_rows
from cryptoforecast.data.loader import Candles, DataSpec
from cryptoforecast.data.quality import QualityReport
from cryptoforecast.data.splits import Fold, HoldoutSplit
from cryptoforecast.data.synthetic import make_ohlcv
from cryptoforecast.data.targets import TargetSpec
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.features.transforms import LogReturns
from cryptoforecast.models.ensemble import StackingEnsemble, constrained_weights


def _samples(kind: str = "return", n: int = 1500) -> SampleSet:
    frame = make_ohlcv(n, seed=3, ar=0.3)
    candles = Candles(
        frame,
        QualityReport("syn", "1h"),
        frame.index[0],
        DataSpec(source="file", path="x.csv", symbol="SYN", days=None),
    )
    return build_samples(
        candles,
        FeatureSet([LogReturns(lags=(1, 2))], lookback=8),
        TargetSpec(horizon=[1, 4], kind=kind),
    )


class Spy:
    """A base model that records what it was fitted on and what it was asked to predict."""

    def __init__(self, name: str, log: list[tuple[str, str, np.ndarray]], mode: str) -> None:
        self.name, self.log, self.mode = name, log, mode

    def fit(self, samples: SampleSet, fold: Fold, out_dir: Path) -> dict[str, float]:
        self.log.append((self.name, "fit_train", fold.train))
        self.log.append((self.name, "fit_val", fold.val))
        self.log.append((self.name, "fit_rows", train_rows(samples, fold.train)))
        return {"ops/train_seconds": 0.1, "ops/params": 10.0}

    def predict(self, samples: SampleSet, positions: np.ndarray) -> np.ndarray:
        self.log.append((self.name, "predict", positions))
        y = samples.targets[samples.windows.ends[positions]]
        rng = np.random.default_rng([len(positions), ord(self.name[0])])  # own stream per base
        if self.mode == "oracle":  # knows the answer (to test the meta-learner's weighting)
            return 0.5 * y + 0.1 * y.std() * rng.normal(size=y.shape)
        if self.mode in ("signal", "error"):  # a base and a copy of its error (planted case)
            err = 2.0 * y.std() * np.sin(positions * 12.9898)[:, None] * np.ones_like(y)
            return y + err if self.mode == "signal" else err
        if self.mode == "prob":
            return np.clip(0.5 + 0.3 * (y - 0.5) + 0.1 * rng.normal(size=y.shape), 0, 1)
        return y.std() * rng.normal(size=y.shape)


def _ensemble(log: list, modes: dict[str, str], **kw: object) -> StackingEnsemble:
    return StackingEnsemble(list(modes), make_base=lambda n: Spy(n, log, modes[n]), **kw)


def test_meta_learner_never_sees_forecasts_of_periods_a_base_trained_on(tmp_path: Path) -> None:
    s = _samples()
    fold = HoldoutSplit().folds(s.windows.timestamps, s.step, s.target.reach)[0]
    log: list[tuple[str, str, np.ndarray]] = []
    ens = _ensemble(log, {"a": "noise", "b": "oracle"})
    ens.fit(s, fold, tmp_path)
    meta_pos = ens.inner.test  # type: ignore[union-attr]
    ts, reach = s.windows.timestamps, s.target.reach * s.step
    for name in ("a", "b"):
        seen = {k: v for n, k, v in log if n == name and k.startswith("fit")}
        used = np.union1d(seen["fit_train"], seen["fit_val"])
        assert not np.intersect1d(used, meta_pos).size  # no sample in common
        # and no label a base model trained or early-stopped on reaches the meta period
        assert ts[used.max()] + reach < ts[meta_pos.min()]
        # the rows a base's scaler/inputs read end before the meta period's first bar
        assert seen["fit_rows"].max() < s.windows.ends[meta_pos.min()]
        asked = [v for n, k, v in log if n == name and k == "predict"]
        assert len(asked) == 1 and np.array_equal(asked[0], meta_pos)  # only val_b during fit
    assert set(meta_pos) <= set(fold.val) and meta_pos.max() < fold.test.min()
    # the test segment was not touched by fit at all
    assert all(not np.intersect1d(v, fold.test).size for _, _, v in log)


def test_nnls_meta_weights_the_informative_base(tmp_path: Path) -> None:
    s = _samples()
    fold = HoldoutSplit().folds(s.windows.timestamps, s.step, s.target.reach)[0]
    ens = _ensemble([], {"noise": "noise", "oracle": "oracle"})
    ens.fit(s, fold, tmp_path)
    for w_noise, w_oracle in ens.weights:
        assert w_oracle > 5 * abs(w_noise)
    assert ens.equal_weight == [False, False] and all(p < 0.05 for p in ens.p_values)
    pred = ens.predict(s, fold.test)
    y = s.targets[s.windows.ends[fold.test]]
    assert pred.shape == y.shape and np.mean((pred - y) ** 2) < np.mean(y**2)
    assert (tmp_path / "ensemble.json").exists()


def test_mean_meta_and_classifier_meta(tmp_path: Path) -> None:
    s = _samples()
    fold = HoldoutSplit().folds(s.windows.timestamps, s.step, s.target.reach)[0]
    ens = _ensemble([], {"a": "noise", "b": "oracle"}, meta="mean")
    ens.fit(s, fold, tmp_path)
    parts = [b.predict(s, fold.test) for b in ens.bases.values()]
    np.testing.assert_allclose(ens.predict(s, fold.test), (parts[0] + parts[1]) / 2)

    sc = _samples(kind="direction")
    fold = HoldoutSplit().folds(sc.windows.timestamps, sc.step, sc.target.reach)[0]
    clf = _ensemble([], {"a": "prob", "b": "noise"})
    clf.fit(sc, fold, tmp_path)
    p = clf.predict(sc, fold.test)
    assert ((p >= 0) & (p <= 1)).all()


def test_meta_weights_stay_non_negative_where_unconstrained_ridge_inverts(tmp_path: Path) -> None:
    from sklearn.linear_model import RidgeCV

    s = _samples()
    fold = HoldoutSplit().folds(s.windows.timestamps, s.step, s.target.reach)[0]
    ens = _ensemble([], {"signal": "signal", "error": "error"})
    metrics = ens.fit(s, fold, tmp_path)
    # the planted case: "error" forecasts exactly the other base's error, so an unconstrained
    # meta-learner subtracts it (a negative weight) on the very forecasts nnls is fitted on
    meta = ens.inner.test  # type: ignore[union-attr]
    x = np.stack([b.predict(s, meta) for b in ens.bases.values()], axis=-1)
    y = s.targets[s.windows.ends[meta]]
    for h in range(2):
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13), fit_intercept=False)
        ridge.fit(x[:, h, :] / x[:, h, :].std(axis=0), y[:, h])
        assert ridge.coef_[1] < 0
    for h, weights in zip((1, 4), ens.weights, strict=True):
        assert min(weights) >= 0.0 and sum(weights) <= 1.0 + 1e-12
        assert weights == [metrics[f"ensemble/h{h}/weight/{n}"] for n in ("signal", "error")]
        assert metrics[f"ensemble/h{h}/equal_weight"] in (0.0, 1.0)
    saved = json.loads((tmp_path / "ensemble.json").read_text())
    assert saved["weights"] == ens.weights and saved["meta"] == "nnls"


def test_sum_of_weights_is_capped_at_one() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    x = np.stack([0.4 * y, 0.4 * y + 0.01 * rng.normal(size=500)], axis=1)  # NNLS wants sum 2.5
    w = constrained_weights(x, y)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-6)


def test_equal_weights_when_the_meta_gain_is_not_significant(tmp_path: Path) -> None:
    s = _samples()
    fold = HoldoutSplit().folds(s.windows.timestamps, s.step, s.target.reach)[0]
    # two equally good bases: the best capped weights are about equal weights anyway
    ens = _ensemble([], {"a": "oracle", "b": "oracle"})
    metrics = ens.fit(s, fold, tmp_path)
    assert ens.equal_weight == [True, True] and ens.weights == [[0.5, 0.5], [0.5, 0.5]]
    assert all(p >= 0.05 for p in ens.p_values) and metrics["ensemble/h1/equal_weight"] == 1.0
    parts = [b.predict(s, fold.test) for b in ens.bases.values()]
    np.testing.assert_allclose(ens.predict(s, fold.test), (parts[0] + parts[1]) / 2)
    with pytest.raises(ValueError, match="fallback_alpha"):
        StackingEnsemble(["lstm"], fallback_alpha=0.0)


def test_too_short_validation_is_refused(tmp_path: Path) -> None:
    s = _samples(n=400)
    fold = HoldoutSplit(val_fraction=0.03, test_fraction=0.1).folds(
        s.windows.timestamps, s.step, s.target.reach
    )[0]
    with pytest.raises(ValueError, match="the ensemble needs at least 10"):
        _ensemble([], {"a": "noise"}).fit(s, fold, tmp_path)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one base model"):
        StackingEnsemble([])
    with pytest.raises(ValueError, match="meta='xgb'"):
        StackingEnsemble(["lstm"], meta="xgb")


def test_size_is_the_sum_of_the_bases(tmp_path: Path) -> None:
    s = _samples()
    fold = HoldoutSplit().folds(s.windows.timestamps, s.step, s.target.reach)[0]
    ens = _ensemble([], {"a": "noise", "b": "oracle"})
    ens.fit(s, fold, tmp_path)
    for b in ens.bases.values():
        b.model_size_bytes = lambda: 1000  # type: ignore[attr-defined]
    assert ens.model_size_bytes() == 2000


@pytest.mark.slow  # ~20 s: composes the config and builds each net twice
def test_base_models_honour_the_ensemble_variant_and_size_overrides(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from cryptoforecast.models.factory import ensemble_member
    from cryptoforecast.paths import CONF_DIR

    def cfg(*overrides: str):  # noqa: ANN202
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose(
                "train", overrides=["model=ensemble", f"paths.output_dir={tmp_path}", *overrides]
            )

    def params(forecaster: object) -> int:
        module = forecaster.make_module(5, 1)  # type: ignore[attr-defined]
        return sum(p.numel() for p in module.parameters())

    light = cfg("model.variant=lightweight", "+model.base_overrides.lightgbm.n_estimators=30")
    default = cfg()
    lgbm = ensemble_member(light, "lightgbm")
    assert (lgbm.n_estimators, lgbm.num_leaves) == (30, 15)  # override wins; preset's leaves
    assert ensemble_member(default, "lightgbm").n_estimators == 2000
    for name in ("attention_lstm", "tcn"):
        assert params(ensemble_member(light, name)) < params(ensemble_member(default, name))
    sized = cfg("+model.base_overrides.tcn.net.channels=[4,4]")
    assert params(ensemble_member(sized, "tcn")) < params(ensemble_member(light, "tcn"))
    with pytest.raises(ValueError, match="base_overrides names \\['gru'\\]"):
        ensemble_member(cfg("+model.base_overrides.gru.dropout=0.1"), "tcn")
    with pytest.raises(ValueError, match="unknown variant 'matched' for model 'attention_lstm'"):
        ensemble_member(cfg("model.variant=matched"), "attention_lstm").make_module(5, 1)  # type: ignore[attr-defined]
