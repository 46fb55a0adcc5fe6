"""The Hydra app behind ``python train.py`` and ``cryptoforecast train`` (one definition)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cryptoforecast.paths import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def train_main(cfg: DictConfig) -> float | None:
    """Run one training job; return the metric a sweeper optimises.

    In a multirun a failing job must not end the sweep: its error goes to ``FAILED.json`` in the
    job folder and it returns None (a failed trial for Optuna); the ``MultirunSummary`` callback
    names the failed jobs at the end. A single run raises as usual.
    """
    from cryptoforecast.pipelines.train import metric_value, run
    from cryptoforecast.utils.hydra_callbacks import in_multirun, record_failure

    try:
        return metric_value(run(cfg), cfg.get("optimized_metric"))
    except Exception as exc:
        if not in_multirun():
            raise
        record_failure(exc)
        return None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="benchmark")
def benchmark_main(cfg: DictConfig) -> None:
    """Run the model benchmark (``python benchmark.py``)."""
    from cryptoforecast.pipelines.benchmark import run

    run(cfg)
