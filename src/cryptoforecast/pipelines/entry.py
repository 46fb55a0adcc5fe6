"""The Hydra app behind ``python train.py`` and ``cryptoforecast train`` (one definition)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cryptoforecast.paths import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def train_main(cfg: DictConfig) -> float | None:
    """Run one training job; return the metric a sweeper optimises."""
    from cryptoforecast.pipelines.train import metric_value, run

    return metric_value(run(cfg), cfg.get("optimized_metric"))


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="benchmark")
def benchmark_main(cfg: DictConfig) -> None:
    """Run the model benchmark (``python benchmark.py``)."""
    from cryptoforecast.pipelines.benchmark import run

    run(cfg)
