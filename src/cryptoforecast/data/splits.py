"""Time splits of the samples with a purge gap: holdout and walk-forward.

Samples are assigned by the timestamp of their last input bar ``t``. Between consecutive segments
the last ``purge`` samples (in bars) of the earlier segment are dropped, where
``purge >= execution_lag + max(horizon)``, so no label of an earlier segment reaches a bar of the
next one. Nothing is shuffled. Each fold's scaler is fitted on its training rows only (see
:mod:`cryptoforecast.data.datamodule`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoforecast.data.schema import DataError


@dataclass(frozen=True)
class Fold:
    """Sample positions (into ``WindowIndex.ends``) of one train/val/test split."""

    number: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_from: str | None = None  # the boundary the test segment starts at (split.test_start)

    def describe(self, timestamps: pd.DatetimeIndex) -> dict[str, object]:
        """Sizes and time spans of each segment, for logs and metrics."""
        out: dict[str, object] = {"fold": self.number}
        if self.test_from is not None:
            out["test_from"] = self.test_from
        for name in ("train", "val", "test"):
            part = getattr(self, name)
            out[f"n_{name}"] = len(part)
            if len(part):
                out[f"{name}_start"] = str(timestamps[part[0]])
                out[f"{name}_end"] = str(timestamps[part[-1]])
        return out


def _purged(
    positions: np.ndarray, times: np.ndarray, next_start: int | None, reach: int
) -> np.ndarray:
    """Drop samples whose label window (t + reach bars) reaches ``next_start`` or later."""
    if next_start is None or len(positions) == 0:
        return positions
    return positions[times[positions] + reach < next_start]


def _cut(times: np.ndarray, bounds: list[int], reach: int) -> tuple[np.ndarray, ...]:
    """Split positions at ``bounds`` = [b0, b1, b2, b3] (int ns) into train/val/test, purged.

    ``times`` are sample end times and ``reach`` the label reach, both in int64 nanoseconds.
    """
    segs = []
    for k in range(3):
        lo, hi = bounds[k], bounds[k + 1]
        pos = np.flatnonzero((times >= lo) & (times < hi))
        segs.append(_purged(pos, times, hi if k < 2 else None, reach))
    return tuple(segs)


@dataclass(frozen=True)
class HoldoutSplit:
    """One train/val/test split by time, by fractions of the sample span or by dates.

    Args:
        val_fraction: share of the sample span for validation (after train).
        test_fraction: share for test (the most recent data).
        val_start: ISO date; overrides the fractions together with ``test_start``.
        test_start: ISO date.
        purge_bars: extra bars dropped between segments on top of ``execution_lag + horizon``.
    """

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    val_start: str | None = None
    test_start: str | None = None
    purge_bars: int = 0

    def folds(self, timestamps: pd.DatetimeIndex, step: pd.Timedelta, reach: int) -> list[Fold]:
        """The single fold. ``reach`` is ``execution_lag + max(horizon)`` in bars."""
        if len(timestamps) == 0:
            raise DataError("no samples to split (is the span shorter than the warm-up?)")
        times = timestamps.as_unit("ns").asi8
        if self.val_start or self.test_start:
            if not (self.val_start and self.test_start):
                raise DataError("split.val_start and split.test_start must be given together")
            b1 = pd.Timestamp(self.val_start, tz="UTC").as_unit("ns").value
            b2 = pd.Timestamp(self.test_start, tz="UTC").as_unit("ns").value
        else:
            if not (
                0 < self.val_fraction
                and 0 < self.test_fraction
                and self.val_fraction + self.test_fraction < 1
            ):
                raise DataError(
                    f"split fractions val={self.val_fraction} test={self.test_fraction} must be "
                    "positive and sum to less than 1"
                )
            span = int(times[-1] - times[0])
            b2 = int(times[-1] - span * self.test_fraction)
            b1 = int(b2 - span * self.val_fraction)
        reach_ns = (reach + self.purge_bars) * step.value
        train, val, test = _cut(times, [int(times[0]), b1, b2, int(times[-1]) + 1], reach_ns)
        fold = Fold(0, train, val, test)
        _check_sizes(fold, timestamps)
        return [fold]


@dataclass(frozen=True)
class WalkForwardSplit:
    """Walk-forward folds: train, val and test move forward in time together.

    The last fold's test segment ends at the last sample; earlier folds step back by
    ``step_bars`` (default: ``test_bars``, so test segments tile without overlap). With
    ``test_start`` (a date) the folds instead start there: fold ``k`` tests from
    ``test_start + k * step_bars`` bars for ``test_bars`` bars, as many folds as reach the last
    sample (the last one may be shorter; ``n_folds`` is then not used). Either way every training
    and validation label ends before the segment after it starts (the purge), and ``splits.json``
    records each fold's boundary as ``test_from``.

    Args:
        n_folds: number of folds.
        val_bars: validation length in bars.
        test_bars: test length in bars.
        step_bars: shift between folds (None: ``test_bars``).
        mode: ``expanding`` (train from the first sample) or ``rolling`` (``train_bars`` long).
        train_bars: training length for ``rolling``; minimum training length for ``expanding``.
        purge_bars: extra bars dropped between segments on top of ``execution_lag + horizon``.
        test_start: ISO date (UTC) where the first test segment starts; None = tile back from
            the end in ``n_folds`` folds.
    """

    n_folds: int = 4
    val_bars: int = 720
    test_bars: int = 720
    step_bars: int | None = None
    mode: str = "expanding"
    train_bars: int = 2000
    purge_bars: int = 0
    test_start: str | None = None

    def folds(self, timestamps: pd.DatetimeIndex, step: pd.Timedelta, reach: int) -> list[Fold]:
        """All folds, oldest first."""
        if self.mode not in ("expanding", "rolling"):
            raise DataError(f"split.mode={self.mode!r}; choose expanding or rolling")
        if len(timestamps) == 0:
            raise DataError("no samples to split (is the span shorter than the warm-up?)")
        times = timestamps.as_unit("ns").asi8
        bar = step.value
        shift = self.step_bars or self.test_bars
        end = int(times[-1]) + bar
        reach_ns = (reach + self.purge_bars) * bar
        starts = self._test_starts(times, bar, shift, end)
        folds = []
        for k, test_start in enumerate(starts):
            test_end = min(test_start + self.test_bars * bar, end)
            val_start = test_start - self.val_bars * bar
            if self.mode == "expanding":
                train_start = int(times[0])
            else:
                train_start = val_start - self.train_bars * bar
            train, val, test = _cut(
                times, [train_start, val_start, test_start, test_end], reach_ns
            )
            test_from = None
            if self.test_start is not None:
                test_from = str(pd.Timestamp(test_start, unit="ns", tz="UTC"))
            fold = Fold(k, train, val, test, test_from)
            _check_sizes(
                fold,
                timestamps,
                min_train=self.train_bars // 2,
                hint=self._hint(times, step, reach),
            )
            folds.append(fold)
        return folds

    def _test_starts(self, times: np.ndarray, bar: int, shift: int, end: int) -> list[int]:
        """Start (int ns) of each fold's test segment: back from the end, or from test_start."""
        if self.test_start is None:
            last = end - self.test_bars * bar
            return [last - (self.n_folds - 1 - k) * shift * bar for k in range(self.n_folds)]
        try:
            first = pd.Timestamp(self.test_start)
        except ValueError as exc:
            raise DataError(f"split.test_start={self.test_start!r} is not a date") from exc
        first = first.tz_localize("UTC") if first.tz is None else first.tz_convert("UTC")
        start = int(first.as_unit("ns").value)
        if not int(times[0]) < start <= int(times[-1]):
            lo, hi = (pd.Timestamp(int(t), tz="UTC") for t in (times[0], times[-1]))
            raise DataError(
                f"split.test_start={self.test_start} lies outside the samples {lo} -> {hi}"
            )
        return list(range(start, end, shift * bar))

    def bars_needed(self, reach: int) -> int:
        """Sample bars these folds need.

        Every test segment, one val segment, half of ``train_bars`` for the first fold's
        training, and the purges between segments.
        """
        shift = self.step_bars or self.test_bars
        purge = reach + self.purge_bars
        return (
            (self.n_folds - 1) * shift + self.test_bars + self.val_bars + self.train_bars // 2
        ) + 2 * purge

    def _hint(self, times: np.ndarray, step: pd.Timedelta, reach: int) -> str:
        """How many days the requested folds need, and how many folds the data allows."""
        need = self.bars_needed(reach)
        have = int((times[-1] - times[0]) // step.value) + 1
        day = pd.Timedelta(days=1).value / step.value
        fit = self.n_folds - max(0, -(-(need - have) // (self.step_bars or self.test_bars)))
        folds = f"split.n_folds={fit}" if fit >= 1 else "fewer folds"
        return (
            f"split=walk_forward with n_folds={self.n_folds}, val_bars={self.val_bars}, "
            f"test_bars={self.test_bars} and train_bars={self.train_bars} (the first fold trains "
            f"on >= {self.train_bars // 2}) needs about {need} sample bars = "
            f"{need / day:.1f} days, but the samples span {have} bars = {have / day:.1f} days: "
            f"use data.days={int(np.ceil(need / day)) + 1} or more, or {folds}, or shorter "
            "segments (split.val_bars, split.test_bars, split.train_bars)"
        )


def split_on_time_grid(
    split: HoldoutSplit | WalkForwardSplit,
    timestamps: pd.DatetimeIndex,
    step: pd.Timedelta,
    reach: int,
) -> list[Fold]:
    """Folds for samples of several symbols sharing one clock (sample times may repeat).

    ``split`` runs on the common time grid (the distinct sample times, so its sizes count bars,
    not symbols), then each sample joins the segment its time was assigned to. Every symbol is
    thus cut at the same time boundaries with the same purge: no symbol's label reaches into
    a later segment of any symbol. ``timestamps`` must be sorted (positions then run forward).
    """
    times = timestamps.as_unit("ns").asi8
    if len(times) and (np.diff(times) < 0).any():
        raise DataError("split_on_time_grid needs the sample timestamps sorted by time")
    grid, slot = np.unique(times, return_inverse=True)
    grid_folds = split.folds(pd.DatetimeIndex(grid).tz_localize("UTC"), step, reach)
    folds = []
    for f in grid_folds:
        train, val, test = (np.flatnonzero(np.isin(slot, seg)) for seg in (f.train, f.val, f.test))
        folds.append(Fold(f.number, train, val, test, f.test_from))
    return folds


def _check_sizes(
    fold: Fold, timestamps: pd.DatetimeIndex, min_train: int = 1, hint: str | None = None
) -> None:
    """Refuse a fold with an empty segment, naming the numbers (and ``hint``: the fix)."""
    sizes = {"train": len(fold.train), "val": len(fold.val), "test": len(fold.test)}
    if sizes["train"] < min_train or not sizes["val"] or not sizes["test"]:
        raise DataError(
            f"fold {fold.number} has too few samples {sizes} (need train >= {min_train}, val and "
            f"test >= 1) from {len(timestamps)} samples spanning {timestamps[0]} -> "
            f"{timestamps[-1]}; " + (hint or "use more data.days, fewer folds or shorter segments")
        )
