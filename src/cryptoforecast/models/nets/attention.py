"""Causal multi-head self-attention block shared by AttentionLSTM and TCNAttention."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def causal_mask(length_like: Tensor) -> Tensor:
    """Boolean mask ``[L, L]`` from a ``[B, L, ...]`` tensor; True above the diagonal = future.

    Built from tensor ops on the runtime length: no Python branching, so ONNX traces it with a
    dynamic batch axis.
    """
    steps = torch.arange(length_like.shape[1], device=length_like.device)
    return steps.unsqueeze(0) > steps.unsqueeze(1)  # [1, L] > [L, 1] -> [L, L]


class CausalSelfAttention(nn.Module):
    """Causal multi-head self-attention + residual + LayerNorm, optionally a feed-forward sublayer.

    The scaled dot-product multi-head form, residual connections and post-LayerNorm follow Vaswani
    et al. (2017, "Attention Is All You Need"). The mask is causal (step ``i`` attends only to
    steps ``<= i``), so a causal input sequence stays causal per step (tested).

    Layout: ``MHA(causal) -> residual + LayerNorm [-> FF -> residual + LayerNorm]``.

    Args:
        dim: Width ``C`` of the sequence it attends over.
        num_heads: Attention heads; must divide ``dim``.
        dropout: Dropout on attention weights and on residual branches.
        ff_dim: Width of the optional position-wise feed-forward block; ``None`` disables it.

    Shapes:
        - Input ``h``: ``[B, L, C]``.
        - Output ``z``: ``[B, L, C]``.
        - Weights (``need_weights=True``): ``[B, num_heads, L, L]``, rows sum to 1, zero above
          the diagonal.

    """

    def __init__(
        self, dim: int, num_heads: int, dropout: float, ff_dim: int | None = None
    ) -> None:
        super().__init__()
        if dim < 1 or num_heads < 1:
            raise ValueError(f"dim and num_heads must be >= 1, got {dim=}, {num_heads=}")
        if dim % num_heads != 0:
            raise ValueError(
                f"attention width ({dim}) must be divisible by num_heads ({num_heads})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if ff_dim is not None and ff_dim < 1:
            raise ValueError(f"ff_dim must be >= 1 or None, got {ff_dim}")
        self.num_heads = num_heads
        self.attn = nn.MultiheadAttention(
            embed_dim=dim, num_heads=num_heads, dropout=dropout, batch_first=True
        )
        self.drop = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ff: nn.Sequential | None = None
        self.norm2: nn.LayerNorm | None = None
        if ff_dim is not None:
            self.ff = nn.Sequential(
                nn.Linear(dim, ff_dim),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(ff_dim, dim),
            )
            self.norm2 = nn.LayerNorm(dim)

    def forward(self, h: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attend causally over ``h``.

        Args:
            h: Per-step sequence.
            need_weights: Also return the per-head attention weights.

        Returns:
            ``(z, weights)``; ``weights`` is ``None`` unless ``need_weights``.

        Shapes:
            ``h [B, L, C] -> z [B, L, C]``; ``weights [B, num_heads, L, L]``.

        """
        a, weights = self.attn(
            h,
            h,
            h,
            attn_mask=causal_mask(h),
            need_weights=need_weights,
            average_attn_weights=False,
        )  # a: [B, L, C]; weights: [B, heads, L, L] or None
        z = self.norm1(h + self.drop(a))  # [B, L, C]
        if self.ff is not None and self.norm2 is not None:
            z = self.norm2(z + self.drop(self.ff(z)))  # [B, L, C]
        return z, weights
