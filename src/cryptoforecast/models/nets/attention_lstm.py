"""Attention-LSTM: a unidirectional LSTM encoder followed by causal multi-head self-attention."""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import Tensor, nn


class AttentionLSTM(nn.Module):
    """LSTM encoder with causal multi-head self-attention over its outputs and a linear head.

    Attention over recurrent outputs follows Bahdanau et al. (2015, "Neural Machine Translation by
    Jointly Learning to Align and Translate") and Luong et al. (2015, "Effective Approaches to
    Attention-based Neural Machine Translation"); the scaled dot-product multi-head form, residual
    connection and LayerNorm follow Vaswani et al. (2017, "Attention Is All You Need"). The
    attention mask is causal (step ``i`` attends only to steps ``<= i``), so the per-step encoder
    never looks ahead and ``encode(x[:, :s]) == encode(x)[:, :s]`` (house rule R9).

    Layout: ``LSTM -> MHA(causal) -> residual + LayerNorm [-> FF -> residual + LayerNorm]`` per
    step, then the last step's representation goes through ``Linear(hidden_size, horizon)``.

    Args:
        n_features: Number of input features ``F``.
        horizon: Number of forecast steps ``H``.
        hidden_size: LSTM hidden size, also the attention width ``C``.
        num_layers: Number of stacked LSTM layers.
        num_heads: Attention heads; must divide ``hidden_size``.
        dropout: Dropout between LSTM layers, on attention weights and on residual branches.
        ff_dim: Width of the optional position-wise feed-forward block; ``None`` disables it.

    Shapes:
        - Input ``x``: ``[B, L, F]`` (batch-first).
        - ``encode(x)``: ``[B, L, C]`` with ``C = hidden_size``.
        - Output ``y_hat``: ``[B, H]``.
        - Attention weights (``return_attention=True``): ``[B, num_heads, L, L]``, rows sum to 1,
          zero above the diagonal.

    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        ff_dim: int | None = None,
    ) -> None:
        super().__init__()
        if n_features < 1 or horizon < 1 or hidden_size < 1 or num_layers < 1 or num_heads < 1:
            raise ValueError(
                "n_features, horizon, hidden_size, num_layers and num_heads must be >= 1, got "
                f"{n_features=}, {horizon=}, {hidden_size=}, {num_layers=}, {num_heads=}"
            )
        if hidden_size % num_heads != 0:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if ff_dim is not None and ff_dim < 1:
            raise ValueError(f"ff_dim must be >= 1 or None, got {ff_dim}")

        self.n_features = n_features
        self.horizon = horizon
        self.hidden_size = hidden_size
        self.num_heads = num_heads

        # torch warns (and ignores) inter-layer dropout on a single-layer LSTM.
        self.lstm = nn.LSTM(
            input_size=n_features,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.attn = nn.MultiheadAttention(
            embed_dim=hidden_size, num_heads=num_heads, dropout=dropout, batch_first=True
        )
        self.drop = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.ff: nn.Sequential | None = None
        self.norm2: nn.LayerNorm | None = None
        if ff_dim is not None:
            self.ff = nn.Sequential(
                nn.Linear(hidden_size, ff_dim),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(ff_dim, hidden_size),
            )
            self.norm2 = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, horizon)

    @staticmethod
    def _causal_mask(x: Tensor) -> Tensor:
        """Boolean mask ``[L, L]``; True above the diagonal marks the future (not attended)."""
        steps = torch.arange(x.shape[1], device=x.device)
        # Built from tensor ops on the runtime length: no python branching, ONNX-traceable.
        return steps.unsqueeze(0) > steps.unsqueeze(1)  # [1, L] > [L, 1] -> [L, L]

    def _encode(self, x: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        h, _ = self.lstm(x)  # [B, L, F] -> [B, L, C]
        a, weights = self.attn(
            h,
            h,
            h,
            attn_mask=self._causal_mask(h),
            need_weights=need_weights,
            average_attn_weights=False,
        )  # a: [B, L, C]; weights: [B, heads, L, L] or None
        z = self.norm1(h + self.drop(a))  # [B, L, C]
        if self.ff is not None and self.norm2 is not None:
            z = self.norm2(z + self.drop(self.ff(z)))  # [B, L, C]
        return z, weights

    def encode(self, x: Tensor) -> Tensor:
        """Per-step causal representation.

        Args:
            x: Input window.

        Returns:
            Per-step features; step ``i`` depends only on ``x[:, : i + 1]``.

        Shapes:
            ``x [B, L, F] -> [B, L, C]``.

        """
        z, _ = self._encode(x, need_weights=False)
        return z

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
        z, weights = self._encode(x, need_weights=return_attention)
        y_hat: Tensor = self.head(z[:, -1])  # [B, L, C] -> [B, C] -> [B, H]
        if return_attention:
            assert weights is not None  # need_weights=True always returns them
            return y_hat, weights
        return y_hat
