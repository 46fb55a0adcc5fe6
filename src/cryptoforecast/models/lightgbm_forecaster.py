"""LightGBM behind the same ``fit(samples, fold, out_dir)`` / ``predict(samples, positions)`` API.

Follows qlib's ``gbdt.py`` shape (house style "LightGBM wrapper"): one ``lgb.Dataset`` per
segment, ``lgb.train`` with the ``early_stopping``, ``log_evaluation`` and ``record_evaluation``
callbacks, typed parameters. One booster per horizon (``H`` columns of ``samples.targets``).

Inputs for a sample ending at bar ``t`` (``samples.windows.ends[pos]``):

- ``inputs="features"``: the unscaled engineered features of row ``t`` only, ``[S, F]``, columns
  named as ``samples.feature_names`` (trees need no scaling, so no scaler is fitted at all).
- ``inputs="window"``: the window rows ``[t-L+1 .. t]`` flattened in time order, ``[S, L*F]``,
  the same ``[L, F]`` layout the torch nets see; columns ``<feature>_lag<k>`` with ``k`` bars
  before ``t`` (``lag0`` is row ``t``).

Only ``fold.train`` rows/labels build the trees and only ``fold.val`` drives early stopping; the
test segment is never read by :meth:`LightGBMForecaster.fit`.

Artefacts written by ``fit`` into ``out_dir``: ``lgbm_eval.json`` (recorded train/val curves and
best iterations per horizon), ``feature_importance.csv`` and ``feature_importance.png``, and the
model itself (:meth:`LightGBMForecaster.save`: ``lgbm_model.json`` + one LightGBM text model
``lgbm_h<h>.txt`` per horizon; never pickle).
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from cryptoforecast.data.datamodule import SampleSet
from cryptoforecast.data.splits import Fold

log = logging.getLogger(__name__)

OBJECTIVES = {"regression": ("return", "l2"), "binary": ("direction", "binary_logloss")}
INPUTS = ("features", "window")
MODEL_META = "lgbm_model.json"
FORMAT_VERSION = 1
TOP_IMPORTANCE = 25

# Size presets, like ``models/variants.py`` for the nets (which does not know LightGBM yet).
# "default" is the constructor defaults, so the YAML and ``from_variant("default")`` agree.
LGBM_VARIANTS: dict[str, dict[str, Any]] = {
    "lightweight": {"n_estimators": 300, "num_leaves": 15},
    "default": {},
    "deep": {"n_estimators": 4000, "num_leaves": 63},
}


class LightGBMForecaster:
    """Gradient-boosted trees (LightGBM), one booster per horizon.

    Args:
        objective: ``regression`` (l2 on log returns; needs ``target.kind=return``) or ``binary``
            (directional classifier giving ``p_up``; needs ``target.kind=direction``).
        inputs: ``features`` (features at ``t``, ``[S, F]``) or ``window`` (flattened window,
            ``[S, L*F]``).
        n_estimators: maximum boosting rounds per horizon (early stopping usually ends sooner).
        learning_rate: shrinkage.
        num_leaves: maximum leaves per tree.
        max_depth: maximum tree depth (-1: unlimited).
        min_data_in_leaf: minimum samples per leaf (large values regularise noisy returns).
        feature_fraction: share of columns sampled per tree.
        bagging_fraction: share of rows sampled per bagging round.
        bagging_freq: bag every k rounds (0: no bagging).
        lambda_l1: L1 penalty on leaf values.
        lambda_l2: L2 penalty on leaf values.
        early_stopping_rounds: stop when the validation loss has not improved for this many
            rounds (0: off, keep all ``n_estimators`` trees).
        num_threads: LightGBM threads.
        seed: seed of every LightGBM random choice (bagging, feature sampling).
        log_every: ``log_evaluation`` period in rounds (0: off); lines go to this module's logger.

    Shapes:
        ``predict``: positions ``[S]`` -> ``[S, H]`` log returns (regression) or ``p_up``
        probabilities in ``[0, 1]`` (binary).
    """

    def __init__(
        self,
        objective: str = "regression",
        inputs: str = "features",
        n_estimators: int = 2000,
        learning_rate: float = 0.02,
        num_leaves: int = 31,
        max_depth: int = -1,
        min_data_in_leaf: int = 100,
        feature_fraction: float = 0.8,
        bagging_fraction: float = 0.8,
        bagging_freq: int = 1,
        lambda_l1: float = 0.0,
        lambda_l2: float = 1.0,
        early_stopping_rounds: int = 100,
        num_threads: int = 2,
        seed: int = 42,
        log_every: int = 0,
    ) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if inputs not in INPUTS:
            raise ValueError(f"inputs={inputs!r}; choose one of {', '.join(INPUTS)}")
        checks = {
            "n_estimators >= 1": n_estimators >= 1,
            "learning_rate > 0": learning_rate > 0,
            "num_leaves >= 2": num_leaves >= 2,
            "min_data_in_leaf >= 1": min_data_in_leaf >= 1,
            "0 < feature_fraction <= 1": 0 < feature_fraction <= 1,
            "0 < bagging_fraction <= 1": 0 < bagging_fraction <= 1,
            "bagging_freq >= 0": bagging_freq >= 0,
            "lambda_l1 >= 0 and lambda_l2 >= 0": lambda_l1 >= 0 and lambda_l2 >= 0,
            "early_stopping_rounds >= 0": early_stopping_rounds >= 0,
            "num_threads >= 1": num_threads >= 1,
            "log_every >= 0": log_every >= 0,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"LightGBMForecaster: need {'; '.join(failed)}")
        self.objective, self.inputs = objective, inputs
        self.n_estimators, self.learning_rate = n_estimators, learning_rate
        self.num_leaves, self.max_depth, self.min_data_in_leaf = (
            num_leaves,
            max_depth,
            min_data_in_leaf,
        )
        self.feature_fraction, self.bagging_fraction = feature_fraction, bagging_fraction
        self.bagging_freq, self.lambda_l1, self.lambda_l2 = bagging_freq, lambda_l1, lambda_l2
        self.early_stopping_rounds, self.num_threads = early_stopping_rounds, num_threads
        self.seed, self.log_every = seed, log_every
        # Fitted state (set by fit or load).
        self.boosters: list[lgb.Booster] = []
        self.horizons: list[int] = []
        self.feature_names: list[str] = []  # samples.feature_names seen at fit
        self.lookback: int = 0
        self.best_iterations: list[int] = []
        self.eval_curves: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_variant(cls, variant: str, **overrides: Any) -> LightGBMForecaster:
        """Build from a size preset in :data:`LGBM_VARIANTS`; ``overrides`` win over the preset.

        Overrides go through the typed constructor, so a misspelt key raises ``TypeError``.
        """
        if variant not in LGBM_VARIANTS:
            raise ValueError(
                f"unknown variant {variant!r} for model 'lightgbm'; "
                f"known variants: {sorted(LGBM_VARIANTS)}"
            )
        return cls(**{**LGBM_VARIANTS[variant], **overrides})

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments (JSON-able), e.g. for the model file and run logs."""
        names = list(inspect.signature(type(self).__init__).parameters)[1:]  # drop self
        return {name: getattr(self, name) for name in names}

    def lgb_params(self) -> dict[str, Any]:
        """The LightGBM parameter dict passed to ``lgb.train`` (deterministic, quiet)."""
        return {
            "objective": self.objective,
            "metric": OBJECTIVES[self.objective][1],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l1": self.lambda_l1,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.num_threads,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }

    # ---------------------------------------------------------------- inputs

    def input_names(
        self, feature_names: list[str] | None = None, lookback: int | None = None
    ) -> list[str]:
        """Model column names: the features, or ``<feature>_lag<k>`` in window order."""
        names = self.feature_names if feature_names is None else feature_names
        lb = self.lookback if lookback is None else lookback
        if self.inputs == "features":
            return list(names)
        return [f"{f}_lag{lb - 1 - i}" for i in range(lb) for f in names]

    def design_matrix(self, samples: SampleSet, positions: np.ndarray) -> np.ndarray:
        """Model inputs for the samples at ``positions``: ``[S, F]`` or ``[S, L*F]`` float64."""
        ends = samples.windows.ends[np.asarray(positions, dtype=np.int64)]
        if self.inputs == "features":
            return samples.features[ends]  # [S, F]
        lb = samples.windows.lookback
        rows = ends[:, None] + np.arange(1 - lb, 1)[None, :]  # [S, L]: t-L+1 .. t
        window = samples.features[rows]  # [S, L, F]
        return window.reshape(len(ends), -1)  # [S, L, F] -> [S, L*F], time-major like the nets

    # ---------------------------------------------------------------- fit / predict

    def fit(self, samples: SampleSet, fold: Fold, out_dir: Path) -> dict[str, float]:
        """Train one booster per horizon on ``fold.train``, early-stopping on ``fold.val``.

        Args:
            samples: the precomputed sample set (unscaled features, labels, windows).
            fold: train/val/test positions; ``fold.test`` is never read here.
            out_dir: folder for the artefacts (created if missing).

        Returns:
            Flat metrics: ``ops/train_seconds`` (dataset build + boosting, all horizons),
            ``ops/params`` (total leaves, i.e. fitted leaf values, over the trees kept at the
            best iterations of all boosters), ``ops/n_trees``, ``ops/model_bytes`` (text model
            size), ``val/loss_best`` (mean over horizons of the best validation l2 on raw log
            returns, or binary log-loss), and per horizon ``val/loss_best_h<h>`` and
            ``train/best_iteration_h<h>``.

        Raises:
            ValueError: objective and ``samples.target.kind`` disagree, or a segment is empty.
        """
        kind, metric = OBJECTIVES[self.objective]
        if samples.target.kind != kind:
            raise ValueError(
                f"LightGBMForecaster(objective={self.objective!r}) needs target.kind={kind!r}, "
                f"but the samples have target.kind={samples.target.kind!r}; use "
                f"objective={_objective_for(samples.target.kind)!r} or target.kind={kind!r}"
            )
        if len(fold.train) == 0 or len(fold.val) == 0:
            raise ValueError(
                f"fold {fold.number}: LightGBM needs train and val samples, got "
                f"{len(fold.train)} train and {len(fold.val)} val"
            )
        if self.log_every > 0:
            lgb.register_logger(log)  # log_evaluation lines go to logging, not print
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.horizons = list(samples.target.horizons)
        self.feature_names = list(samples.feature_names)
        self.lookback = samples.windows.lookback
        names = self.input_names()
        start = time.perf_counter()
        x_train = self.design_matrix(samples, fold.train)
        x_val = self.design_matrix(samples, fold.val)
        y_train = samples.targets[samples.windows.ends[fold.train]]  # [S_train, H]
        y_val = samples.targets[samples.windows.ends[fold.val]]  # [S_val, H]
        params = self.lgb_params()
        self.boosters, self.best_iterations, self.eval_curves = [], [], {}
        for j, h in enumerate(self.horizons):
            train_set = lgb.Dataset(
                x_train, label=y_train[:, j], feature_name=names, free_raw_data=True
            )
            val_set = lgb.Dataset(x_val, label=y_val[:, j], reference=train_set)
            curves: dict[str, Any] = {}
            booster = lgb.train(
                params,
                train_set,
                num_boost_round=self.n_estimators,
                # train_set is passed by identity, so early_stopping skips it and watches val only
                valid_sets=[train_set, val_set],
                valid_names=["train", "val"],
                callbacks=[
                    lgb.early_stopping(self.early_stopping_rounds, verbose=False),
                    lgb.log_evaluation(period=self.log_every),
                    lgb.record_evaluation(curves),
                ],
            )
            best = booster.best_iteration if booster.best_iteration > 0 else booster.num_trees()
            booster.best_iteration = best
            val_curve = [float(v) for v in curves["val"][metric]]
            self.boosters.append(booster)
            self.best_iterations.append(best)
            self.eval_curves[f"h{h}"] = {
                "best_iteration": best,
                "rounds": len(val_curve),
                "best_val": val_curve[best - 1],
                "train": [float(v) for v in curves["train"][metric]],
                "val": val_curve,
            }
            log.info(
                "lightgbm h=%d: best iteration %d of %d rounds, val %s %.6g",
                h,
                best,
                len(val_curve),
                metric,
                val_curve[best - 1],
            )
        seconds = time.perf_counter() - start

        best_vals = [self.eval_curves[f"h{h}"]["best_val"] for h in self.horizons]
        metrics: dict[str, float] = {
            "ops/train_seconds": seconds,
            "ops/params": float(self.n_leaves()),
            "ops/n_trees": float(sum(self.best_iterations)),
            "ops/model_bytes": float(self.model_size_bytes()),
            "val/loss_best": float(np.mean(best_vals)),
        }
        for h, best, val in zip(self.horizons, self.best_iterations, best_vals, strict=True):
            metrics[f"val/loss_best_h{h}"] = float(val)
            metrics[f"train/best_iteration_h{h}"] = float(best)

        eval_doc = {"objective": self.objective, "metric": metric, "horizons": self.eval_curves}
        (out_dir / "lgbm_eval.json").write_text(json.dumps(eval_doc) + "\n")
        table = self.feature_importance()
        table.to_csv(out_dir / "feature_importance.csv", index=False)
        plot_importance(table, out_dir / "feature_importance.png")
        self.save(out_dir)
        return metrics

    def predict(self, samples: SampleSet, positions: np.ndarray) -> np.ndarray:
        """Forecasts ``[S, H]`` for the samples at ``positions`` (indices into windows.ends).

        Log returns for ``objective=regression``, ``p_up`` probabilities for ``binary``. Each
        booster uses the trees up to its best validation iteration.
        """
        self._check_fitted()
        if list(samples.feature_names) != self.feature_names:
            raise ValueError(
                "LightGBMForecaster.predict: the samples' features differ from the ones it was "
                f"fitted on (got {len(samples.feature_names)}, fitted on "
                f"{len(self.feature_names)}; first names {samples.feature_names[:3]} vs "
                f"{self.feature_names[:3]})"
            )
        if self.inputs == "window" and samples.windows.lookback != self.lookback:
            raise ValueError(
                f"LightGBMForecaster.predict: lookback {samples.windows.lookback} differs from "
                f"the fitted lookback {self.lookback} (inputs=window)"
            )
        x = self.design_matrix(samples, positions)
        out = np.empty((len(x), len(self.boosters)))
        for j, (booster, best) in enumerate(zip(self.boosters, self.best_iterations, strict=True)):
            if len(x):
                out[:, j] = booster.predict(x, num_iteration=best, num_threads=self.num_threads)
        return out

    # ---------------------------------------------------------------- introspection

    def n_leaves(self) -> int:
        """Total leaves of the trees kept (up to each best iteration), summed over horizons."""
        self._check_fitted()
        total = 0
        for booster, best in zip(self.boosters, self.best_iterations, strict=True):
            trees = booster.dump_model(num_iteration=best)["tree_info"]
            total += sum(int(t["num_leaves"]) for t in trees)
        return total

    def model_size_bytes(self) -> int:
        """Size of the LightGBM text models (up to the best iterations), summed over horizons."""
        self._check_fitted()
        return sum(
            len(b.model_to_string(num_iteration=best).encode())
            for b, best in zip(self.boosters, self.best_iterations, strict=True)
        )

    def feature_importance(self) -> pd.DataFrame:
        """Gain and split importance summed over horizons, sorted by gain (descending).

        Columns ``feature, gain, split, gain_share, split_share`` (shares sum to 1), plus
        ``gain_h<h>, split_h<h>`` per horizon when there is more than one.
        """
        self._check_fitted()
        names = self.boosters[0].feature_name()
        table = pd.DataFrame({"feature": names})
        gains, splits = [], []
        for booster, best in zip(self.boosters, self.best_iterations, strict=True):
            gains.append(booster.feature_importance("gain", iteration=best).astype("float64"))
            splits.append(booster.feature_importance("split", iteration=best).astype("float64"))
        table["gain"] = np.sum(gains, axis=0)
        table["split"] = np.sum(splits, axis=0)
        for col in ("gain", "split"):
            total = table[col].sum()
            # All-constant trees (nothing worth splitting) have no importance at all; spread the
            # share evenly so the column still sums to 1 instead of 0/0.
            table[f"{col}_share"] = table[col] / total if total > 0 else 1.0 / len(table)
        if len(self.horizons) > 1:
            for h, gain, split in zip(self.horizons, gains, splits, strict=True):
                table[f"gain_h{h}"] = gain
                table[f"split_h{h}"] = split
        table = table.sort_values(
            ["gain", "split", "feature"], ascending=[False, False, True], kind="mergesort"
        )
        return table.reset_index(drop=True)

    # ---------------------------------------------------------------- persistence

    def save(self, path: Path) -> None:
        """Write ``lgbm_model.json`` and one LightGBM text model ``lgbm_h<h>.txt`` per horizon.

        ``path`` is a folder (created if missing). Each text model keeps the trees up to its best
        iteration, so a loaded booster predicts exactly like this one.
        """
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        files = []
        for h, booster, best in zip(
            self.horizons, self.boosters, self.best_iterations, strict=True
        ):
            name = f"lgbm_h{h}.txt"
            booster.save_model(path / name, num_iteration=best, importance_type="gain")
            files.append(name)
        meta = {
            "format_version": FORMAT_VERSION,
            "lightgbm_version": lgb.__version__,
            "params": self.get_params(),
            "horizons": self.horizons,
            "feature_names": self.feature_names,
            "lookback": self.lookback,
            "best_iterations": self.best_iterations,
            "model_files": files,
        }
        (path / MODEL_META).write_text(json.dumps(meta, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> LightGBMForecaster:
        """Rebuild a fitted forecaster from a folder written by :meth:`save`."""
        path = Path(path)
        meta = json.loads((path / MODEL_META).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path / MODEL_META}: unknown format {meta.get('format_version')}")
        model = cls(**meta["params"])
        model.horizons = [int(h) for h in meta["horizons"]]
        model.feature_names = list(meta["feature_names"])
        model.lookback = int(meta["lookback"])
        model.boosters = [lgb.Booster(model_file=str(path / f)) for f in meta["model_files"]]
        model.best_iterations = [b.num_trees() for b in model.boosters]  # saved up to best
        return model

    def _check_fitted(self) -> None:
        if not self.boosters:
            raise RuntimeError("LightGBMForecaster is not fitted; call fit() or load() first")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"LightGBMForecaster({args})"


def _objective_for(kind: str) -> str:
    """The objective that matches a target kind."""
    return next((obj for obj, (k, _) in OBJECTIVES.items() if k == kind), "?")


def plot_importance(table: pd.DataFrame, path: Path, top: int = TOP_IMPORTANCE) -> None:
    """Horizontal bar chart of the ``top`` features by gain share (largest on top)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: runs and tests have no display
    import matplotlib.pyplot as plt

    head = table.head(top).iloc[::-1]  # barh draws bottom-up
    fig, ax = plt.subplots(figsize=(7.0, 1.0 + 0.28 * len(head)))
    try:
        ax.barh(head["feature"], head["gain_share"], color="tab:blue")
        ax.set_xlabel("share of total gain (all horizons)")
        ax.set_title(f"LightGBM feature importance: top {len(head)} by gain")
        ax.tick_params(axis="y", labelsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
