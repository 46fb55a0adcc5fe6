"""The one interface every model meets: torch nets, LightGBM, baselines, ensembles."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from cryptoforecast.data.datamodule import SampleSet
from cryptoforecast.data.splits import Fold


@runtime_checkable
class Forecaster(Protocol):
    """Fit on one fold, predict any samples.

    ``fit`` trains on ``fold.train`` and may use ``fold.val`` (early stopping) but never
    ``fold.test``; it writes artefacts into ``out_dir`` and returns flat metrics (at least
    ``ops/train_seconds`` and ``ops/params``). ``predict`` returns ``[S, H]`` for the samples at
    ``positions`` (indices into ``samples.windows.ends``): log-return forecasts for
    ``target.kind == "return"``, ``p_up`` probabilities for ``"direction"``.
    """

    def fit(self, samples: SampleSet, fold: Fold, out_dir: Path) -> dict[str, float]:
        """Train on the fold; return flat metrics."""
        ...

    def predict(self, samples: SampleSet, positions: np.ndarray) -> np.ndarray:
        """Forecasts ``[S, H]`` for the samples at ``positions``."""
        ...
