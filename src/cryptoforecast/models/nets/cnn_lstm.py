"""CNN-LSTM: a causal Conv1d front end feeding a unidirectional LSTM."""

from __future__ import annotations

from torch import Tensor, nn

from cryptoforecast.models.nets.tcn import CausalConv1d


class CNNLSTM(nn.Module):
    """Causal convolutional feature extractor, unidirectional LSTM, linear head on the last step.

    The convolution-then-LSTM pattern for price series follows Livieris, Pintelas and Pintelas
    (2020, "A CNN-LSTM model for gold price time-series forecasting"). Here the convolutions
    are causal (left padding, ``CausalConv1d``) and the LSTM unidirectional, so ``encode`` is
    causal per step (tested) and ``encode(x[:, :s]) == encode(x)[:, :s]``.

    Layout: ``conv_layers x [CausalConv1d -> ReLU -> Dropout] -> LSTM -> Dropout -> Linear``.

    Args:
        n_features: Number of input features ``F``.
        horizon: Number of forecast outputs ``H``.
        conv_channels: Channels of every convolution.
        kernel_size: Taps per convolution (dilation 1).
        conv_layers: Number of stacked causal convolutions.
        hidden_size: LSTM hidden size ``C``.
        num_layers: Stacked LSTM layers.
        dropout: Dropout after each convolution, between LSTM layers and before the head.

    Shapes:
        - Input ``x``: ``[B, L, F]`` (batch-first).
        - ``encode(x)``: ``[B, L, C]`` with ``C = hidden_size``.
        - Output ``y_hat``: ``[B, H]``.

    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        conv_channels: int = 32,
        kernel_size: int = 3,
        conv_layers: int = 2,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        sizes = (n_features, horizon, conv_channels, kernel_size, conv_layers, hidden_size)
        if min(sizes) < 1 or num_layers < 1:
            raise ValueError(
                "n_features, horizon, conv_channels, kernel_size, conv_layers, hidden_size and "
                f"num_layers must be >= 1, got {sizes=}, {num_layers=}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_features = n_features
        self.horizon = horizon
        self.hidden_size = hidden_size
        layers: list[nn.Module] = []
        for i in range(conv_layers):
            c_in = n_features if i == 0 else conv_channels
            layers += [
                CausalConv1d(c_in, conv_channels, kernel_size),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
        self.conv = nn.Sequential(*layers)
        # torch warns (and ignores) inter-layer dropout on a single-layer LSTM.
        self.lstm = nn.LSTM(
            input_size=conv_channels,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, horizon)

    def encode(self, x: Tensor) -> Tensor:
        """Per-step causal features. Shapes: ``x [B, L, F] -> [B, L, C]``."""
        c = self.conv(x.transpose(1, 2))  # [B, L, F] -> [B, F, L] -> [B, K, L], K = conv_channels
        h: Tensor
        h, _ = self.lstm(c.transpose(1, 2))  # [B, K, L] -> [B, L, K] -> [B, L, C]
        return h

    def forward(self, x: Tensor) -> Tensor:
        """Forecast from the last step. Shapes: ``x [B, L, F] -> y_hat [B, H]``."""
        y_hat: Tensor = self.head(
            self.drop(self.encode(x)[:, -1])
        )  # [B, L, C] -> [B, C] -> [B, H]
        return y_hat
