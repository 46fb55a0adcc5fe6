"""Compose the real Hydra config the way train.py does, with a temp run folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from cryptoforecast.paths import CONF_DIR


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """make_cfg(*overrides, out=None) -> composed train config writing into a temp folder."""

    def _make(*overrides: str, out: Path | None = None) -> DictConfig:
        out = out or tmp_path / "run"
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="train", overrides=[f"paths.output_dir={out}", *overrides])

    return _make


# Small, fast settings on real bundled data: 30 days, log-return features only.
FAST = (
    "data.days=30",
    "features=minimal",
    "model.variant=lightweight",
    "logger=none",
    "profile=false",
)
# two small walk-forward folds (fold0, fold1 and the pooled aggregate) on FAST's data
WALK_FORWARD = (
    "split=walk_forward",
    "split.n_folds=2",
    "split.val_bars=72",
    "split.test_bars=72",
    "split.train_bars=200",
)
