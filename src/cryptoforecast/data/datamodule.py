"""From candles to Lightning loaders: features, targets, windows, a fold, a train-only scaler."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from cryptoforecast.data.dataset import EpochShuffleSampler, WindowDataset
from cryptoforecast.data.loader import Candles
from cryptoforecast.data.schema import DataError, interval_to_timedelta
from cryptoforecast.data.splits import Fold
from cryptoforecast.data.targets import TargetSpec, make_targets
from cryptoforecast.data.windows import WindowIndex, build_window_index
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.features.scalers import RobustScaler, StandardScaler

log = logging.getLogger(__name__)

SCALERS = {"standard": StandardScaler, "robust": RobustScaler}


SYMBOL_COLUMN = "symbol_{}"  # one-hot column of a symbol in a multi-symbol SampleSet


@dataclass(frozen=True)
class SymbolRows:
    """The rows ``[start, stop)`` of one symbol in a (possibly stacked) SampleSet."""

    symbol: str
    start: int
    stop: int


@dataclass
class SampleSet:
    """Everything computed once for the whole loaded history, before any split.

    A multi-symbol set (:func:`stack_samples`) stacks each symbol's rows one block after the
    other (``blocks``), so ``index`` is sorted within a block only, and orders its windows by
    time (then by symbol), so positions into ``windows`` run forward in time as for one symbol.

    Attributes:
        index: bar open times ``[N]`` (gaps kept).
        features: unscaled features ``[N, F]`` (NaN inside warm-ups).
        feature_names: column names of ``features``.
        targets: labels ``[N, H]`` from :func:`make_targets`.
        base_close: the execution-bar close each label's return starts from ``[N]``.
        close: closes ``[N]``.
        windows: valid sample ends.
        target: the target spec.
        symbol: e.g. BTCUSDT (multi-symbol: the symbols joined by ``+``, a label only).
        step: bar length.
        blocks: each symbol's row range (multi-symbol sets); empty for one symbol.
    """

    index: pd.DatetimeIndex
    features: np.ndarray
    feature_names: list[str]
    targets: np.ndarray
    base_close: np.ndarray
    close: np.ndarray
    windows: WindowIndex
    target: TargetSpec
    symbol: str
    step: pd.Timedelta
    blocks: tuple[SymbolRows, ...] = ()

    @property
    def n_features(self) -> int:
        """Number of feature columns ``F``."""
        return self.features.shape[1]

    @property
    def symbol_rows(self) -> tuple[SymbolRows, ...]:
        """Each symbol's row range; one range over all rows for a single-symbol set."""
        return self.blocks or (SymbolRows(self.symbol, 0, len(self.index)),)

    @property
    def symbols(self) -> list[str]:
        """The symbols, in block order."""
        return [b.symbol for b in self.symbol_rows]

    def sample_symbols(self, positions: np.ndarray | None = None) -> np.ndarray:
        """Symbol of each sample at ``positions`` (all samples when None), ``[S]`` strings."""
        ends = self.windows.ends if positions is None else self.windows.ends[positions]
        blocks = self.symbol_rows
        starts = np.array([b.start for b in blocks], dtype=np.int64)
        names = np.array([b.symbol for b in blocks], dtype=object)
        return names[np.searchsorted(starts, ends, side="right") - 1]


def build_samples(candles: Candles, feature_set: FeatureSet, target: TargetSpec) -> SampleSet:
    """Compute features (causal), targets (the only look-ahead) and valid windows."""
    frame = candles.frame
    feats = feature_set.compute(frame)
    y, base = make_targets(frame["close"], target)
    step = interval_to_timedelta(candles.spec.interval)
    features = feats.to_numpy(dtype="float64")
    windows = build_window_index(
        frame.index, step, features, y, feature_set.lookback, candles.sample_start
    )
    if len(windows) == 0:
        in_span = int((frame.index >= candles.sample_start).sum())
        raise DataError(
            f"no valid samples: {in_span} bars in the requested span from {candles.sample_start}, "
            f"but each sample needs {feature_set.lookback} consecutive input bars after a "
            f"{feature_set.warmup}-bar feature warm-up and {target.reach} bars of label "
            f"(execution_lag {target.execution_lag} + horizon {max(target.horizons)}); "
            "use more data.days or a shorter horizon/lookback"
        )
    log.info(
        "%d features, %d valid windows of %d bars (warm-up %d bars)",
        features.shape[1],
        len(windows),
        feature_set.lookback,
        feature_set.warmup,
    )
    return SampleSet(
        index=frame.index,
        features=features,
        feature_names=list(feats.columns),
        targets=y,
        base_close=base,
        close=frame["close"].to_numpy(dtype="float64"),
        windows=windows,
        target=target,
        symbol=candles.spec.symbol,
        step=step,
    )


