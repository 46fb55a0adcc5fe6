"""Every model YAML composes with conf/train.yaml and builds via the factory, every variant too.

Also pins the TCN configs' global side effect: ``model=tcn`` / ``model=tcn_attention`` raise
``features.lookback`` to 128 (their receptive field exceeds the default 64), and a command-line
``features.lookback`` still wins.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from cryptoforecast.models.factory import build_model
from cryptoforecast.models.variants import VARIANTS
from cryptoforecast.paths import CONF_DIR

N_FEATURES, N_OUTPUTS = 7, 2
MODEL_NAMES = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
TCN_MODELS = ("tcn", "tcn_attention")
# torch nets are the models with size presets; the other conf/model options (LightGBM,
# baselines) are checked by test_models_without_presets_are_not_nets.
NET_MODELS = sorted(VARIANTS)
# models whose config picks a variant other than "default" (tft: lightweight, to train on a CPU)
CONFIG_VARIANT = {"tft": "lightweight"}


@functools.cache
def _composed(*overrides: str) -> DictConfig:
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=["paths.output_dir=/tmp/x", *overrides])


def _compose(*overrides: str) -> DictConfig:
    return copy.deepcopy(_composed(*overrides))  # cached: composing costs ~0.2 s


def _build(name: str, variant: str = "default") -> Any:
    model_cfg = _compose(f"model={name}").model
    model_cfg.variant = variant  # same as the model.variant=... override, without recomposing
    return build_model(model_cfg, n_features=N_FEATURES, n_outputs=N_OUTPUTS)


def test_every_variant_model_has_a_config() -> None:
    assert set(VARIANTS) <= set(MODEL_NAMES)


@pytest.mark.parametrize("name", sorted(set(MODEL_NAMES) - set(VARIANTS)))
def test_models_without_presets_are_not_nets(name: str) -> None:
    assert "net" not in _compose(f"model={name}").model.module, f"{name} needs size presets"


@pytest.mark.parametrize("name", NET_MODELS)
def test_model_config_builds_and_forecasts(name: str) -> None:
    cfg = _compose(f"model={name}")
    assert cfg.model.name == name
    assert cfg.model.variant == CONFIG_VARIANT.get(name, "default")
    lit = build_model(cfg.model, n_features=N_FEATURES, n_outputs=N_OUTPUTS).eval()
    for batch in (1, 3):
        with torch.no_grad():
            y_hat = lit(torch.randn(batch, 16, N_FEATURES))
        assert y_hat.shape == (batch, N_OUTPUTS)
    # size keys come from the presets, never from the YAML
    preset_keys = {k for preset in VARIANTS[name].values() for k in preset}
    assert not preset_keys & set(cfg.model.module.net), f"size keys in conf/model/{name}.yaml"


@pytest.mark.parametrize(
    ("name", "variant"), [(m, v) for m, presets in VARIANTS.items() for v in presets]
)
def test_every_variant_builds(name: str, variant: str) -> None:
    lit = _build(name, variant).eval()
    with torch.no_grad():
        assert lit(torch.randn(2, 8, N_FEATURES)).shape == (2, N_OUTPUTS)


@pytest.mark.parametrize("name", TCN_MODELS)
def test_tcn_models_raise_lookback_and_command_line_wins(name: str) -> None:
    assert _compose(f"model={name}").features.lookback == 128
    assert _compose(f"model={name}", "features.lookback=64").features.lookback == 64
    assert _compose(f"model={name}", "features=minimal").features.lookback == 128


def test_other_models_keep_the_features_lookback() -> None:
    assert _compose("model=lstm").features.lookback == _compose().features.lookback == 64


@pytest.mark.parametrize("name", TCN_MODELS)
def test_tcn_variants_fit_the_lookback_their_config_sets(name: str) -> None:
    cfg = _compose(f"model={name}")
    for variant in VARIANTS[name]:
        lit = _build(name, variant)
        assert lit.net.receptive_field <= cfg.features.lookback, variant
    assert _build(name).net.receptive_field >= 125
