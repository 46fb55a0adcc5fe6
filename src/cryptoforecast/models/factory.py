"""Build models from config: variant presets, runtime sizes, the task, then ``_target_``.

``build_forecaster(cfg)`` gives the pipeline a :class:`~cryptoforecast.models.base.Forecaster`
for any ``model=`` choice; ``create_model(model_type, input_shape, variant)`` is the research
report's API for the bare model object.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from cryptoforecast.models.base import Forecaster
from cryptoforecast.models.variants import resolve_variant
from cryptoforecast.paths import CONF_DIR
from cryptoforecast.tracking.wandb_setup import active_run_logger, is_wandb_logger

TASKS = ("regression", "classification")


def known_models() -> list[str]:
    """Names of the model configs under ``conf/model``."""
    return sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def _is_torch(model_cfg: DictConfig) -> bool:
    return "net" in model_cfg.module


def build_model(
    model_cfg: DictConfig, n_features: int, n_outputs: int, task: str = "regression"
) -> Any:
    """Instantiate ``model_cfg.module`` for ``n_features`` inputs and ``n_outputs`` horizons.

    Torch nets: the variant preset gives the size keys; keys set explicitly under
    ``model.module.net`` win over the preset (``+model.module.net.hidden_size=48``).
    ``task=classification`` switches the loss to ``BCEWithLogitsLoss`` (LightGBM: objective
    ``binary``). Other models get ``variant`` through their own ``from_variant`` if they have one.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r}; choose one of {', '.join(TASKS)}")
    module_cfg = OmegaConf.to_container(model_cfg.module, resolve=True)
    assert isinstance(module_cfg, dict)
    if _is_torch(model_cfg):
        net_cfg: dict[str, Any] = module_cfg["net"]
        preset = resolve_variant(model_cfg.name, model_cfg.variant)
        explicit = {k: v for k, v in net_cfg.items() if v != "???"}
        net_cfg.clear()
        net_cfg.update({**preset, **explicit, "n_features": n_features, "horizon": n_outputs})
        module_cfg["task"] = task
        if task == "classification":
            module_cfg["loss"] = {"_target_": "torch.nn.BCEWithLogitsLoss"}
        return instantiate(module_cfg)
    if "objective" in module_cfg:  # LightGBM
        module_cfg["objective"] = "binary" if task == "classification" else "regression"
    target = module_cfg.pop("_target_")
    cls = get_class(target)
    if hasattr(cls, "from_variant"):
        return cls.from_variant(model_cfg.variant, **module_cfg)
    return cls(**module_cfg)


def build_forecaster(cfg: DictConfig) -> Forecaster:
    """The Forecaster for the composed train config (``cfg.model``, trainer, callbacks, ...)."""
    task = cfg.get("task", "regression")
    if cfg.model.module.get("_target_", "").endswith(".StackingEnsemble"):
        from cryptoforecast.models.ensemble import StackingEnsemble

        kwargs = OmegaConf.to_container(cfg.model.module, resolve=True)
        assert isinstance(kwargs, dict)
        kwargs.pop("_target_")
        make_base = functools.partial(ensemble_member, cfg)
        return StackingEnsemble(**kwargs, make_base=make_base)
    if not _is_torch(cfg.model):
        return build_model(cfg.model, n_features=0, n_outputs=0, task=task)  # type: ignore[no-any-return]
    from cryptoforecast.models.torch_forecaster import TorchForecaster

    def make_trainer(callbacks: list[L.Callback], loggers: list[Any], out: Path) -> L.Trainer:
        return instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(out)
        )

    def make_callbacks(out: Path) -> list[L.Callback]:
        made = []
        for c in (cfg.get("callbacks") or {}).values():
            if not c:
                continue
            extra = {"dirpath": str(out / "checkpoints")} if "dirpath" in c else {}
            made.append(instantiate(c, **extra))
        return made

    def make_loggers(out: Path) -> list[Any]:
        made = []
        for c in (cfg.get("logger") or {}).values():
            if c and is_wandb_logger(c):
                # The pipeline opened this job's (fold's) W&B run: train into it, not a new one.
                active = active_run_logger(str(out), model_name=cfg.model.get("name"))
                if active is not None:
                    made.append(active)
                    continue
            if c:
                extra = {"save_dir": str(out)} if "save_dir" in c else {}
                made.append(instantiate(c, **extra))
        return made

    return TorchForecaster(
        make_module=functools.partial(_torch_module, cfg.model, task),
        make_trainer=make_trainer,
        make_callbacks=make_callbacks,
        make_loggers=make_loggers,
        datamodule={**OmegaConf.to_container(cfg.datamodule, resolve=True), "seed": int(cfg.seed)},  # type: ignore[dict-item]
        seed=int(cfg.seed),
        ckpt_path=cfg.get("ckpt_path"),
    )


