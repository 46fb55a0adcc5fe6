"""``FeatureSet``: an ordered list of causal transforms plus the model lookback.

Built from ``conf/features/*.yaml`` with Hydra ``_target_``; ``compute`` turns a candle frame into
the feature frame, ``to_spec`` describes it for the export bundle and ``from_spec`` rebuilds it
for serving. Scaling is not done here: scalers (``features/scalers.py``) are fitted by the caller
on training rows only.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cryptoforecast.features.transforms import Transform

logger = logging.getLogger(__name__)

SPEC_VERSION = 1
# from_spec imports transform classes named in a JSON file; only our own package is trusted.
_TRUSTED_PREFIX = "cryptoforecast."


class FeatureSet:
    """Ordered causal transforms whose outputs are concatenated column-wise.

    Args:
        transforms: the transforms, in output order; their column names must be unique. Either a
            sequence or a mapping ``name -> transform`` (the config form: a mapping lets an
            override add ``+features.transforms.fear_greed={...}`` or switch one off with
            ``features.transforms.wavelet=null``; ``None`` entries are skipped).
        lookback: ``L``, input bars per model sample (used by the window builder).

    Raises:
        TypeError: an element is not a :class:`~cryptoforecast.features.transforms.Transform`.
        ValueError: duplicate column names across transforms, no transforms, or ``lookback < 1``.

    """

    def __init__(
        self,
        transforms: Sequence[Transform] | Mapping[str, Transform | None],
        lookback: int,
    ) -> None:
        if isinstance(transforms, Mapping):
            labels = [str(k) for k, t in transforms.items() if t is not None]
            transforms = [t for t in transforms.values() if t is not None]
        else:
            labels = [f"#{i}" for i in range(len(transforms))]
        self._transforms: tuple[Transform, ...] = tuple(transforms)
        self._lookback = int(lookback)
        if not self._transforms:
            raise ValueError("FeatureSet needs at least one transform")
        if self._lookback < 1:
            raise ValueError(f"lookback must be >= 1, got {lookback}")
        for label, t in zip(labels, self._transforms, strict=True):
            if not isinstance(t, Transform):
                raise TypeError(
                    f"transform {label} is a {type(t).__name__}, not a Transform "
                    "(missing _target_?)"
                )
        self._names = [name for t in self._transforms for name in t.names()]
        _check_unique(self._transforms)

    @property
    def transforms(self) -> tuple[Transform, ...]:
        """The transforms, in output order."""
        return self._transforms

    @property
    def lookback(self) -> int:
        """``L``: input bars per model sample."""
        return self._lookback

    @property
    def warmup(self) -> int:
        """The largest transform warm-up: rows ``t >= warmup`` are valid and start-invariant."""
        return max(t.warmup for t in self._transforms)

    @property
    def min_history(self) -> int:
        """Bars serving needs for one fully warm window: ``warmup + lookback``."""
        return self.warmup + self._lookback

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return len(self._names)

    def names(self) -> list[str]:
        """All feature column names, in output order."""
        return list(self._names)

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Compute every transform on ``candles`` and concatenate the columns.

        Args:
            candles: canonical candle frame (``data/schema.py``), oldest bar first.

        Returns:
            Frame with the index of ``candles`` and float64 columns ``names()``; values may be
            NaN only in the first ``warmup`` rows (for transforms with shorter warm-ups, fewer).

        Raises:
            ValueError: a transform returned a frame with the wrong index or columns.

        """
        frames = []
        for t in self._transforms:
            out = t(candles)
            if list(out.columns) != t.names():
                raise ValueError(
                    f"{t!r} returned columns {list(out.columns)}, but names() is {t.names()}"
                )
            if not out.index.equals(candles.index):
                raise ValueError(f"{t!r} returned a frame whose index differs from the candles'")
            frames.append(out)
        features = pd.concat(frames, axis=1).astype(np.float64)
        if features.columns.has_duplicates:  # transforms whose names() changed after __init__
            _check_unique(self._transforms)
        return features

    def to_spec(self) -> dict[str, Any]:
        """JSON-serialisable description: names, transforms with parameters, warm-ups, lookback."""
        transforms = []
        for t in self._transforms:
            params_fn = getattr(t, "params", None)
            transforms.append(
                {
                    "class": f"{type(t).__module__}.{type(t).__qualname__}",
                    "params": params_fn() if callable(params_fn) else None,
                    "warmup": t.warmup,
                    "names": t.names(),
                }
            )
        return {
            "version": SPEC_VERSION,
            "feature_names": self.names(),
            "lookback": self._lookback,
            "warmup": self.warmup,
            "min_history": self.min_history,
            "transforms": transforms,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureSet:
        """Rebuild a feature set from ``to_spec()`` output and check it yields the same names.

        Raises:
            ValueError: unsupported version, an untrusted or unparameterised class, or a rebuilt
                transform whose names or warm-up differ from the spec (code drift).

        """
        if spec.get("version") != SPEC_VERSION:
            raise ValueError(f"unsupported feature spec version {spec.get('version')!r}")
        transforms: list[Transform] = []
        for entry in spec["transforms"]:
            path, params = str(entry["class"]), entry["params"]
            if not path.startswith(_TRUSTED_PREFIX) or params is None:
                raise ValueError(f"cannot rebuild transform {path!r} with params {params!r}")
            module_name, _, class_name = path.rpartition(".")
            transform = getattr(importlib.import_module(module_name), class_name)(**params)
            if transform.names() != list(entry["names"]) or transform.warmup != entry["warmup"]:
                raise ValueError(
                    f"{transform!r} now gives names {transform.names()} and warmup "
                    f"{transform.warmup}; the spec says {entry['names']} and {entry['warmup']}"
                )
            transforms.append(transform)
        feature_set = cls(transforms, lookback=int(spec["lookback"]))
        if feature_set.names() != list(spec["feature_names"]):
            raise ValueError("rebuilt feature names differ from the spec's feature_names")
        return feature_set

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self._transforms)
        return f"FeatureSet([{inner}], lookback={self._lookback})"


def _check_unique(transforms: Sequence[Transform]) -> None:
    counts = Counter(name for t in transforms for name in t.names())
    duplicates = sorted(name for name, n in counts.items() if n > 1)
    if duplicates:
        owners = {name: [repr(t) for t in transforms if name in t.names()] for name in duplicates}
        raise ValueError(f"duplicate feature names {duplicates}; produced by {owners}")
