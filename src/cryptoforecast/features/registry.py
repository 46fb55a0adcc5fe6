"""The allow-list of feature transforms a bundle's ``feature_spec.json`` may name.

A bundle is data, never code: ``feature_spec.json`` names each transform by its registry name
(``"RSI"``, ``"WaveletFeatures"``, ...) and gives its constructor parameters. :func:`build`
looks the name up in :data:`TRANSFORMS` (a fixed table of this package's transform classes),
validates the parameters against the constructor's type hints (strict types, no unknown keys,
no missing required keys) and only then calls the constructor. Nothing in a spec is ever
imported, resolved as a Python path or called by name.

Bundles written before the registry stored ``"module.Class"`` paths; those are still read, but
only through :data:`LEGACY_PATHS`, an exact-match table from the old path to the registry name.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, ValidationError, create_model

from cryptoforecast.features.external import FearGreed, OnChain
from cryptoforecast.features.sentiment import TextSentiment
from cryptoforecast.features.transforms import (
    MACD,
    RSI,
    Calendar,
    EMADistance,
    HighLowRange,
    LagReturns,
    LogReturns,
    Momentum,
    MomentumBlock,
    RealizedVolatility,
    RollingStats,
    SMADistance,
    Stochastic,
    TransformBase,
    VolumeZScore,
)
from cryptoforecast.features.wavelet import WaveletFeatures

#: Registry name -> transform class. The only classes a feature spec can build.
TRANSFORMS: dict[str, type[TransformBase]] = {
    cls.__name__: cls
    for cls in (
        RSI,
        MACD,
        Momentum,
        Stochastic,
        EMADistance,
        SMADistance,
        LogReturns,
        RealizedVolatility,
        VolumeZScore,
        HighLowRange,
        Calendar,
        LagReturns,
        RollingStats,
        MomentumBlock,
        WaveletFeatures,
        FearGreed,
        OnChain,
        TextSentiment,
    )
}

#: Old bundles' ``"module.Class"`` entries -> registry name (exact string match only).
LEGACY_PATHS: dict[str, str] = {
    f"{cls.__module__}.{cls.__qualname__}": name for name, cls in TRANSFORMS.items()
}


class SpecError(ValueError):
    """A feature spec names an unknown transform or gives it bad parameters."""


def registry_name(transform: object) -> str:
    """The registry name of a transform instance (what ``to_spec`` writes).

    Raises:
        SpecError: the transform's class is not in :data:`TRANSFORMS` (it could not be served).
    """
    name = type(transform).__name__
    if TRANSFORMS.get(name) is not type(transform):
        raise SpecError(
            f"{type(transform).__module__}.{type(transform).__qualname__} is not a registered "
            f"feature transform (features/registry.py TRANSFORMS: {sorted(TRANSFORMS)})"
        )
    return name


def resolve_name(entry: Mapping[str, Any], where: str) -> str:
    """The registry name of one spec entry: ``"transform"`` or a legacy exact ``"class"`` path.

    Args:
        entry: one element of the spec's ``transforms`` list.
        where: ``"<file>: transforms[i]"`` for error messages.

    Raises:
        SpecError: neither key, or a name / path not in the allow-list.
    """
    if "transform" in entry:
        name = entry["transform"]
        if not isinstance(name, str) or name not in TRANSFORMS:
            raise SpecError(
                f"{where}.transform: unknown feature transform {_short(name)}; "
                f"known: {', '.join(sorted(TRANSFORMS))}"
            )
        return name
    if "class" in entry:
        path = entry["class"]
        if not isinstance(path, str) or path not in LEGACY_PATHS:
            raise SpecError(
                f"{where}.class: {_short(path)} is not a known feature transform; only "
                f"cryptoforecast's own transforms are built ({', '.join(sorted(TRANSFORMS))})"
            )
        return LEGACY_PATHS[path]
    raise SpecError(f"{where}: no 'transform' key naming the feature transform")


def build(name: str, params: Any, where: str) -> TransformBase:
    """Validate ``params`` against ``TRANSFORMS[name]``'s constructor and construct it.

    Args:
        name: a key of :data:`TRANSFORMS`.
        params: the spec's parameter mapping.
        where: ``"<file>: transforms[i]"`` for error messages.

    Raises:
        SpecError: unknown name, params not a mapping, an unknown or missing key, a value of the
            wrong type, or a value the constructor rejects; the message names ``where`` and the
            key.
    """
    if name not in TRANSFORMS:
        raise SpecError(f"{where}: unknown feature transform {_short(name)}")
    if not isinstance(params, Mapping):
        raise SpecError(f"{where}.params: expected an object of parameters, got {_short(params)}")
    model = _params_model(name)
    try:
        checked = model.model_validate(dict(params))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "params"
        raise SpecError(
            f"{where}.params.{key}: {first['msg']} ({name}; {exc.error_count()} error(s))"
        ) from None
    kwargs = {k: getattr(checked, k) for k in model.model_fields}
    try:
        return TRANSFORMS[name](**kwargs)
    except (ValueError, TypeError, KeyError) as exc:
        raise SpecError(f"{where}.params: {name} refused its parameters: {exc}") from None


_MODELS: dict[str, Any] = {}


def _params_model(name: str) -> Any:
    """A strict pydantic model of ``TRANSFORMS[name]``'s constructor (cached)."""
    if name not in _MODELS:
        cls = TRANSFORMS[name]
        hints = typing.get_type_hints(cls.__init__)
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(cls.__init__).parameters.items():
            if pname == "self":
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (hints.get(pname, Any), default)
        config = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=False)
        _MODELS[name] = create_model(f"{name}Params", __config__=config, **fields)
    return _MODELS[name]


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (a spec value may be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
