"""Every config group option composes, and the objects it names build."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig

from cryptoforecast.data.loader import DataSpec
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.models.factory import build_model
from cryptoforecast.paths import CONF_DIR


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("features", _options("features"))
def test_feature_configs_build(make_cfg: Callable[..., DictConfig], features: str) -> None:
    fs = instantiate(make_cfg(f"features={features}").features)
    assert isinstance(fs, FeatureSet) and fs.lookback == 64


@pytest.mark.parametrize("data", ["bundled", "binance", "ccxt"])
def test_data_configs_build(make_cfg: Callable[..., DictConfig], data: str) -> None:
    assert isinstance(instantiate(make_cfg(f"data={data}").data), DataSpec)


@pytest.mark.parametrize("split", _options("split"))
def test_split_configs_build(make_cfg: Callable[..., DictConfig], split: str) -> None:
    assert hasattr(instantiate(make_cfg(f"split={split}").split), "folds")


@pytest.mark.parametrize("variant", ["lightweight", "default", "deep"])
def test_model_variants_build(make_cfg: Callable[..., DictConfig], variant: str) -> None:
    lit = build_model(make_cfg(f"model.variant={variant}").model, n_features=7, n_outputs=2)
    assert lit.net.lstm.hidden_size == {"lightweight": 32, "default": 64, "deep": 128}[variant]


def test_unknown_variant_lists_the_known_ones(make_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ValueError, match=r"known variants: \['deep', 'default', 'lightweight'\]"):
        build_model(make_cfg("model.variant=huge").model, n_features=7, n_outputs=1)


def test_gpu_trainer_config_asks_for_bf16(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg("trainer=gpu")
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"


def test_misspelt_data_key_fails_loudly(make_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(Exception, match="dayz"):
        instantiate(make_cfg("+data.dayz=3").data)


@pytest.mark.parametrize(("variant", "size"), [("lightweight", (300, 15)), ("deep", (4000, 63))])
def test_lightgbm_variant_and_task_reach_the_model(
    make_cfg: Callable[..., DictConfig], variant: str, size: tuple[int, int]
) -> None:
    cfg = make_cfg("model=lightgbm", f"model.variant={variant}")
    model = build_model(cfg.model, n_features=0, n_outputs=0, task="classification")
    assert (model.n_estimators, model.num_leaves) == size and model.objective == "binary"
    explicit = make_cfg("model=lightgbm", f"model.variant={variant}", "+model.module.num_leaves=7")
    assert build_model(explicit.model, 0, 0).num_leaves == 7
