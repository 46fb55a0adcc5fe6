"""Contract tests shared by every pure net: shapes, gradients, causality (R9), determinism.

Add a net by appending a factory to NET_FACTORIES (and, if it exposes attention weights, to
ATTENTION_FACTORIES). Every factory builds a net for N_FEATURES inputs and HORIZON outputs.
Every net is probed for per-step causality except those in NON_CAUSAL_FACTORIES (BiLSTM, by
design: see test_bilstm_encoder_is_not_causal_but_forecast_uses_only_the_window).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from cryptoforecast.models.nets.attention_lstm import AttentionLSTM
from cryptoforecast.models.nets.cnn_lstm import CNNLSTM
from cryptoforecast.models.nets.rnn import BiLSTMNet, GRUNet, LSTMNet
from cryptoforecast.models.nets.tcn import TCN
from cryptoforecast.models.nets.tcn_attention import TCNAttention
from cryptoforecast.models.nets.tft import TemporalFusionTransformer
from cryptoforecast.models.variants import VARIANTS, resolve_variant

N_FEATURES, HORIZON, LOOKBACK = 5, 3, 32


def alstm_small() -> nn.Module:
    return AttentionLSTM(N_FEATURES, HORIZON, hidden_size=16, num_layers=2, num_heads=2)


def alstm_ff() -> nn.Module:
    return AttentionLSTM(N_FEATURES, HORIZON, hidden_size=16, num_layers=1, num_heads=4, ff_dim=32)


def tcn_small() -> nn.Module:
    return TCN(N_FEATURES, HORIZON, channels=[8, 8, 8], kernel_size=3)  # receptive field 29


def tcn_weight_norm() -> nn.Module:
    # channel change between blocks exercises the 1x1 residual convolution
    return TCN(N_FEATURES, HORIZON, channels=[8, 12], kernel_size=2, weight_norm=True)


def tcn_k1() -> nn.Module:
    return TCN(N_FEATURES, HORIZON, channels=[8, 8], kernel_size=1)  # pad 0: the chomp bug


def tcn_attention_small() -> nn.Module:
    return TCNAttention(N_FEATURES, HORIZON, channels=[8, 8, 8], num_heads=2)


def tcn_attention_ff() -> nn.Module:
    return TCNAttention(
        N_FEATURES,
        HORIZON,
        channels=[8, 16],
        kernel_size=2,
        num_heads=4,
        ff_dim=32,
        weight_norm=True,
    )


def cnn_lstm_small() -> nn.Module:
    return CNNLSTM(
        N_FEATURES, HORIZON, conv_channels=8, conv_layers=2, hidden_size=16, num_layers=2
    )


def lstm_small() -> nn.Module:
    return LSTMNet(N_FEATURES, HORIZON, hidden_size=16, num_layers=2)


def gru_small() -> nn.Module:
    return GRUNet(N_FEATURES, HORIZON, hidden_size=16, num_layers=2)


def bilstm_small() -> nn.Module:
    return BiLSTMNet(N_FEATURES, HORIZON, hidden_size=8, num_layers=2)


def tft_small() -> nn.Module:
    return TemporalFusionTransformer(N_FEATURES, HORIZON, hidden_size=8, num_heads=2)


def tft_two_layers() -> nn.Module:
    return TemporalFusionTransformer(
        N_FEATURES, HORIZON, hidden_size=12, num_heads=3, lstm_layers=2, dropout=0.2
    )


NET_FACTORIES: list[Callable[[], nn.Module]] = [
    alstm_small,
    alstm_ff,
    tcn_small,
    tcn_weight_norm,
    tcn_k1,
    tcn_attention_small,
    tcn_attention_ff,
    cnn_lstm_small,
    lstm_small,
    gru_small,
    bilstm_small,
    tft_small,
    tft_two_layers,
]
ATTENTION_FACTORIES: list[Callable[[], nn.Module]] = [
    alstm_small,
    alstm_ff,
    tcn_attention_small,
    tcn_attention_ff,
    tft_small,
    tft_two_layers,
]
# Deliberately excluded from the per-step causal probe (R9); tested separately below.
NON_CAUSAL_FACTORIES: list[Callable[[], nn.Module]] = [bilstm_small]
CAUSAL_FACTORIES = [f for f in NET_FACTORIES if f not in NON_CAUSAL_FACTORIES]
# model name in variants.py -> net class; extend when a net gains presets.
VARIANT_CLASSES: dict[str, type[nn.Module]] = {
    "attention_lstm": AttentionLSTM,
    "tcn": TCN,
    "tcn_attention": TCNAttention,
    "cnn_lstm": CNNLSTM,
    "lstm": LSTMNet,
    "gru": GRUNet,
    "bilstm": BiLSTMNet,
    "tft": TemporalFusionTransformer,
}


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


@pytest.mark.parametrize("make_net", CAUSAL_FACTORIES)
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


# The pinned exporter (export/onnx.py: TorchScript path, opset 17) narrates its own internals.
@pytest.mark.filterwarnings("ignore:Constant folding - Only steps=1:UserWarning")
@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
@pytest.mark.parametrize("make_net", NET_FACTORIES)
def test_onnx_export_matches_torch_at_batch_1_and_7(
    make_net: Callable[[], nn.Module], tmp_path: Path
) -> None:
    """Every net exports (dynamic batch, attention as a 2nd output) and onnxruntime agrees."""
    from cryptoforecast.export.onnx import NET_ATOL, export_net, verify_net_parity

    net = make_net().eval()
    path = tmp_path / "net.onnx"
    graph = export_net(net, LOOKBACK, N_FEATURES, path)
    assert graph["attention"] is (make_net in ATTENTION_FACTORIES)
    record = verify_net_parity(net, path, torch.randn(9, LOOKBACK, N_FEATURES).numpy())
    assert record["passed"] and set(record["batches"]) == {"1", "7"}
    assert max(d for b in record["batches"].values() for d in b.values()) <= NET_ATOL


def test_attention_lstm_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        AttentionLSTM(N_FEATURES, HORIZON, hidden_size=10, num_heads=4)
    with pytest.raises(ValueError, match="ff_dim"):
        AttentionLSTM(N_FEATURES, HORIZON, ff_dim=0)


# --- TCN ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "kernel_size", "expected_rf"),
    [([8, 8, 8], 3, 29), ([8, 8, 8, 8], 2, 31), ([8, 8], 1, 1), (None, 3, 125)],
)
def test_tcn_receptive_field_is_exact(
    channels: list[int] | None, kernel_size: int, expected_rf: int
) -> None:
    """Step 0 reaches the last output at lookback RF, and no longer at RF + 1."""
    net = TCN(N_FEATURES, HORIZON, channels=channels, kernel_size=kernel_size, dropout=0.0).eval()
    rf = net.receptive_field
    assert rf == expected_rf
    for lookback, reaches in ((rf, True), (rf + 1, False)):
        x = torch.randn(8, lookback, N_FEATURES)
        x_changed = x.clone()
        x_changed[:, 0, :] += 10.0  # perturb only the oldest step
        with torch.no_grad():
            last, last_changed = net.encode(x)[:, -1], net.encode(x_changed)[:, -1]  # [B, C]
            moved = not torch.equal(net(x), net(x_changed))
        assert (not torch.equal(last, last_changed)) is reaches, f"{lookback=}, {rf=}"
        assert moved is reaches


def test_tcn_kernel_size_one_is_pointwise() -> None:
    net = tcn_k1().eval()
    assert net.receptive_field == 1
    x = torch.randn(2, LOOKBACK, N_FEATURES)
    x_changed = x.clone()
    x_changed[:, 5, :] += 10.0
    with torch.no_grad():
        changed = (net.encode(x) != net.encode(x_changed)).any(-1).any(0)  # [L]
    assert changed.nonzero().flatten().tolist() == [5]


@pytest.mark.parametrize("weight_norm", [False, True])
def test_tcn_trains_one_step_with_and_without_weight_norm(weight_norm: bool) -> None:
    from torch.nn.utils import parametrize

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the deprecated torch.nn.utils.weight_norm would warn
        net = TCN(N_FEATURES, HORIZON, channels=[8, 12], kernel_size=2, weight_norm=weight_norm)
    first_conv = net.blocks[0].convs[0].conv
    assert parametrize.is_parametrized(first_conv, "weight") is weight_norm
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(6, LOOKBACK, N_FEATURES), torch.randn(6, HORIZON)
    loss = nn.functional.mse_loss(net.train()(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))


def test_tcn_logs_its_receptive_field(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cryptoforecast.models.nets.tcn"):
        TCN(N_FEATURES, HORIZON)
    assert "receptive field: 125 bars" in caplog.text


def test_tcn_default_variant_sees_at_least_125_bars() -> None:
    assert TCN(34, 1, **resolve_variant("tcn", "default")).receptive_field >= 125


def test_tcn_and_lstm_matched_presets_have_similar_parameter_counts() -> None:
    def n_params(net: nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    tcn = n_params(TCN(34, 1, **resolve_variant("tcn", "matched")))
    lstm = n_params(LSTMNet(34, 1, **resolve_variant("lstm", "matched")))
    assert abs(tcn - lstm) <= 0.1 * lstm, (tcn, lstm)


def test_tcn_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="channels"):
        TCN(N_FEATURES, HORIZON, channels=[])
    with pytest.raises(ValueError, match="kernel_size"):
        TCN(N_FEATURES, HORIZON, kernel_size=0)
    with pytest.raises(ValueError, match="divisible"):
        TCNAttention(N_FEATURES, HORIZON, channels=[8, 10], num_heads=4)


# --- BiLSTM: deliberately not causal per step ------------------------------------------------


def test_bilstm_encoder_is_not_causal_but_forecast_uses_only_the_window() -> None:
    """Why BiLSTM is excluded from test_encoder_is_causal, and why its forecast is still fine."""
    net = bilstm_small().eval()
    hidden = net.hidden_size
    x = torch.randn(4, LOOKBACK, N_FEATURES)
    x_changed = x.clone()
    x_changed[:, 20:, :] += 10.0
    with torch.no_grad():
        h, h_changed = net.encode(x), net.encode(x_changed)  # [B, L, 2 * hidden]
    # steps before the perturbation move: the backward direction reads each step's future
    assert not torch.allclose(h[:, :20, hidden:], h_changed[:, :20, hidden:])
    assert not torch.allclose(h[:, :20], h_changed[:, :20])

    # The forecast is a function of the window alone: bars after its end t cannot reach it, and
    # every bar inside it (the oldest included) does.
    series = torch.randn(2, 50, N_FEATURES)
    t = 39
    window = series[:, t - LOOKBACK + 1 : t + 1]  # [B, L, F], ends at t
    future_changed = series.clone()
    future_changed[:, t + 1 :] += 10.0
    oldest_changed = window.clone()
    oldest_changed[:, 0] += 10.0
    with torch.no_grad():
        y_hat = net(window)
        torch.testing.assert_close(
            net(future_changed[:, t - LOOKBACK + 1 : t + 1]), y_hat, atol=0, rtol=0
        )
        assert not torch.allclose(net(oldest_changed), y_hat)
        net(torch.randn(2, LOOKBACK, N_FEATURES))  # no state carried between calls
        torch.testing.assert_close(net(window), y_hat, atol=0, rtol=0)


def test_bilstm_pools_both_directions_final_states() -> None:
    net = bilstm_small().eval()
    x = torch.randn(3, LOOKBACK, N_FEATURES)
    with torch.no_grad():
        _, (h_n, _) = net.rnn(x)  # h_n: [layers * 2, B, hidden]
        torch.testing.assert_close(net.pool(net.encode(x)), torch.cat([h_n[-2], h_n[-1]], -1))
