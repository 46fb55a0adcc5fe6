"""TFT-specific contracts beyond tests/unit/test_nets.py: selection weights, blocks, importances.

The shared net contracts (shapes, gradients, causality, attention rows, variants, determinism,
ONNX parity) run on the TFT through the factories in test_nets.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cryptoforecast.models.nets.tft import (
    GatedResidualNetwork,
    GroupedLinear,
    InterpretableMultiHeadAttention,
    TemporalFusionTransformer,
)
from cryptoforecast.models.variants import resolve_variant
from cryptoforecast.tracking.importance import importance_table
from cryptoforecast.tracking.plots import plot_variable_importance

N_FEATURES, HORIZON, LOOKBACK = 6, 2, 24


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _tft(**kwargs: int | float) -> TemporalFusionTransformer:
    return TemporalFusionTransformer(N_FEATURES, HORIZON, hidden_size=8, num_heads=2, **kwargs)


@pytest.mark.parametrize("train", [False, True])
def test_selection_weights_are_distributions_over_features(train: bool) -> None:
    net = _tft(dropout=0.3).train(train)
    weights = net.variable_importance(torch.randn(5, LOOKBACK, N_FEATURES) * 3.0)
    assert weights.shape == (5, LOOKBACK, N_FEATURES)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, LOOKBACK))
    assert weights.std() > 0, "the selector must weigh features differently"


def test_selection_is_per_step() -> None:
    net = _tft().eval()
    x = torch.randn(3, LOOKBACK, N_FEATURES)
    x_changed = x.clone()
    x_changed[:, 10] += 5.0  # only step 10
    with torch.no_grad():
        moved = (net.variable_importance(x) != net.variable_importance(x_changed)).any(-1)
    assert moved.any(0).nonzero().flatten().tolist() == [10]


def test_forecast_depends_on_the_selection_weights() -> None:
    """Forcing all weight onto one feature makes the others irrelevant to the forecast."""
    net = _tft().eval()
    logits = net.selection.selector.norm  # the selector GRN's last layer: its LayerNorm
    with torch.no_grad():
        logits.weight.zero_()
        logits.bias.zero_()
        logits.bias[-1] = 50.0  # every step selects the last feature only
        x = torch.randn(4, LOOKBACK, N_FEATURES)
        weights = net.variable_importance(x)
        assert (weights[..., :-1] < 1e-20).all()
        x_other = x.clone()
        x_other[..., :-1] = torch.randn_like(x_other[..., :-1])
        torch.testing.assert_close(net(x_other), net(x), atol=1e-6, rtol=0)
        x_last = x.clone()
        x_last[..., -1] += 2.0
        assert not torch.allclose(net(x_last), net(x), atol=1e-3)


def test_grouped_linear_equals_one_linear_per_group() -> None:
    grouped = GroupedLinear(groups=4, d_in=3, d_out=5)
    x = torch.randn(2, 7, 4, 3)
    expected = torch.stack(
        [x[:, :, g] @ grouped.weight[g] + grouped.bias[g] for g in range(4)], dim=2
    )
    torch.testing.assert_close(grouped(x), expected)


def test_interpretable_attention_is_one_pattern_over_shared_values() -> None:
    """Heads share the value projection: output == W_H (mean-over-heads attn @ V)."""
    block = InterpretableMultiHeadAttention(dim=8, num_heads=4, dropout=0.0).eval()
    h = torch.randn(3, LOOKBACK, 8)
    out, attn = block(h)
    expected = block.out(attn.mean(dim=1) @ block.value(h))  # [B, L, L] @ [B, L, d]
    torch.testing.assert_close(out, expected)
    assert attn.shape == (3, 4, LOOKBACK, LOOKBACK)
    assert not torch.allclose(attn[:, 0], attn[:, 1]), "heads have their own queries and keys"


def test_grn_context_changes_the_output_and_is_validated() -> None:
    grn = GatedResidualNetwork(4, 8, 6, dropout=0.0, d_context=3).eval()
    a = torch.randn(2, 5, 4)
    out = grn(a)
    assert out.shape == (2, 5, 6)
    assert not torch.allclose(grn(a, torch.randn(2, 5, 3)), out)
    with pytest.raises(ValueError, match="without d_context"):
        GatedResidualNetwork(4, 8, 6, dropout=0.0)(a, torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="grouped GRN takes no context"):
        GatedResidualNetwork(4, 8, 4, dropout=0.0, d_context=3, groups=2)


def test_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        TemporalFusionTransformer(N_FEATURES, HORIZON, hidden_size=10, num_heads=4)
    with pytest.raises(ValueError, match="lstm_layers"):
        TemporalFusionTransformer(N_FEATURES, HORIZON, lstm_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        TemporalFusionTransformer(N_FEATURES, HORIZON, dropout=1.0)


def test_variant_parameter_counts_grow_and_lightweight_stays_small() -> None:
    def n_params(variant: str) -> int:
        net = TemporalFusionTransformer(34, 1, **resolve_variant("tft", variant))
        return sum(p.numel() for p in net.parameters())

    sizes = [n_params(v) for v in ("lightweight", "default", "deep")]
    assert sizes == sorted(sizes) and sizes[0] < 50_000, sizes


def test_importance_table_ranks_features_and_sums_to_one() -> None:
    by_step = np.array([[0.2, 0.5, 0.3], [0.1, 0.3, 0.6]])  # [L=2, F=3], rows sum to 1
    table = importance_table(by_step, ["a", "b", "c"])
    assert table["feature"].tolist() == ["c", "b", "a"]
    np.testing.assert_allclose(table["importance"], [0.45, 0.4, 0.15])
    np.testing.assert_allclose(table["importance_last_step"], [0.6, 0.3, 0.1])
    assert table["rank"].tolist() == [1, 2, 3]
    assert table["importance"].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\[L, 2\]"):
        importance_table(by_step, ["a", "b"])


def test_importance_plot_writes_a_png(tmp_path: Path) -> None:
    table = importance_table(np.full((4, 3), 1 / 3), ["x", "y", "z"])
    path = plot_variable_importance(table, tmp_path / "sub" / "imp.png", "t")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="lacks columns"):
        plot_variable_importance(table.drop(columns="importance"), tmp_path / "x.png", "t")
