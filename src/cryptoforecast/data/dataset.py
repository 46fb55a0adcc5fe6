"""Window datasets over preallocated tensors (no pandas per sample)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler


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


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch drawn from ``(seed, epoch)`` alone.

    Unlike a plain shuffling DataLoader it does not consume the global RNG, so a run resumed
    from a checkpoint sees exactly the batches an uninterrupted run would (Lightning calls
    ``set_epoch`` before each epoch).
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of this epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):  # type: ignore[no-untyped-def]
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())
