"""Feature scalers fitted on training rows only, JSON-serialisable for the export bundle.

``fit`` takes only the rows the caller says are training rows; ``transform`` then applies the
frozen statistics to any rows (validation, test, serving). Arrays are ``[N, F]`` for ``fit``;
``transform`` accepts any ``[..., F]`` (e.g. windows ``[B, L, F]``) and keeps NaN as NaN.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np

logger = logging.getLogger(__name__)


class NotFittedError(RuntimeError):
    """``transform`` or ``to_dict`` was called before ``fit``."""


def _check_fit_input(x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"fit expects a non-empty 2-D array [N, F], got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        col = int(np.flatnonzero(bad.any(axis=0))[0])
        row = int(np.flatnonzero(bad[:, col])[0])
        raise ValueError(
            f"fit got non-finite values in column {col} ({int(bad[:, col].sum())} values, "
            f"first at row {row}: {arr[row, col]}); drop warm-up rows before fitting"
        )
    return arr


class _Scaler:
    """``(x - center) / scale`` per column; subclasses define how the statistics are fitted."""

    kind: str = ""

    def __init__(self) -> None:
        self.center_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` (or ``from_dict``) has set the statistics."""
        return self.center_ is not None

    @property
    def n_features(self) -> int:
        """Number of columns seen by ``fit``."""
        return len(self._stats()[0])

    def _fit_stats(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self.center_ is None or self.scale_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit first")
        return self.center_, self.scale_

    def fit(self, x: np.ndarray) -> Self:
        """Fit the per-column statistics on training rows only.

        Args:
            x: ``[N, F]`` training rows, all finite.

        Returns:
            ``self``.

        Raises:
            ValueError: ``x`` is not 2-D or holds NaN/inf (the message names the column index).

        """
        arr = _check_fit_input(x)
        center, scale = self._fit_stats(arr)
        constant = (np.ptp(arr, axis=0) == 0.0) | ~(scale > 0.0)
        if constant.any():
            logger.warning(
                "%s: columns %s have zero spread on the fit rows; using scale 1",
                type(self).__name__,
                np.flatnonzero(constant).tolist(),
            )
            scale = np.where(constant, 1.0, scale)
        self.center_, self.scale_ = center, scale
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scale ``[..., F]`` with the fitted statistics; float32 input stays float32."""
        center, scale = self._stats()
        arr = np.asarray(x)
        if arr.ndim == 0 or arr.shape[-1] != len(center):
            raise ValueError(f"expected [..., {len(center)}] features, got shape {arr.shape}")
        out = (arr.astype(np.float64, copy=False) - center) / scale
        return out.astype(np.float32) if arr.dtype == np.float32 else out

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        """Undo :meth:`transform` on ``[..., F]``."""
        center, scale = self._stats()
        arr = np.asarray(x)
        if arr.ndim == 0 or arr.shape[-1] != len(center):
            raise ValueError(f"expected [..., {len(center)}] features, got shape {arr.shape}")
        out = arr.astype(np.float64, copy=False) * scale + center
        return out.astype(np.float32) if arr.dtype == np.float32 else out

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        """``fit(x)`` then ``transform(x)``; only for arrays that are entirely training rows."""
        return self.fit(x).transform(x)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: ``{"type", "center", "scale"}`` (+ subclass parameters)."""
        center, scale = self._stats()
        return {"type": self.kind, "center": center.tolist(), "scale": scale.tolist()}

    def _load(self, state: Mapping[str, Any]) -> None:
        if state.get("type") != self.kind:
            raise ValueError(f"state is for a {state.get('type')!r} scaler, not {self.kind!r}")
        center = np.asarray(state["center"], dtype=np.float64)
        scale = np.asarray(state["scale"], dtype=np.float64)
        if center.ndim != 1 or center.shape != scale.shape or not (scale > 0).all():
            raise ValueError("scaler state needs 1-D center and positive scale of equal length")
        self.center_, self.scale_ = center, scale


class StandardScaler(_Scaler):
    """Subtract the mean and divide by the population std (ddof=0) of the training rows."""

    kind = "standard"

    def __init__(self) -> None:
        super().__init__()

    def _fit_stats(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x.mean(axis=0), x.std(axis=0)

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> StandardScaler:
        """Rebuild a fitted scaler from :meth:`to_dict` output."""
        scaler = cls()
        scaler._load(state)
        return scaler


class RobustScaler(_Scaler):
    """Subtract the median and divide by the inter-quantile range of the training rows.

    Args:
        quantile_range: lower and upper percentiles, default ``(25, 75)`` (the IQR).

    """

    kind = "robust"

    def __init__(self, quantile_range: Sequence[float] = (25.0, 75.0)) -> None:
        super().__init__()
        low, high = (float(q) for q in quantile_range)
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(
                f"quantile_range must satisfy 0 <= low < high <= 100, got {low, high}"
            )
        self.quantile_range = (low, high)

    def _fit_stats(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q_low, median, q_high = np.percentile(
            x, [self.quantile_range[0], 50.0, self.quantile_range[1]], axis=0
        )
        return median, q_high - q_low

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state, including ``quantile_range``."""
        return {**super().to_dict(), "quantile_range": list(self.quantile_range)}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> RobustScaler:
        """Rebuild a fitted scaler from :meth:`to_dict` output."""
        scaler = cls(quantile_range=state.get("quantile_range", (25.0, 75.0)))
        scaler._load(state)
        return scaler


Scaler = StandardScaler | RobustScaler


def scaler_from_dict(state: Mapping[str, Any]) -> Scaler:
    """Rebuild whichever scaler ``state`` (from ``to_dict``) describes."""
    kinds: dict[str, type[StandardScaler] | type[RobustScaler]] = {
        StandardScaler.kind: StandardScaler,
        RobustScaler.kind: RobustScaler,
    }
    kind = state.get("type")
    if kind not in kinds:
        raise ValueError(f"unknown scaler type {kind!r}; known: {sorted(kinds)}")
    return kinds[kind].from_dict(state)