def stack_samples(parts: Sequence[SampleSet]) -> SampleSet:
    """One multi-symbol SampleSet from per-symbol ones (built each by :func:`build_samples`).

    Features, targets and windows were computed per symbol, so nothing mixes symbols; the rows
    are stacked block after block, each window end shifted by its block's offset (a window
    never reaches into another block), and the windows sorted by time, then symbol order.
    One-hot columns ``symbol_<SYMBOL>`` (1.0 on that symbol's rows) are appended to the
    features; the feature scaler treats them like any column (fitted on training rows, where
    every symbol occurs, so no column is constant).

    Raises:
        DataError: fewer than two parts, repeated symbols, or parts that disagree on features,
            target, lookback or bar length.
    """
    if len(parts) < 2:
        raise DataError(f"stack_samples needs at least 2 symbols, got {len(parts)}")
    first = parts[0]
    symbols = [p.symbol for p in parts]
    if len(set(symbols)) != len(symbols):
        raise DataError(f"stack_samples got repeated symbols {symbols}")
    for p in parts[1:]:
        same = (
            p.feature_names == first.feature_names
            and p.target == first.target
            and p.windows.lookback == first.windows.lookback
            and p.step == first.step
        )
        if not same:
            raise DataError(
                f"{p.symbol} and {first.symbol} disagree on features, target, lookback or bar "
                "length; every symbol must be built with the same feature set and target"
            )
    onehot = [SYMBOL_COLUMN.format(sym) for sym in symbols]
    clash = sorted(set(onehot) & set(first.feature_names))
    if clash:
        raise DataError(f"feature names {clash} clash with the symbol one-hot columns")
    sizes = [len(p.index) for p in parts]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    eye = np.repeat(np.eye(len(parts)), sizes, axis=0)  # [N, n_symbols]
    ends = np.concatenate([p.windows.ends + offsets[k] for k, p in enumerate(parts)])
    stamps = pd.DatetimeIndex(
        np.concatenate([p.windows.timestamps.as_unit("ns").asi8 for p in parts])
    ).tz_localize("UTC")
    block = np.repeat(np.arange(len(parts)), [len(p.windows) for p in parts])
    order = np.lexsort((block, stamps.asi8))  # by time, then symbol order
    return SampleSet(
        index=pd.DatetimeIndex(
            np.concatenate([p.index.as_unit("ns").asi8 for p in parts])
        ).tz_localize("UTC"),
        features=np.hstack([np.vstack([p.features for p in parts]), eye]),
        feature_names=[*first.feature_names, *onehot],
        targets=np.vstack([p.targets for p in parts]),
        base_close=np.concatenate([p.base_close for p in parts]),
        close=np.concatenate([p.close for p in parts]),
        windows=WindowIndex(ends[order], stamps[order], first.windows.lookback),
        target=first.target,
        symbol="+".join(symbols),
        step=first.step,
        blocks=tuple(
            SymbolRows(sym, int(offsets[k]), int(offsets[k + 1])) for k, sym in enumerate(symbols)
        ),
    )


