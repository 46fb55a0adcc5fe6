"""Rebuild a run's data from its resolved config.

The one definition shared by training, export and inspection, so a bundle or a notebook sees
exactly the samples training saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.utils import instantiate
from omegaconf import DictConfig

from cryptoforecast.data.datamodule import SampleSet, build_samples, stack_samples
from cryptoforecast.data.loader import Candles, DataSpec, load_candles
from cryptoforecast.data.schema import DataError
from cryptoforecast.data.splits import Fold, split_on_time_grid
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
    """Everything a run's config determines about its data, before any model.

    Attributes:
        candles_by_symbol: the loaded candles of each symbol, in ``data.symbols`` order (one
            entry for a single-symbol run).
        feature_set: the features (computed per symbol).
        samples: all samples; multi-symbol runs stack the symbols (:func:`stack_samples`).
        folds: the splits, by time and identical for every symbol.
    """

    candles_by_symbol: dict[str, Candles]
    feature_set: FeatureSet
    samples: SampleSet
    folds: list[Fold]

    @property
    def candles(self) -> Candles:
        """The candles of a single-symbol run (multi-symbol runs: ``candles_by_symbol``)."""
        if len(self.candles_by_symbol) != 1:
            raise DataError(
                f"this run trains on {list(self.candles_by_symbol)}; take one symbol's candles "
                "from RunData.candles_by_symbol"
            )
        return next(iter(self.candles_by_symbol.values()))

    def fold(self, number: int) -> Fold:
        """The fold with this number (raises naming the folds that exist)."""
        for f in self.folds:
            if f.number == number:
                return f
        raise DataError(
            f"the config yields no fold {number}; folds: {[f.number for f in self.folds]}"
        )


def run_data(cfg: DictConfig) -> RunData:
    """Load and check candles, compute features, targets and windows, split into folds.

    With ``data.symbols`` each symbol is loaded with the same spec otherwise and gets its own
    features, targets and windows; the samples are then stacked (one-hot symbol columns
    appended) and split on the common time grid, so every symbol's train/val/test segments
    share the same time boundaries and purge (:func:`split_on_time_grid`).
    """
    target = target_spec(cfg)
    feature_set: FeatureSet = instantiate(cfg.features)
    spec: DataSpec = instantiate(cfg.data)
    split = instantiate(cfg.split)
    candles = {
        s.symbol: load_candles(s, history_bars=feature_set.min_history) for s in spec.per_symbol()
    }
    parts = [build_samples(c, feature_set, target) for c in candles.values()]
    if len(parts) == 1:
        samples = parts[0]
        folds = split.folds(samples.windows.timestamps, samples.step, target.reach)
    else:
        samples = stack_samples(parts)
        folds = split_on_time_grid(split, samples.windows.timestamps, samples.step, target.reach)
    return RunData(
        candles_by_symbol=candles, feature_set=feature_set, samples=samples, folds=folds
    )
