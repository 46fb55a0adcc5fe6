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
    # Dilations 1, 2, 4, ...; receptive field 1 + 2 * (kernel_size - 1) * (2**blocks - 1):
    # 125 bars for lightweight/default/matched, 127 for deep, all inside model=tcn's lookback 128.
    # matched: 58,785 parameters at F=34, H=1, within 0.3% of lstm "matched" (58,945).
    "tcn": {
        "lightweight": {"channels": [16] * 5, "kernel_size": 3},
        "default": {"channels": [32] * 5, "kernel_size": 3},
        "deep": {"channels": [64] * 6, "kernel_size": 2},
        "matched": {"channels": [44] * 5, "kernel_size": 3},
    },
    # Same convolutional stack as tcn; attention then spans the whole window.
    "tcn_attention": {
        "lightweight": {"channels": [16] * 5, "kernel_size": 3, "num_heads": 2},
        "default": {"channels": [32] * 5, "kernel_size": 3, "num_heads": 4},
        "deep": {"channels": [64] * 6, "kernel_size": 2, "num_heads": 8},
    },
    "cnn_lstm": {
        "lightweight": {"conv_channels": 16, "conv_layers": 1, "hidden_size": 32, "num_layers": 1},
        "default": {"conv_channels": 32, "conv_layers": 2, "hidden_size": 64, "num_layers": 1},
        "deep": {"conv_channels": 64, "conv_layers": 3, "hidden_size": 128, "num_layers": 2},
    },
    # matched: 58,945 parameters at F=34, H=1 (= default); see tcn "matched".
    "lstm": {
        "lightweight": {"hidden_size": 32, "num_layers": 1},
        "default": {"hidden_size": 64, "num_layers": 2},
        "deep": {"hidden_size": 128, "num_layers": 3},
        "matched": {"hidden_size": 64, "num_layers": 2},
    },
    "gru": {
        "lightweight": {"hidden_size": 32, "num_layers": 1},
        "default": {"hidden_size": 64, "num_layers": 2},
        "deep": {"hidden_size": 128, "num_layers": 3},
    },
    # Temporal Fusion Transformer; the per-feature GRNs dominate the size (about 4 * F * C^2):
    # 48,279 / 175,607 / 705,727 parameters at F=34, H=1. model=tft defaults to lightweight.
    "tft": {
        "lightweight": {"hidden_size": 16, "num_heads": 2, "lstm_layers": 1},
        "default": {"hidden_size": 32, "num_heads": 4, "lstm_layers": 1},
        "deep": {"hidden_size": 64, "num_heads": 4, "lstm_layers": 2},
    },
    # hidden_size is per direction: C = 2 * hidden_size equals the lstm preset of the same name.
    "bilstm": {
        "lightweight": {"hidden_size": 16, "num_layers": 1},
        "default": {"hidden_size": 32, "num_layers": 2},
        "deep": {"hidden_size": 64, "num_layers": 3},
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