def train_rows(samples: SampleSet, positions: np.ndarray) -> np.ndarray:
    """Row numbers the training windows read: ``[t0 - L + 1, t_last]`` over the train samples.

    Multi-symbol sets: that range per symbol (within its own rows), concatenated in block order.
    """
    ends = samples.windows.ends[positions]
    lb = samples.windows.lookback
    if not samples.blocks:
        first = int(ends[0]) - lb + 1
        return np.arange(first, int(ends[-1]) + 1)
    ranges = []
    for b in samples.blocks:
        mine = ends[(ends >= b.start) & (ends < b.stop)]
        if len(mine):
            ranges.append(np.arange(int(mine.min()) - lb + 1, int(mine.max()) + 1))
    return np.concatenate(ranges)


class ForecastDataModule(L.LightningDataModule):
    """Loaders for one fold. The scaler sees only the rows the training windows read.

    Args:
        samples: the precomputed :class:`SampleSet`.
        fold: which samples are train/val/test.
        scaler: ``standard`` or ``robust``.
        batch_size: samples per batch.
        num_workers: loader workers (0 is fastest for these small in-memory tensors).
        shuffle_train: shuffle training windows (order within train only; splits stay by time).
        seed: seed of the per-epoch shuffle (see :class:`EpochShuffleSampler`).
    """

    def __init__(
        self,
        samples: SampleSet,
        fold: Fold,
        scaler: str = "standard",
        batch_size: int = 256,
        num_workers: int = 0,
        shuffle_train: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if scaler not in SCALERS:
            raise ValueError(f"scaler={scaler!r}; choose one of {', '.join(SCALERS)}")
        self.samples, self.fold = samples, fold
        self.scaler = SCALERS[scaler]()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.shuffle_train, self.seed = shuffle_train, seed
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        """Fit the scaler on the training rows, scale everything, build the datasets."""
        if self._ready:
            return
        s = self.samples
        rows = train_rows(s, self.fold.train)
        self.scaler.fit(s.features[rows])
        scaled = self.scaler.transform(s.features)
        # Return targets are divided by their training RMS (no centring: 0 still means flat), so
        # the loss is O(1) whatever the interval; predictions are multiplied back before any
        # metric. Direction labels stay 0/1.
        self.target_scale = np.ones(s.targets.shape[1])
        if s.target.kind == "return":
            train_y = s.targets[s.windows.ends[self.fold.train]]
            self.target_scale = np.sqrt(np.mean(train_y**2, axis=0))
            self.target_scale[~(self.target_scale > 0)] = 1.0
        x = torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(s.targets / self.target_scale, dtype=np.float32))
        lb = s.windows.lookback
        self.x, self.y = x, y  # scaled [N, F] features and [N, H] targets, all rows
        self.datasets = {
            name: WindowDataset(x, y, s.windows.ends[getattr(self.fold, name)], lb)
            for name in ("train", "val", "test")
        }
        self._ready = True

    def unscale_predictions(self, y_pred: np.ndarray) -> np.ndarray:
        """Model outputs ``[S, H]`` back in target units (log returns); probabilities unchanged."""
        return y_pred * self.target_scale

    def state(self) -> dict[str, object]:
        """Fitted feature scaler and target scale as JSON (for the run folder and export)."""
        return {
            "features": self.scaler.to_dict(),
            "feature_names": self.samples.feature_names,
            "target_scale": self.target_scale.tolist(),
        }

    def _loader(self, name: str, shuffle: bool) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        data = self.datasets[name]
        return DataLoader(
            data,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(len(data), self.seed) if shuffle else None,
            # A private generator: creating an iterator then draws its base seed from here, not
            # from the global RNG that dropout uses (keeps resumed runs identical).
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def windows_loader(
        self, positions: np.ndarray
    ) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        """Scaled windows of the samples at ``positions``, in order (attention, importances)."""
        ends = self.samples.windows.ends[np.asarray(positions)]
        data = WindowDataset(self.x, self.y, ends, self.samples.windows.lookback)
        return DataLoader(data, batch_size=self.batch_size, shuffle=False)

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        """Training windows (shuffled within the training segment)."""
        return self._loader("train", self.shuffle_train)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        """Validation windows in time order."""
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        """Test windows in time order."""
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        """Test windows in time order (what the PredictionFrame is built from)."""
        return self._loader("test", False)
