"""Contract tests shared by every pure net: shapes, gradients, causality (R9), determinism.

Add a net by appending a factory to NET_FACTORIES (and, if it exposes attention weights, to
ATTENTION_FACTORIES). Every factory builds a net for N_FEATURES inputs and HORIZON outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from cryptoforecast.models.nets.attention_lstm import AttentionLSTM
from cryptoforecast.models.variants import VARIANTS, resolve_variant

N_FEATURES, HORIZON, LOOKBACK = 5, 3, 32


def alstm_small() -> nn.Module:
    return AttentionLSTM(N_FEATURES, HORIZON, hidden_size=16, num_layers=2, num_heads=2)


def alstm_ff() -> nn.Module:
    return AttentionLSTM(N_FEATURES, HORIZON, hidden_size=16, num_layers=1, num_heads=4, ff_dim=32)


NET_FACTORIES: list[Callable[[], nn.Module]] = [alstm_small, alstm_ff]
ATTENTION_FACTORIES: list[Callable[[], nn.Module]] = [alstm_small, alstm_ff]
# model name in variants.py -> net class; extend when a net gains presets.
VARIANT_CLASSES: dict[str, type[nn.Module]] = {"attention_lstm": AttentionLSTM}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("make_net", NET_FACTORIES)
@pytest.mark.parametrize("batch", [1, 7])
def test_output_shape(make_net: Callable[[], nn.Module], batch: int) -> None:
    net = make_net().eval()
    x = torch.randn(batch, LOOKBACK, N_FEATURES)
    y_hat = net(x)
    assert y_hat.shape == (batch, HORIZON)
    h = net.encode(x)
    assert h.ndim == 3 and h.shape[:2] == (batch, LOOKBACK)
    assert torch.isfinite(y_hat).all()


@pytest.mark.parametrize("make_net", NET_FACTORIES)
def test_gradients_are_finite(make_net: Callable[[], nn.Module]) -> None:
    net = make_net().train()
    x = torch.randn(4, LOOKBACK, N_FEATURES)
    net(x).pow(2).mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "every parameter takes part in the forward pass"
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    assert any(g.abs().sum() > 0 for g in grads if g is not None)


@pytest.mark.parametrize("make_net", ATTENTION_FACTORIES)
@pytest.mark.parametrize("batch", [1, 7])
def test_attention_weights_are_causal_distributions(
    make_net: Callable[[], nn.Module], batch: int
) -> None:
    net = make_net().eval()
    x = torch.randn(batch, LOOKBACK, N_FEATURES)
    y_hat, attn = net(x, return_attention=True)
    assert y_hat.shape == (batch, HORIZON)
    assert attn.shape == (batch, net.num_heads, LOOKBACK, LOOKBACK)
    torch.testing.assert_close(attn.sum(-1), torch.ones(batch, net.num_heads, LOOKBACK))
    future = torch.triu(torch.ones(LOOKBACK, LOOKBACK, dtype=torch.bool), diagonal=1)
    assert (attn[..., future] == 0).all()
    # asking for the weights must not change the forecast
    torch.testing.assert_close(y_hat, net(x))


@pytest.mark.parametrize("make_net", NET_FACTORIES)
@pytest.mark.parametrize("s", [1, 20, LOOKBACK - 1])
def test_encoder_is_causal(make_net: Callable[[], nn.Module], s: int) -> None:
    net = make_net().eval()
    x = torch.randn(4, LOOKBACK, N_FEATURES)
    x_changed = x.clone()
    x_changed[:, s:, :] += 10.0  # perturb only steps >= s
    with torch.no_grad():
        h, h_changed = net.encode(x), net.encode(x_changed)  # [B, L, C]
        h_prefix = net.encode(x[:, :s])  # [B, s, C]
    assert torch.allclose(h[:, :s], h_changed[:, :s]), "steps < s must not see the future"
    assert not torch.allclose(h[:, s:], h_changed[:, s:]), "probe is vacuous"
    torch.testing.assert_close(h_prefix, h[:, :s], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("model_name", "variant"),
    [(m, v) for m, presets in VARIANTS.items() for v in presets],
)
def test_variants_build_and_run(model_name: str, variant: str) -> None:
    net = VARIANT_CLASSES[model_name](
        n_features=N_FEATURES, horizon=HORIZON, **resolve_variant(model_name, variant)
    ).eval()
    assert net(torch.randn(2, 8, N_FEATURES)).shape == (2, HORIZON)


def test_resolve_variant_errors_list_known_names() -> None:
    with pytest.raises(ValueError, match="lightweight"):
        resolve_variant("attention_lstm", "huge")
    with pytest.raises(ValueError, match="attention_lstm"):
        resolve_variant("no_such_net", "default")
    overrides = resolve_variant("attention_lstm", "deep")
    overrides["hidden_size"] = 1  # a copy: the preset itself must stay intact
    assert resolve_variant("attention_lstm", "deep")["hidden_size"] == 128


def test_attention_lstm_variant_sizes() -> None:
    assert resolve_variant("attention_lstm", "lightweight") == {
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
    }
    assert resolve_variant("attention_lstm", "default") == {
        "hidden_size": 64,
        "num_layers": 2,
        "num_heads": 4,
    }
    assert resolve_variant("attention_lstm", "deep") == {
        "hidden_size": 128,
        "num_layers": 3,
        "num_heads": 8,
    }


@pytest.mark.parametrize("make_net", NET_FACTORIES)
def test_eval_mode_is_deterministic(make_net: Callable[[], nn.Module]) -> None:
    net = make_net().eval()
    x = torch.randn(3, LOOKBACK, N_FEATURES)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        # a sample's forecast does not depend on the rest of the batch
        torch.testing.assert_close(net(x[1:2]), net(x)[1:2], atol=1e-6, rtol=0)


def test_attention_lstm_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        AttentionLSTM(N_FEATURES, HORIZON, hidden_size=10, num_heads=4)
    with pytest.raises(ValueError, match="ff_dim"):
        AttentionLSTM(N_FEATURES, HORIZON, ff_dim=0)
