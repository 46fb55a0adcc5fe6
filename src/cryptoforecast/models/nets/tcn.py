"""Temporal Convolutional Network: stacked causal dilated residual blocks (Bai et al., 2018)."""

from __future__ import annotations

import logging

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

log = logging.getLogger(__name__)

DEFAULT_BLOCKS = 5  # with kernel_size=3: receptive field 1 + 2 * 2 * (2**5 - 1) = 125 bars


class CausalConv1d(nn.Module):
    """Dilated ``Conv1d`` that only sees the past: left ``F.pad``, no chomp.

    Padding ``(kernel_size - 1) * dilation`` zeros on the left keeps the length and makes output
    step ``t`` depend on inputs ``<= t`` only. Unlike ``Conv1d(padding=p)`` + ``Chomp1d(p)``
    (locuslab), ``p = 0`` (``kernel_size=1``) needs no special case.

    Args:
        c_in: Input channels.
        c_out: Output channels.
        kernel_size: Taps per filter.
        dilation: Spacing between taps.
        weight_norm: Reparametrise the weight with ``parametrizations.weight_norm``.

    Shapes:
        ``x [B, C_in, L] -> [B, C_out, L]`` (channels-first, as ``Conv1d``).

    """

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, dilation: int = 1, weight_norm: bool = False
    ) -> None:
        super().__init__()
        if kernel_size < 1 or dilation < 1:
            raise ValueError(
                f"kernel_size and dilation must be >= 1, got {kernel_size}, {dilation}"
            )
        self.left_pad = (kernel_size - 1) * dilation
        conv = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation)
        self.conv = _weight_norm(conv) if weight_norm else conv

    def forward(self, x: Tensor) -> Tensor:
        """Causal convolution. Shapes: ``x [B, C_in, L] -> [B, C_out, L]``."""
        out: Tensor = self.conv(F.pad(x, (self.left_pad, 0)))  # [B, C, L + pad] -> [B, C_out, L]
        return out


class TemporalBlock(nn.Module):
    """Residual block of two causal dilated convolutions (Bai et al., 2018, Fig. 1b).

    ``out = ReLU(x' + drop(ReLU(conv2(drop(ReLU(conv1(x)))))))`` where ``x'`` is ``x`` or a 1x1
    convolution of it when the channel count changes.

    Args:
        c_in: Input channels.
        c_out: Output channels.
        kernel_size: Taps per filter.
        dilation: Dilation of both convolutions.
        dropout: Dropout after each convolution's ReLU.
        weight_norm: Weight-normalise both dilated convolutions.

    Shapes:
        ``x [B, C_in, L] -> [B, C_out, L]``; the block adds ``2 * (kernel_size - 1) * dilation``
        steps of history.

    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        dilation: int,
        dropout: float,
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            CausalConv1d(c_in, c_out, kernel_size, dilation, weight_norm),
            nn.ReLU(),
            nn.Dropout(dropout),
            CausalConv1d(c_out, c_out, kernel_size, dilation, weight_norm),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.residual: nn.Module = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """Residual causal block. Shapes: ``x [B, C_in, L] -> [B, C_out, L]``."""
        out: Tensor = self.relu(self.convs(x) + self.residual(x))
        return out


def temporal_blocks(
    n_features: int, channels: list[int], kernel_size: int, dropout: float, weight_norm: bool
) -> nn.Sequential:
    """Stack ``TemporalBlock``s with dilations ``1, 2, 4, ...`` (shared with ``TCNAttention``).

    Shapes:
        ``[B, F, L] -> [B, channels[-1], L]`` (channels-first).
    """
    if n_features < 1 or kernel_size < 1 or not channels or min(channels) < 1:
        raise ValueError(
            "n_features, kernel_size and every channel count must be >= 1 and channels non-empty,"
            f" got {n_features=}, {kernel_size=}, {channels=}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    c_ins = [n_features, *channels[:-1]]
    return nn.Sequential(
        *(
            TemporalBlock(c_in, c_out, kernel_size, d, dropout, weight_norm)
            for c_in, c_out, d in zip(c_ins, channels, dilations(len(channels)), strict=True)
        )
    )


def dilations(n_blocks: int) -> list[int]:
    """Dilation of each block: ``1, 2, 4, ...``."""
    return [1 << i for i in range(n_blocks)]


def receptive_field(kernel_size: int, n_blocks: int) -> int:
    """Input steps that can reach one output step: ``1 + 2 * (k - 1) * sum(dilations)``.

    Two convolutions per block, each adding ``(k - 1) * dilation`` steps of history.
    """
    return 1 + 2 * (kernel_size - 1) * sum(dilations(n_blocks))


class TCN(nn.Module):
    """Temporal Convolutional Network with a linear head on the last step.

    Bai, Kolter and Koltun (2018), "An Empirical Evaluation of Generic Convolutional and
    Recurrent Networks for Sequence Modeling": residual blocks of causal dilated convolutions,
    dilation doubling per block. Causal left padding (no chomp) makes every per-step output
    depend only on the past (tested); outputs see at most ``receptive_field`` steps.

    Args:
        n_features: Number of input features ``F``.
        horizon: Number of forecast outputs ``H``.
        channels: Output channels per block; ``None`` means ``[32] * 5``.
        kernel_size: Taps per convolution.
        dropout: Dropout after every convolution.
        weight_norm: Weight-normalise the dilated convolutions (as in the paper).

    Shapes:
        - Input ``x``: ``[B, L, F]`` (batch-first).
        - ``encode(x)``: ``[B, L, C]`` with ``C = channels[-1]``.
        - Output ``y_hat``: ``[B, H]``.

    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        channels: list[int] | None = None,
        kernel_size: int = 3,
        dropout: float = 0.1,
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        channels = list(channels) if channels is not None else [32] * DEFAULT_BLOCKS
        self.n_features = n_features
        self.horizon = horizon
        self.kernel_size = kernel_size
        self.blocks = temporal_blocks(n_features, channels, kernel_size, dropout, weight_norm)
        self.head = nn.Linear(channels[-1], horizon)
        log.info(
            "TCN receptive field: %d bars (kernel_size=%d, %d blocks)",
            self.receptive_field,
            kernel_size,
            len(channels),
        )

    @property
    def receptive_field(self) -> int:
        """Steps of history one output sees: ``1 + 2 * (kernel_size - 1) * sum(dilations)``."""
        return receptive_field(self.kernel_size, len(self.blocks))

    def encode(self, x: Tensor) -> Tensor:
        """Per-step causal features. Shapes: ``x [B, L, F] -> [B, L, C]``."""
        h: Tensor = self.blocks(x.transpose(1, 2))  # [B, L, F] -> [B, F, L] -> [B, C, L]
        return h.transpose(1, 2)  # [B, C, L] -> [B, L, C]

    def forward(self, x: Tensor) -> Tensor:
        """Forecast from the last step. Shapes: ``x [B, L, F] -> y_hat [B, H]``."""
        y_hat: Tensor = self.head(self.encode(x)[:, -1])  # [B, L, C] -> [B, C] -> [B, H]
        return y_hat
