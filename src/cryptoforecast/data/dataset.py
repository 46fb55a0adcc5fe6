"""Window datasets over preallocated tensors (no pandas per sample)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


class WindowDataset(Dataset[tuple[Tensor, Tensor]]):
    """Samples ``(x [L, F], y [H])`` cut from one feature tensor by window end positions.

    Args:
        features: scaled feature matrix ``[N, F]`` for the whole history (float32).
        targets: label matrix ``[N, H]``.
        ends: row numbers ``t`` of the window ends to serve, in order.
        lookback: window length ``L``; sample ``i`` uses rows ``[t-L+1, t]``.
    """

    def __init__(self, features: Tensor, targets: Tensor, ends: np.ndarray, lookback: int) -> None:
        if len(ends) and (ends.min() < lookback - 1 or ends.max() >= len(features)):
            raise IndexError("window ends fall outside the feature matrix")
        self.features, self.targets, self.lookback = features, targets, lookback
        self.ends = torch.as_tensor(ends, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        t = int(self.ends[i])
        return self.features[t - self.lookback + 1 : t + 1], self.targets[t]  # [L, F], [H]
