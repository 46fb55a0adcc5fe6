"""Size presets per model: ``VARIANTS[model_name][variant] -> net constructor overrides.

The factory (``create_model``) merges these overrides into the net's constructor arguments; data
dependent sizes (``n_features``, ``horizon``) never appear here. Add a new net by adding one entry.
"""

from __future__ import annotations

import copy
from typing import Any

# Treat as read-only: resolve_variant hands out copies, so callers never mutate the presets.
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "attention_lstm": {
        "lightweight": {"hidden_size": 32, "num_layers": 1, "num_heads": 2},
        "default": {"hidden_size": 64, "num_layers": 2, "num_heads": 4},
        "deep": {"hidden_size": 128, "num_layers": 3, "num_heads": 8},
    },
}


def resolve_variant(model_name: str, variant: str) -> dict[str, Any]:
    """Return the constructor overrides of one preset.

    Args:
        model_name: Model key, e.g. ``"attention_lstm"``.
        variant: Preset name, e.g. ``"lightweight"``, ``"default"`` or ``"deep"``.

    Returns:
        A fresh dict of keyword overrides (safe to mutate).

    Raises:
        ValueError: If the model or the variant is unknown; the message lists the known names.

    """
    if model_name not in VARIANTS:
        raise ValueError(f"unknown model {model_name!r}; known models: {sorted(VARIANTS)}")
    presets = VARIANTS[model_name]
    if variant not in presets:
        raise ValueError(
            f"unknown variant {variant!r} for model {model_name!r}; "
            f"known variants: {sorted(presets)}"
        )
    return copy.deepcopy(presets[variant])
