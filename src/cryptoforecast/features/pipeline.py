"""``FeatureSet``: an ordered list of causal transforms plus the model lookback.

Built from ``conf/features/*.yaml`` with Hydra ``_target_``; ``compute`` turns a candle frame into
the feature frame, ``to_spec`` describes it for the export bundle and ``from_spec`` rebuilds it
for serving. Scaling is not done here: scalers (``features/scalers.py``) are fitted by the caller
on training rows only.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cryptoforecast.features.transforms import Transform

logger = logging.getLogger(__name__)

#: 2: transforms by registry name (``"transform"``); 1 (still read): by class path (``"class"``).
SPEC_VERSION = 2
_READABLE_VERSIONS = (1, SPEC_VERSION)


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
        """JSON-serialisable description: names, transforms with parameters, warm-ups, lookback.

        Each transform is named by its registry name (``features/registry.py``), never by a
        Python path.

        Raises:
            SpecError: a transform whose class is not registered (a bundle could not rebuild it).
        """
        from cryptoforecast.features.registry import registry_name

        transforms = []
        for t in self._transforms:
            params_fn = getattr(t, "params", None)
            transforms.append(
                {
                    "transform": registry_name(t),
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
    def from_spec(cls, spec: Mapping[str, Any], source: str = "feature_spec") -> FeatureSet:
        """Rebuild a feature set from ``to_spec()`` output and check it yields the same names.

        Only transforms of the allow-list in ``features/registry.py`` are built, with strictly
        typed parameters; nothing named in the spec is imported or called. Old bundles'
        ``"class"`` paths are mapped through the same allow-list by exact match.

        Args:
            spec: the parsed ``feature_spec.json``.
            source: the file the spec came from, for error messages.

        Raises:
            SpecError: unsupported version, a malformed entry, an unknown transform, an unknown
                or mistyped parameter, or a rebuilt transform whose names or warm-up differ from
                the spec (code drift); the message names ``source`` and the key.

        """
        from cryptoforecast.features.registry import SpecError, build, resolve_name

        if not isinstance(spec, Mapping):
            raise SpecError(f"{source}: expected a JSON object, got {type(spec).__name__}")
        if spec.get("version") not in _READABLE_VERSIONS:
            raise SpecError(f"{source}: unsupported feature spec version {spec.get('version')!r}")
        entries = spec.get("transforms")
        if not isinstance(entries, list) or not entries:
            raise SpecError(f"{source}: 'transforms' must be a non-empty list")
        transforms: list[Transform] = []
        for i, entry in enumerate(entries):
            where = f"{source}: transforms[{i}]"
            if not isinstance(entry, Mapping):
                raise SpecError(f"{where}: expected an object, got {type(entry).__name__}")
            name = resolve_name(entry, where)
            transform = build(name, entry.get("params"), where)
            if transform.names() != entry.get("names") or transform.warmup != entry.get("warmup"):
                raise SpecError(
                    f"{where}: {transform!r} now gives names {transform.names()} and warmup "
                    f"{transform.warmup}; the spec says {entry.get('names')} and "
                    f"{entry.get('warmup')}"
                )
            transforms.append(transform)
        lookback = spec.get("lookback")
        if not isinstance(lookback, int) or isinstance(lookback, bool) or lookback < 1:
            raise SpecError(f"{source}: lookback must be an integer >= 1, got {lookback!r}")
        feature_set = cls(transforms, lookback=lookback)
        if feature_set.names() != spec.get("feature_names"):
            raise SpecError(f"{source}: rebuilt feature names differ from its feature_names")
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
