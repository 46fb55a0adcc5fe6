"""Entry point: ``python train.py model=attention_lstm data.days=365`` (a Hydra app)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cryptoforecast.paths import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run one training job; return the metric a sweeper optimises."""
    from cryptoforecast.pipelines.train import metric_value, run

    return metric_value(run(cfg), cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
