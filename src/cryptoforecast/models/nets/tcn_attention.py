"""TCN encoder followed by causal multi-head self-attention (TCAN-style)."""

from __future__ import annotations

import logging
from typing import Literal, overload

from torch import Tensor, nn

from cryptoforecast.models.nets.attention import CausalSelfAttention
from cryptoforecast.models.nets.tcn import DEFAULT_BLOCKS, receptive_field, temporal_blocks

log = logging.getLogger(__name__)


class TCNAttention(nn.Module):
    """Causal dilated TCN blocks, causal self-attention over their outputs, linear head.

    After Hao et al. (2020), "Temporal Convolutional Attention-based Network for Sequence
    Modeling" (TCAN): a temporal convolutional encoder (Bai et al., 2018) whose per-step outputs
    go through masked (causal) multi-head self-attention with a residual connection and
    LayerNorm (Vaswani et al., 2017). Both stages are causal, so ``encode`` is causal per step
    (tested); the attention lets the last step reach any earlier step of the window, not
    only those inside the convolutional receptive field.

    Layout: ``TemporalBlocks -> MHA(causal) -> residual + LayerNorm [-> FF -> residual +
    LayerNorm]`` per step, then the last step goes through ``Linear(C, horizon)``.

    Args:
        n_features: Number of input features ``F``.
        horizon: Number of forecast outputs ``H``.
        channels: Output channels per TCN block; ``None`` means ``[32] * 5``.
        kernel_size: Taps per convolution.
        dropout: Dropout in the TCN blocks, on attention weights and on residual branches.
        weight_norm: Weight-normalise the dilated convolutions.
        num_heads: Attention heads; must divide ``channels[-1]``.
        ff_dim: Width of the optional position-wise feed-forward block; ``None`` disables it.

    Shapes:
        - Input ``x``: ``[B, L, F]`` (batch-first).
        - ``encode(x)``: ``[B, L, C]`` with ``C = channels[-1]``.
        - Output ``y_hat``: ``[B, H]``.
        - Attention weights (``return_attention=True``): ``[B, num_heads, L, L]``, rows sum to 1,
          zero above the diagonal.

    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        channels: list[int] | None = None,
        kernel_size: int = 3,
        dropout: float = 0.1,
        weight_norm: bool = False,
        num_heads: int = 4,
        ff_dim: int | None = None,
    ) -> None:
        super().__init__()
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        channels = list(channels) if channels is not None else [32] * DEFAULT_BLOCKS
        self.n_features = n_features
        self.horizon = horizon
        self.kernel_size = kernel_size
        self.num_heads = num_heads
        self.blocks = temporal_blocks(n_features, channels, kernel_size, dropout, weight_norm)
        self.attention = CausalSelfAttention(channels[-1], num_heads, dropout, ff_dim)
        self.head = nn.Linear(channels[-1], horizon)
        log.info(
            "TCNAttention convolutional receptive field: %d bars (kernel_size=%d, %d blocks)",
            self.receptive_field,
            kernel_size,
            len(channels),
        )

    @property
    def receptive_field(self) -> int:
        """History seen by the convolutional stage alone (attention then spans the window)."""
        return receptive_field(self.kernel_size, len(self.blocks))

    def _encode(self, x: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        h = self.blocks(x.transpose(1, 2))  # [B, L, F] -> [B, F, L] -> [B, C, L]
        h = h.transpose(1, 2)  # [B, C, L] -> [B, L, C]
        out: tuple[Tensor, Tensor | None] = self.attention(h, need_weights=need_weights)
        return out  # [B, L, C], [B, heads, L, L] | None

    def encode(self, x: Tensor) -> Tensor:
        """Per-step causal representation. Shapes: ``x [B, L, F] -> [B, L, C]``."""
        z, _ = self._encode(x, need_weights=False)
        return z

    @overload
    def forward(self, x: Tensor, return_attention: Literal[False] = ...) -> Tensor: ...

    @overload
    def forward(self, x: Tensor, return_attention: Literal[True]) -> tuple[Tensor, Tensor]: ...

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Forecast from the last step's representation.

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
