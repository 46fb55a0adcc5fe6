"""Attention-LSTM: a unidirectional LSTM encoder followed by causal multi-head self-attention."""

from __future__ import annotations

from typing import Literal, overload

from torch import Tensor, nn

from cryptoforecast.models.nets.attention import CausalSelfAttention


class AttentionLSTM(nn.Module):
    """LSTM encoder with causal multi-head self-attention over its outputs and a linear head.

    Attention over recurrent outputs follows Bahdanau et al. (2015, "Neural Machine Translation by
    Jointly Learning to Align and Translate") and Luong et al. (2015, "Effective Approaches to
    Attention-based Neural Machine Translation"); the scaled dot-product multi-head form, residual
    connection and LayerNorm follow Vaswani et al. (2017, "Attention Is All You Need"). The
    attention mask is causal (step ``i`` attends only to steps ``<= i``), so the per-step encoder
    never looks ahead and ``encode(x[:, :s]) == encode(x)[:, :s]`` (tested).

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
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")

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
        # Heads, ff_dim and divisibility are validated by the shared block.
        self.attention = CausalSelfAttention(hidden_size, num_heads, dropout, ff_dim)
        self.head = nn.Linear(hidden_size, horizon)

    def _encode(self, x: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        h, _ = self.lstm(x)  # [B, L, F] -> [B, L, C]
        out: tuple[Tensor, Tensor | None] = self.attention(h, need_weights=need_weights)
        return out  # [B, L, C], [B, heads, L, L] | None

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
