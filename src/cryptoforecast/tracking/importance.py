"""Variable importances of nets with a variable-selection network (the TFT), per run or fold.

A net qualifies when it has ``variable_importance(x [B, L, F]) -> [B, L, F]`` (per-step softmax
selection weights). :func:`write_variable_importance` averages them over a fold's test windows
and writes ``variable_importance.csv`` and ``variable_importance.png`` into the run (or fold)
folder; :func:`cryptoforecast.tracking.report.fold_figures` calls it, so the PNG is logged to
W&B under ``plots/variable_importance`` beside the attention maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cryptoforecast.tracking.plots import plot_variable_importance

if TYPE_CHECKING:
    from cryptoforecast.data.datamodule import SampleSet

IMPORTANCE_CSV = "variable_importance.csv"
IMPORTANCE_PNG = "variable_importance.png"


def selection_net(forecaster: Any) -> Any:
    """The fitted net if it exposes ``variable_importance``, else None."""
    module = getattr(forecaster, "module", None)
    net = getattr(module, "net", None)
    net = getattr(net, "_orig_mod", net)  # unwrap torch.compile
    if net is None or getattr(forecaster, "dm", None) is None:
        return None
    return net if callable(getattr(net, "variable_importance", None)) else None


def mean_selection_weights(
    forecaster: Any, samples: SampleSet, positions: np.ndarray
) -> np.ndarray | None:
    """Selection weights averaged over the windows at ``positions``, per step.

    Windows are cut from the fold's scaled features exactly as ``TorchForecaster.predict``
    does. Returns None for nets without ``variable_importance`` or when ``positions`` is empty.

    Args:
        forecaster: a fitted ``TorchForecaster`` (``module`` and ``dm`` set).
        samples: the sample set the forecaster was fitted on.
        positions: indices into ``samples.windows.ends``.

    Shapes:
        ``[L, F]``: row ``i`` is window step ``i`` (``L - 1`` = bar ``t``); rows sum to 1.
    """
    net = selection_net(forecaster)
    if net is None or len(positions) == 0:
        return None
    import torch

    loader = forecaster.dm.windows_loader(positions)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    total = np.zeros((samples.windows.lookback, samples.n_features), dtype=np.float64)
    try:
        with torch.no_grad():
            for x, _ in loader:
                weights = net.variable_importance(x.to(device))  # [B, L, F]
                total += weights.double().sum(dim=0).cpu().numpy()  # [L, F]
    finally:
        net.train(was_training)
    return total / len(positions)


def importance_table(by_step: np.ndarray, feature_names: list[str]) -> pd.DataFrame:
    """One row per feature, most important first.

    Args:
        by_step: ``[L, F]`` mean selection weights from :func:`mean_selection_weights`.
        feature_names: the ``F`` column names, in input order.

    Returns:
        Columns ``feature``, ``importance`` (mean weight over windows and steps; sums to 1),
        ``importance_last_step`` (mean weight at bar ``t``, the step the head reads) and
        ``rank`` (1 = largest ``importance``).

    Raises:
        ValueError: ``by_step`` is not ``[L, F]`` with one column per name.
    """
    if by_step.ndim != 2 or by_step.shape[1] != len(feature_names):
        raise ValueError(
            f"selection weights must be [L, {len(feature_names)}] (one column per feature "
            f"name), got {by_step.shape}"
        )
    table = pd.DataFrame(
        {
            "feature": feature_names,
            "importance": by_step.mean(axis=0),
            "importance_last_step": by_step[-1],
        }
    )
    table = table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def write_variable_importance(
    forecaster: Any, samples: SampleSet, positions: np.ndarray, out_dir: Path, title: str
) -> dict[str, Path]:
    """Write the CSV and bar chart of a fold's test-window importances into ``out_dir``.

    Returns:
        ``{"variable_importance": <png>}``, or ``{}`` for nets without variable selection.
    """
    by_step = mean_selection_weights(forecaster, samples, positions)
    if by_step is None:
        return {}
    table = importance_table(by_step, list(samples.feature_names))
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / IMPORTANCE_CSV, index=False)
    png = plot_variable_importance(
        table,
        out_dir / IMPORTANCE_PNG,
        f"{title}: variable selection weights ({len(positions)} test windows)",
    )
    return {"variable_importance": png}
