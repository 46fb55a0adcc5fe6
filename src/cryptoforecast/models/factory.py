"""Build a model from its config: variant presets + runtime sizes, then ``_target_``."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cryptoforecast.models.variants import resolve_variant


def build_model(model_cfg: DictConfig, n_features: int, n_outputs: int) -> Any:
    """Instantiate ``model_cfg.module`` with the variant preset and data-dependent sizes.

    The preset gives the size keys (hidden sizes, layers, heads); keys set explicitly under
    ``model.module.net`` win over the preset, so ``+model.module.net.hidden_size=48`` works with
    any variant. ``n_features`` and ``horizon`` (number of outputs) are filled here, once.
    """
    module_cfg = OmegaConf.to_container(model_cfg.module, resolve=True)
    assert isinstance(module_cfg, dict)
    net_cfg: dict[str, Any] = module_cfg["net"]
    preset = resolve_variant(model_cfg.name, model_cfg.variant)
    explicit = {k: v for k, v in net_cfg.items() if v != "???"}
    net_cfg.clear()
    net_cfg.update({**preset, **explicit, "n_features": n_features, "horizon": n_outputs})
    return instantiate(module_cfg)
