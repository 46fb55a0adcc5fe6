"""Compact Temporal Fusion Transformer (Lim et al., 2021) for past-observed inputs only.

Lim, Arik, Loeff and Pfister (2021), "Temporal Fusion Transformers for Interpretable Multi-horizon
Time Series Forecasting", International Journal of Forecasting 37(4). Kept: gated residual
networks (GRN), a variable selection network (VSN) over the observed inputs, an LSTM encoder with
a gated skip, interpretable multi-head attention (heads share the value projection) and a
position-wise GRN. Left out: static covariate encoders, static enrichment and the decoder over
known-future inputs. Every feature here is an observed past value (calendar features are already
among them), and the forecast is read from the last step like every other net of the zoo.
"""

from __future__ import annotations

import math
from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cryptoforecast.models.nets.attention import causal_mask


class GroupedLinear(nn.Module):
    """``G`` independent ``Linear(d_in, d_out)`` layers applied in one einsum (no Python loop).

    Shapes: ``[B, L, G, d_in] -> [B, L, G, d_out]``.
    """

    def __init__(self, groups: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default initialisation range
        self.weight = nn.Parameter(torch.empty(groups, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, d_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        """Apply group ``g``'s weights to ``x[..., g, :]``."""
        return torch.einsum("blgi,gio->blgo", x, self.weight) + self.bias  # [B, L, G, d_out]


class GroupedLayerNorm(nn.Module):
    """LayerNorm over the last axis with its own affine parameters per group.

    Shapes: ``[B, L, G, d] -> [B, L, G, d]``.
    """

    def __init__(self, groups: int, dim: int) -> None:
        super().__init__()
        self.dim = dim  # a Python int, so ONNX export sees a static normalised shape
        self.weight = nn.Parameter(torch.ones(groups, dim))
        self.bias = nn.Parameter(torch.zeros(groups, dim))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise each group's vector, then scale and shift it with that group's affine."""
        return F.layer_norm(x, (self.dim,)) * self.weight + self.bias


def _linear(d_in: int, d_out: int, groups: int | None) -> nn.Module:
    return nn.Linear(d_in, d_out) if groups is None else GroupedLinear(groups, d_in, d_out)


class GatedLinearUnit(nn.Module):
    """Dropout, then ``GLU(h) = (W_4 h + b_4) * sigmoid(W_5 h + b_5)`` (Lim et al. eq. 5).

    Args:
        d_in: Input width.
        d_out: Output width.
        dropout: Dropout on the input (the paper applies it before every gate).
        groups: ``None`` for one unit; ``G`` for ``G`` independent units over ``[B, L, G, d]``.

    Shapes: ``[..., d_in] -> [..., d_out]``.
    """

    def __init__(self, d_in: int, d_out: int, dropout: float, groups: int | None = None) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = _linear(d_in, 2 * d_out, groups)

    def forward(self, h: Tensor) -> Tensor:
        """Gate ``h``: the sigmoid half decides how much of the linear half passes."""
        value, gate = self.fc(self.drop(h)).chunk(2, dim=-1)  # 2 x [..., d_out]
        return value * torch.sigmoid(gate)


class GatedResidualNetwork(nn.Module):
    """``LayerNorm(skip(a) + GLU(W_1 ELU(W_2 a + W_3 c + b_2) + b_1))`` (Lim et al. eq. 2-4).

    Args:
        d_in: Input width.
        d_hidden: Width of the two inner layers.
        d_out: Output width; ``skip`` is a linear projection when it differs from ``d_in``.
        dropout: Dropout before the gate.
        d_context: Width of an optional context vector ``c`` added inside (``None``: no context).
        groups: ``None`` for one GRN; ``G`` for ``G`` independent GRNs over ``[B, L, G, d]``
            (weights ``[G, d_in, d_out]``, one einsum each; no context then).
        linear_skip: Learn the skip projection even when ``d_in == d_out``.

    Shapes: ``a [..., d_in]`` (+ ``c [..., d_context]``) ``-> [..., d_out]``.
    """

    def __init__(
        self,
        d_in: int,
        d_hidden: int,
        d_out: int,
        dropout: float,
        d_context: int | None = None,
        groups: int | None = None,
        linear_skip: bool = False,
    ) -> None:
        super().__init__()
        if d_context is not None and groups is not None:
            raise ValueError("a grouped GRN takes no context (the paper's per-variable GRNs)")
        identity = d_in == d_out and not linear_skip
        self.skip = nn.Identity() if identity else _linear(d_in, d_out, groups)
        self.fc2 = _linear(d_in, d_hidden, groups)
        self.context = None if d_context is None else nn.Linear(d_context, d_hidden, bias=False)
        self.fc1 = _linear(d_hidden, d_hidden, groups)
        self.glu = GatedLinearUnit(d_hidden, d_out, dropout, groups)
        self.norm = nn.LayerNorm(d_out) if groups is None else GroupedLayerNorm(groups, d_out)

    def forward(self, a: Tensor, context: Tensor | None = None) -> Tensor:
        """Gated residual transform of ``a``, conditioned on ``context`` when given."""
        h = self.fc2(a)  # [..., d_hidden]
        if context is not None:
            if self.context is None:
                raise ValueError("context given to a GRN built without d_context")
            h = h + self.context(context)
        h = self.fc1(F.elu(h))  # [..., d_hidden]
        out: Tensor = self.norm(self.skip(a) + self.glu(h))  # [..., d_out]
        return out


class VariableSelectionNetwork(nn.Module):
    """Per-step soft selection over ``F`` scalar inputs (Lim et al. eq. 6-8).

    Each feature ``j`` gets its own linear embedding ``xi_j = x_j w_j + b_j`` and its own GRN
    (both grouped: one einsum over ``F``). The selection weights are ``softmax(GRN_v(x_t))``.
    The paper feeds ``GRN_v`` the flattened embeddings ``[xi_1, ..., xi_F]``; with scalar inputs
    those are an affine function of ``x_t`` itself, so feeding ``x_t`` (with a learned skip
    projection, as the paper's ``F * hidden -> F`` one) is the same model class at ``F`` instead
    of ``F * hidden`` input width.

    Shapes: ``x [B, L, F] -> (selected [B, L, C], weights [B, L, F])``; weights sum to 1 over F.
    """

    def __init__(self, n_features: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        bound = 1.0  # nn.Linear(1, hidden)'s initialisation range
        self.embed_weight = nn.Parameter(
            torch.empty(n_features, hidden_size).uniform_(-bound, bound)
        )
        self.embed_bias = nn.Parameter(
            torch.empty(n_features, hidden_size).uniform_(-bound, bound)
        )
        self.selector = GatedResidualNetwork(
            n_features, hidden_size, n_features, dropout, linear_skip=True
        )
        self.transforms = GatedResidualNetwork(
            hidden_size, hidden_size, hidden_size, dropout, groups=n_features
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Select and mix the transformed inputs of every step."""
        weights = torch.softmax(self.selector(x), dim=-1)  # [B, L, F]
        xi = x.unsqueeze(-1) * self.embed_weight + self.embed_bias  # [B, L, F, 1] -> [B, L, F, C]
        transformed = self.transforms(xi)  # [B, L, F, C]
        selected = (weights.unsqueeze(-1) * transformed).sum(dim=2)  # [B, L, F, C] -> [B, L, C]
        return selected, weights


class InterpretableMultiHeadAttention(nn.Module):
    """Causal interpretable multi-head attention (Lim et al. eq. 13-16).

    Each head has its own query and key projections; all heads share one value projection, so
    averaging the heads' outputs equals applying their averaged weights to the shared values:
    the mean over heads of ``attn`` is the model's one attention pattern. The mask is causal
    (step ``i`` attends only to steps ``<= i``).

    Shapes: ``h [B, L, C] -> (out [B, L, C], attn [B, heads, L, L])``; ``attn`` rows sum to 1 and
    are zero above the diagonal.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(
                f"attention width ({dim}) must be divisible by num_heads ({num_heads})"
            )
        self.num_heads = num_heads
        self.d_head = dim // num_heads
        self.query = nn.Linear(dim, dim)  # num_heads x d_head, one block per head
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, self.d_head)  # shared by every head
        self.out = nn.Linear(self.d_head, dim)
        self.drop = nn.Dropout(dropout)

    def _split_heads(self, t: Tensor) -> Tensor:
        b, steps = t.shape[0], t.shape[1]
        return t.reshape(b, steps, self.num_heads, self.d_head).transpose(1, 2)  # [B, h, L, d]

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Attend causally over ``h``; return the output and the per-head weights."""
        q, k = self._split_heads(self.query(h)), self._split_heads(self.key(h))  # [B, h, L, d]
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # [B, h, L, L]
        attn = torch.softmax(scores.masked_fill(causal_mask(h), float("-inf")), dim=-1)
        v = self.value(h).unsqueeze(1)  # [B, L, d] -> [B, 1, L, d], shared by the heads
        mixed = (self.drop(attn) @ v).mean(dim=1)  # [B, h, L, d] -> [B, L, d]
        return self.out(mixed), attn  # [B, L, C], [B, h, L, L]


class TemporalFusionTransformer(nn.Module):
    """Compact TFT: VSN -> LSTM + gated skip -> causal interpretable attention -> GRN -> head.

    Per step: ``VSN -> LSTM -> GateAddNorm(skip: selected) -> IMHA(causal) -> GateAddNorm
    (skip: LSTM block) -> GRN -> GateAddNorm (skip: LSTM block)``, then ``Linear(C, H)`` on the
    last step. Every stage is per step or causal, so ``encode(x[:, :s]) == encode(x)[:, :s]``
    (tested).

    Args:
        n_features: Number of input features ``F``.
        horizon: Number of forecast outputs ``H``.
        hidden_size: Width ``C`` of every layer (embeddings, GRNs, LSTM, attention).
        num_heads: Attention heads; must divide ``hidden_size``.
        lstm_layers: Stacked unidirectional LSTM layers of the encoder.
        dropout: Dropout before every gate, on attention weights and between LSTM layers.

    Shapes:
        - Input ``x``: ``[B, L, F]`` (batch-first).
        - ``encode(x)``: ``[B, L, C]``.
        - Output ``y_hat``: ``[B, H]``.
        - Attention (``return_attention=True``): ``[B, num_heads, L, L]`` per head; rows sum to
          1, zero above the diagonal; their mean over heads is the interpretable pattern.
        - ``variable_importance(x)``: ``[B, L, F]`` selection weights, summing to 1 over ``F``.

    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        hidden_size: int = 32,
        num_heads: int = 4,
        lstm_layers: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if min(n_features, horizon, hidden_size, num_heads, lstm_layers) < 1:
            raise ValueError(
                "n_features, horizon, hidden_size, num_heads and lstm_layers must be >= 1, got "
                f"{n_features=}, {horizon=}, {hidden_size=}, {num_heads=}, {lstm_layers=}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_features = n_features
        self.horizon = horizon
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        c = hidden_size
        self.selection = VariableSelectionNetwork(n_features, c, dropout)
        # torch warns (and ignores) inter-layer dropout on a single-layer LSTM.
        self.lstm = nn.LSTM(
            c, c, lstm_layers, batch_first=True, dropout=dropout if lstm_layers > 1 else 0.0
        )
        self.lstm_gate, self.lstm_norm = GatedLinearUnit(c, c, dropout), nn.LayerNorm(c)
        self.attention = InterpretableMultiHeadAttention(c, num_heads, dropout)
        self.attn_gate, self.attn_norm = GatedLinearUnit(c, c, dropout), nn.LayerNorm(c)
        self.positionwise = GatedResidualNetwork(c, c, c, dropout)
        self.out_gate, self.out_norm = GatedLinearUnit(c, c, 0.0), nn.LayerNorm(c)
        self.head = nn.Linear(c, horizon)

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        selected, _ = self.selection(x)  # [B, L, F] -> [B, L, C]
        h, _ = self.lstm(selected)  # [B, L, C]
        phi = self.lstm_norm(selected + self.lstm_gate(h))  # gated skip over the LSTM
        a, attn = self.attention(phi)  # [B, L, C], [B, heads, L, L]
        delta = self.attn_norm(phi + self.attn_gate(a))
        psi = self.positionwise(delta)  # [B, L, C]
        z = self.out_norm(phi + self.out_gate(psi))  # skip over the whole attention block
        return z, attn

    def encode(self, x: Tensor) -> Tensor:
        """Per-step causal representation. Shapes: ``x [B, L, F] -> [B, L, C]``."""
        z, _ = self._encode(x)
        return z

    def variable_importance(self, x: Tensor) -> Tensor:
        """Variable-selection weights of every step. Shapes: ``x [B, L, F] -> [B, L, F]``."""
        _, weights = self.selection(x)
        return weights

    @overload
    def forward(self, x: Tensor, return_attention: Literal[False] = ...) -> Tensor: ...

    @overload
    def forward(self, x: Tensor, return_attention: Literal[True]) -> tuple[Tensor, Tensor]: ...

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Forecast ``H`` steps from the last step's representation.

        Args:
            x: Input window.
            return_attention: Also return the per-head attention weights.

        Returns:
            ``y_hat``, or ``(y_hat, attn)`` when ``return_attention`` is True.

        Shapes:
            ``x [B, L, F] -> y_hat [B, H]``; ``attn [B, num_heads, L, L]``.

        """
        z, attn = self._encode(x)
        y_hat: Tensor = self.head(z[:, -1])  # [B, L, C] -> [B, C] -> [B, H]
        return (y_hat, attn) if return_attention else y_hat
