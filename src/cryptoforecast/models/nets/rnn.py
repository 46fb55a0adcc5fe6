"""Plain recurrent baselines: unidirectional LSTM and GRU, and a bidirectional LSTM."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _RecurrentNet(nn.Module):
    """Shared body: ``rnn -> pool -> Dropout -> Linear``; subclasses pick the cell and the pool."""

    def __init__(
        self,
        rnn: type[nn.LSTM] | type[nn.GRU],
        n_features: int,
        horizon: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        bidirectional: bool,
    ) -> None:
        super().__init__()
        if min(n_features, horizon, hidden_size, num_layers) < 1:
            raise ValueError(
                "n_features, horizon, hidden_size and num_layers must be >= 1, got "
                f"{n_features=}, {horizon=}, {hidden_size=}, {num_layers=}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_features = n_features
        self.horizon = horizon
        self.hidden_size = hidden_size
        # torch warns (and ignores) inter-layer dropout on a single-layer RNN.
        self.rnn = rnn(
            input_size=n_features,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
            bidirectional=bidirectional,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), horizon)

    def encode(self, x: Tensor) -> Tensor:
        """Per-step outputs of the last layer. Shapes: ``x [B, L, F] -> [B, L, C]``."""
        h: Tensor
        h, _ = self.rnn(x)  # [B, L, F] -> [B, L, C]
        return h

    def pool(self, z: Tensor) -> Tensor:
        """Window summary: the last step. Shapes: ``[B, L, C] -> [B, C]``."""
        return z[:, -1]  # [B, L, C] -> [B, C]

    def forward(self, x: Tensor) -> Tensor:
        """Forecast from the pooled representation. Shapes: ``x [B, L, F] -> y_hat [B, H]``."""
        y_hat: Tensor = self.head(self.drop(self.pool(self.encode(x))))  # [B, C] -> [B, H]
        return y_hat


class LSTMNet(_RecurrentNet):
    """Unidirectional LSTM with a linear head on the last step.

    Hochreiter and Schmidhuber (1997), "Long Short-Term Memory". Unidirectional, so ``encode``
    is causal per step (tested).

    Args:
        n_features: Number of input features ``F``.
        horizon: Number of forecast outputs ``H``.
        hidden_size: Hidden size ``C``.
        num_layers: Stacked LSTM layers.
        dropout: Dropout between stacked layers and before the head.

    Shapes:
        ``x [B, L, F]``; ``encode(x) [B, L, C]`` with ``C = hidden_size``; ``y_hat [B, H]``.

    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(nn.LSTM, n_features, horizon, hidden_size, num_layers, dropout, False)


class GRUNet(_RecurrentNet):
    """Unidirectional GRU with a linear head on the last step.

    Cho et al. (2014), "Learning Phrase Representations using RNN Encoder-Decoder for Statistical
    Machine Translation". Unidirectional, so ``encode`` is causal per step (tested).

    Args:
        n_features: Number of input features ``F``.
        horizon: Number of forecast outputs ``H``.
        hidden_size: Hidden size ``C``.
        num_layers: Stacked GRU layers.
        dropout: Dropout between stacked layers and before the head.

    Shapes:
        ``x [B, L, F]``; ``encode(x) [B, L, C]`` with ``C = hidden_size``; ``y_hat [B, H]``.

    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(nn.GRU, n_features, horizon, hidden_size, num_layers, dropout, False)


class BiLSTMNet(_RecurrentNet):
    """Bidirectional LSTM; the head reads both directions' final hidden states.

    Schuster and Paliwal (1997), "Bidirectional Recurrent Neural Networks"; Graves and
    Schmidhuber (2005), "Framewise phoneme classification with bidirectional LSTM". The pool is
    ``h_n`` of the last layer: the forward direction at step ``L-1`` concatenated with the
    backward direction at step ``0`` (each has then read the whole window). The last step of the
    concatenated outputs would be wrong: there the backward direction has seen one step only.

    Not causal per step, by design: ``encode(x)[:, i]`` depends on ``x[:, i:]`` through the
    backward direction, so this net is excluded from the R9 per-step perturbation probe. The
    forecast is still free of look-ahead: the window ends at ``t`` (R5), so reading it in both
    directions uses nothing after ``t``; the research report's warning on bidirectional
    models concerns windows that extend past ``t``. Do not use it for per-step targets or
    streaming per-step outputs (its step ``i`` output changes as later steps arrive).

    Args:
        n_features: Number of input features ``F``.
        horizon: Number of forecast outputs ``H``.
        hidden_size: Hidden size per direction; ``C = 2 * hidden_size``.
        num_layers: Stacked bidirectional layers.
        dropout: Dropout between stacked layers and before the head.

    Shapes:
        ``x [B, L, F]``; ``encode(x) [B, L, C]`` (``[..., :hidden_size]`` forward,
        ``[..., hidden_size:]`` backward); ``y_hat [B, H]``.

    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        hidden_size: int = 32,
        num_layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(nn.LSTM, n_features, horizon, hidden_size, num_layers, dropout, True)

    def pool(self, z: Tensor) -> Tensor:
        """Forward direction at step ``L-1``, backward at ``0``: ``[B, L, C] -> [B, C]``."""
        forward_last = z[:, -1, : self.hidden_size]  # [B, L, C] -> [B, C/2]
        backward_first = z[:, 0, self.hidden_size :]  # [B, L, C] -> [B, C/2]
        return torch.cat([forward_last, backward_first], dim=-1)  # -> [B, C]
