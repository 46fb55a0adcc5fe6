"""Rebuild a run's data from its resolved config.

The one definition shared by training, export and inspection, so a bundle or a notebook sees
exactly the samples training saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.utils import instantiate
from omegaconf import DictConfig

from cryptoforecast.data.datamodule import SampleSet, build_samples
from cryptoforecast.data.loader import Candles, load_candles
from cryptoforecast.data.schema import DataError
from cryptoforecast.data.splits import Fold
from cryptoforecast.data.targets import TargetSpec
from cryptoforecast.features.pipeline import FeatureSet


def target_spec(cfg: DictConfig) -> TargetSpec:
    """The target from ``cfg.target`` and ``cfg.task`` (classification = direction labels)."""
    task = cfg.get("task", "regression")
    kind = "direction" if task == "classification" else "return"
    given = cfg.target.get("kind")
    if given not in (None, kind):
        raise DataError(
            f"target.kind={given} contradicts task={task}; set task=classification for direction "
            "labels (or leave target.kind unset)"
        )
    horizon = cfg.target.horizon
    return TargetSpec(
        horizon=horizon if isinstance(horizon, int) else list(horizon),
        execution_lag=int(cfg.target.execution_lag),
        kind=kind,
    )


@dataclass
class RunData:
    """Everything a run's config determines about its data, before any model."""

    candles: Candles
    feature_set: FeatureSet
    samples: SampleSet
    folds: list[Fold]

    def fold(self, number: int) -> Fold:
        """The fold with this number (raises naming the folds that exist)."""
        for f in self.folds:
            if f.number == number:
                return f
        raise DataError(
            f"the config yields no fold {number}; folds: {[f.number for f in self.folds]}"
        )


def run_data(cfg: DictConfig) -> RunData:
    """Load and check candles, compute features, targets and windows, split into folds."""
    target = target_spec(cfg)
    feature_set: FeatureSet = instantiate(cfg.features)
    candles = load_candles(instantiate(cfg.data), history_bars=feature_set.min_history)
    samples = build_samples(candles, feature_set, target)
    folds = instantiate(cfg.split).folds(samples.windows.timestamps, samples.step, target.reach)
    return RunData(candles=candles, feature_set=feature_set, samples=samples, folds=folds)