def base_forecaster(
    cfg: DictConfig,
    name: str,
    variant: str | None = None,
    module_overrides: dict[str, Any] | None = None,
) -> Forecaster:
    """A Forecaster for ``conf/model/<name>.yaml`` inside the root config ``cfg``.

    Used by the ensemble: same data, features, task, trainer and seed; only the model differs.
    Model files written as ``@package _global_`` (tcn) contribute their ``model`` node only, so
    every base model shares the ensemble's windows. ``variant`` replaces the model's preset and
    ``module_overrides`` are merged into its ``module`` (explicit size keys win over the preset).
    """
    if name not in known_models():
        raise ValueError(f"unknown model {name!r}; known: {', '.join(known_models())}")
    node = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
    if "module" not in node and "model" in node:
        node = node.model
    sub = copy.deepcopy(cfg)
    with open_dict(sub):
        sub.model = node
        if variant is not None:
            sub.model.variant = variant
        if module_overrides:
            sub.model.module = OmegaConf.merge(sub.model.module, module_overrides)
    return build_forecaster(sub)


def ensemble_member(cfg: DictConfig, name: str) -> Forecaster:
    """An ensemble's base model, with the ensemble's ``model.variant`` and size overrides.

    ``model.base_overrides[name]`` is merged into the member's ``model.module``. The pipeline
    and the export build members alike through this function.
    """
    node = cfg.model.get("base_overrides")
    overrides = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    if not isinstance(overrides, dict):
        raise ValueError(f"model.base_overrides must map base model names to keys, got {node}")
    members = list(cfg.model.module.get("base_models") or [])
    unknown = sorted(set(overrides) - set(members))
    if unknown:
        raise ValueError(
            f"model.base_overrides names {unknown}, not among model.module.base_models {members}"
        )
    variant = str(cfg.model.get("variant", "default"))
    return base_forecaster(cfg, name, variant, overrides.get(name))


def _torch_module(model_cfg: DictConfig, task: str, n_features: int, n_outputs: int) -> Any:
    return build_model(model_cfg, n_features, n_outputs, task)


def create_model(
    model_type: str,
    input_shape: tuple[int, int],
    variant: str = "default",
    horizons: int = 1,
    task: str = "regression",
) -> Any:
    """The research report's factory API (ARCHITECTURE.md): a model for ``model_type``.

    Args:
        model_type: a name from :func:`known_models` (``attention_lstm``, ``tcn``, ...).
        input_shape: ``(lookback, n_features)`` of one sample.
        variant: ``lightweight``, ``default`` or ``deep``.
        horizons: number of outputs (one per forecast horizon).
        task: ``regression`` or ``classification``.

    Returns:
        A ``LitForecaster`` wrapping the net for torch models, else the model object itself
        (e.g. ``LightGBMForecaster``), built from the same ``conf/model/<name>.yaml`` Hydra uses.

    Raises:
        ValueError: unknown model type (the message lists the known ones).
    """
    if model_type not in known_models():
        raise ValueError(
            f"unknown model {model_type!r}; known models: {', '.join(known_models())}"
        )
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[f"model={model_type}", f"model.variant={variant}", "paths.output_dir=."],
        )
    if model_type == "ensemble":  # needs the whole config to build its base models
        with open_dict(cfg):
            cfg.task = task
        return build_forecaster(cfg)
    _, n_features = input_shape
    return build_model(cfg.model, n_features=n_features, n_outputs=horizons, task=task)
