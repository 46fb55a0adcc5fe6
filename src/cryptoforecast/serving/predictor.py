"""Forecasts from raw candles with an exported bundle: features -> scaling -> ONNX -> signal.

The serving path imports neither torch nor lightning (tested in a subprocess): only pandas,
numpy, onnxruntime and the package's causal feature code, which is the same code training ran,
rebuilt from the bundle's ``feature_spec.json``.

A forecast is made at the close of the newest bar ``t`` given: features are computed on the last
``history_bars`` candles (at least ``warmup + lookback``, the feature set's ``min_history``), the
window is rows ``[t-L+1, t]``, and the backtest's rule turns the forecast into the position the
backtest would take, executed at the close of bar ``t + execution_lag``.

Two shortcuts keep a request within milliseconds without changing any number:

- candles that are already canonical and clean (UTC ``timestamp`` column or index, float64
  OHLCV, strictly increasing on the bar grid, no NaN or OHLC violation in the rows the quality
  check would look at) skip the pandas parsing and quality check, which would return the very
  same rows; anything else goes through :meth:`Predictor.prepare_candles` and its messages;
- a transform that declares ``windowed = True`` (row ``t`` depends on rows ``[t - warmup, t]``
  only, e.g. the wavelet) is computed on the last ``warmup + lookback`` bars instead of all
  ``history_bars``; recursive ones (EMA, Wilder) still see the whole history.

``tests/integration/test_serving_fast.py`` checks both against the full path.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptoforecast.backtest import strategies
from cryptoforecast.data.quality import QualityPolicy, check_candles
from cryptoforecast.data.schema import (
    EARLIEST_CANDLE,
    FUTURE_SLACK,
    INDEX_ROWS,
    OHLCV,
    ROWS_ATTR,
    SOURCE_ATTR,
    DataError,
    interval_to_timedelta,
)
from cryptoforecast.data.sources import TIMESTAMP_ALIASES, normalize_raw_frame
from cryptoforecast.export.bundle import (
    MODEL_FILE,
    BundleError,
    decode_outputs,
    verify_bundle,
)
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.features.registry import SpecError
from cryptoforecast.features.scalers import scaler_from_dict
from cryptoforecast.features.transforms import Transform, TransformBase

log = logging.getLogger(__name__)

#: Rows beyond ``history_bars`` that :meth:`Predictor.prepare_candles` quality-checks (room for
#: exact duplicates it drops).
_SPARE_ROWS = 16


class PredictionError(DataError):
    """The candles cannot give a forecast (too short, a gap inside the window, warm-up NaN)."""


class Predictor:
    """An exported model ready to forecast from raw candles.

    Args:
        folder: the bundle folder.
        verify: check every file's sha256 against the manifest first.
        history_bars: candles used for the features (default: the spec's ``min_history``); more
            history changes recursive (EMA) features by less than their declared tolerance.
        source: a label for responses (e.g. ``btc:3`` when loaded from the registry).
        quality: the quality policy for candles (default :class:`QualityPolicy`: off-grid
            timestamps refused; ``QualityPolicy(off_grid="snap")`` or ``"drop"`` repairs them).
    """

    def __init__(
        self,
        folder: Path,
        verify: bool = True,
        history_bars: int | None = None,
        source: str | None = None,
        quality: QualityPolicy | None = None,
    ) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = verify_bundle(self.folder) if verify else {}
        self.spec: dict[str, Any] = _read_json(self.folder / "feature_spec.json")
        state = _read_json(self.folder / "scaler.json")
        try:
            self.feature_set = FeatureSet.from_spec(
                self.spec, source=str(self.folder / "feature_spec.json")
            )
        except SpecError as exc:
            raise BundleError(str(exc)) from None
        if list(state["feature_names"]) != self.feature_set.names():
            raise DataError(
                f"{self.folder}: scaler.json and feature_spec.json name other features"
            )
        self.scaler = scaler_from_dict(state["features"]) if state["features"] else None
        self.model_info: dict[str, Any] = self.spec["model"]
        self.horizons = [int(h) for h in self.spec["horizons"]]
        self.lookback = int(self.spec["lookback"])
        self.interval = str(self.spec["interval"])
        self.step = interval_to_timedelta(self.interval)
        self.min_history = int(self.spec["min_history"])
        self.history_bars = max(self.min_history, history_bars or self.min_history)
        self.source = source or str(self.folder)
        self.quality = quality or QualityPolicy()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one small request at a time: threads cost more
        self.session = ort.InferenceSession(
            str(self.folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self.input_dtype = (
            np.float64 if self.model_info["input_dtype"] == "float64" else np.float32
        )
        bt = self.spec["backtest"]
        self.trade_horizon = int(bt["horizon"]) if bt.get("horizon") else min(self.horizons)
        # bars each transform is computed on: windowed ones need warm-up + lookback only
        self.transform_rows: list[int | None] = [
            t.warmup + self.lookback if getattr(t, "windowed", False) else None
            for t in self.feature_set.transforms
        ]

    @classmethod
    def from_bundle(cls, path: str | Path, **kwargs: Any) -> Predictor:
        """Load a bundle folder (checksums verified)."""
        return cls(Path(path), **kwargs)

    @classmethod
    def from_registry(cls, ref: str, root: Path | None = None, **kwargs: Any) -> Predictor:
        """Load ``NAME@stage``, ``NAME:VERSION`` or ``NAME`` (latest) from the registry."""
        from cryptoforecast.registry.store import Registry

        registry = Registry(root)
        parsed, version = registry.resolve(ref)
        folder = registry.path(f"{parsed.name}:{version}")  # verifies the checksums
        return cls(folder, verify=False, source=f"{parsed.name}:{version}", **kwargs)

    # ------------------------------------------------------------------ inputs

    def prepare_candles(self, candles: pd.DataFrame, keep_all: bool = False) -> pd.DataFrame:
        """Check raw candles and keep the last ``history_bars`` bars (canonical frame).

        Accepts any column case and either a DatetimeIndex or a ``timestamp`` column. Messages
        name the rows as the user sees them: ``row N`` of the file (data rows from 1) for candles
        from :func:`~cryptoforecast.data.sources.read_candle_file`, whose ``attrs`` name the file;
        ``candles[i]`` (0-based, as in a request's JSON list) for any other frame. Rows before
        the kept tail are parsed and range-checked, not quality-checked.

        Raises:
            DataError: unparseable or invalid candles (NaN or infinite values, OHLC violations,
                conflicting duplicates, off-grid timestamps unless ``self.quality`` repairs them,
                timestamps out of range), named by row and timestamp.
        """
        source = str(candles.attrs.get(SOURCE_ATTR, "candles"))
        rows = str(candles.attrs.get(ROWS_ATTR, INDEX_ROWS))
        raw = candles
        if isinstance(raw.index, pd.DatetimeIndex) and "timestamp" not in raw.columns:
            raw = raw.rename_axis("timestamp").reset_index()
        raw = normalize_raw_frame(raw, source=source, rows=rows)
        raw = raw.sort_values("timestamp", kind="stable")  # keeps each row's position as index
        if not keep_all:  # a few spare rows for exact duplicates the check drops
            raw = raw.tail(self.history_bars + _SPARE_ROWS)
        frame, report = check_candles(raw, source, self.interval, self.quality, rows=rows)
        report.raise_for_errors()
        return frame if keep_all else frame.tail(self.history_bars)

    def clean_tail(self, candles: pd.DataFrame) -> pd.DataFrame | None:
        """The last ``history_bars`` candles as :meth:`prepare_candles` would return them, fast.

        Only for candles that are already canonical and clean: a ``timestamp`` column or
        DatetimeIndex in UTC, float64 ``open/high/low/close/volume`` columns, timestamps strictly
        increasing on the bar grid, and in the rows the quality check would inspect (the last
        ``history_bars + 16``) no NaN/inf, no non-positive price, no negative volume and no OHLC
        violation. Then sorting, de-duplication and the check change nothing, so the result
        equals ``prepare_candles(candles)[OHLCV]``.

        Returns:
            The canonical frame, or None when the candles need the full path (which then
            repairs them or raises its detailed error).
        """
        by_column = "timestamp" in candles.columns
        if not by_column and not isinstance(candles.index, pd.DatetimeIndex):
            return None
        special = {*OHLCV, *TIMESTAMP_ALIASES}  # the names the full path looks up, any case
        found = sorted(str(c) for c in candles.columns if str(c).strip().lower() in special)
        if found != sorted([*OHLCV, "timestamp"] if by_column else OHLCV):
            return None  # other spellings, duplicates or aliases: the full path decides
        if by_column and str(candles.index.name).strip().lower() in special:
            return None  # the full path would turn this named index into a column too
        stamps: Any = candles["timestamp"] if by_column else candles.index
        dtype = stamps.dtype
        if not isinstance(dtype, pd.DatetimeTZDtype) or str(dtype.tz) != "UTC":
            return None
        columns = [candles[c] for c in OHLCV]  # each looked up once: pandas lookups cost
        if any(col.dtype != np.float64 for col in columns):
            return None
        ts = pd.DatetimeIndex(stamps).as_unit("ns").asi8
        if len(ts) == 0 or ts[0] == np.iinfo(np.int64).min or (np.diff(ts) <= 0).any():
            return None  # empty, NaT, unsorted or duplicated: the full path handles it
        if (
            ts[0] < EARLIEST_CANDLE.value
            or ts[-1] > (pd.Timestamp.now("UTC") + FUTURE_SLACK).value
        ):
            return None  # out of range: the full path names the row
        start = max(0, len(ts) - self.history_bars - _SPARE_ROWS)
        values = np.column_stack([col.to_numpy()[start:] for col in columns])  # [rows, 5]
        o, h, lo, c, v = values.T
        clean = (
            np.isfinite(values).all()
            and (np.minimum(np.minimum(o, h), np.minimum(lo, c)) > 0.0).all()
            and (v >= 0.0).all()
            and (h >= np.maximum(o, c)).all()
            and (lo <= np.minimum(o, c)).all()
            and not (ts[start:] % self.step.value).any()
        )
        if not clean:
            return None
        keep = max(0, len(ts) - self.history_bars)
        index = pd.DatetimeIndex(ts[keep:].view("M8[ns]"), name="timestamp").tz_localize("UTC")
        return pd.DataFrame(values[keep - start :], index=index, columns=list(OHLCV))

    def window_features(self, frame: pd.DataFrame) -> np.ndarray:
        """Unscaled features of the last ``lookback`` rows of ``frame``: ``[L, F]`` float64.

        Each transform runs on the whole frame, or on its last ``warmup + lookback`` rows when it
        is ``windowed`` (the same values: those rows are all a windowed transform reads).

        Raises:
            ValueError: a transform returned other columns than its ``names()`` or another index.
        """
        n, blocks = len(frame), []
        for transform, rows in zip(self.feature_set.transforms, self.transform_rows, strict=True):
            part = frame if rows is None or rows >= n else frame.iloc[n - rows :]
            blocks.append(transform_values(transform, part)[-self.lookback :])
        return np.concatenate(blocks, axis=1)

    def _window(self, frame: pd.DataFrame) -> np.ndarray:
        if len(frame) < self.min_history:
            raise PredictionError(
                f"need at least {self.min_history} candles (feature warm-up "
                f"{self.feature_set.warmup} + lookback {self.lookback}), got {len(frame)}"
            )
        tail = frame.index[-self.lookback :]
        steps = np.diff(tail.as_unit("ns").asi8)
        if (steps != self.step.value).any():
            after = tail[:-1][steps != self.step.value][-1]
            raise PredictionError(
                f"the last {self.lookback} candles are not consecutive {self.interval} bars "
                f"(a gap after {after}); a window never spans an outage"
            )
        window = self.window_features(frame)  # [L, F], rows t-L+1 .. t
        if not np.isfinite(window).all():
            bad = [
                n
                for n, ok in zip(self.feature_set.names(), np.isfinite(window).all(0), strict=True)
                if not ok
            ]
            raise PredictionError(
                f"features {bad[:8]}{' ...' if len(bad) > 8 else ''} are not finite inside the "
                f"window ending {frame.index[-1]}: warm-up not satisfied (gaps in the last "
                f"{len(frame)} candles, or too little history), or an external daily series "
                "(Fear & Greed, on-chain) does not cover these bars or is stale"
            )
        if self.scaler is not None:
            window = self.scaler.transform(window)
        return window

    # ------------------------------------------------------------------ predict

    def run_graph(self, x: np.ndarray) -> np.ndarray:
        """ONNX forward pass on prepared windows ``[B, L, F]`` -> decoded ``[B, H]``."""
        (y_hat,) = self.session.run(["y_hat"], {"x": x.astype(self.input_dtype, copy=False)})
        return np.asarray(
            decode_outputs(
                y_hat.astype(np.float64), self.model_info["output"], self.spec["target_scale"]
            )
        )

    def predict(self, candles: pd.DataFrame) -> dict[str, Any]:
        """Forecast at the close of the newest candle.

        Args:
            candles: at least ``min_history`` consecutive bars at the bundle's interval, newest
                last (or any order: they are sorted), columns timestamp/open/high/low/close/volume.

        Returns:
            ``timestamp`` (open time of bar t), ``decision_time`` (its close),
            ``execution_time`` (close of bar t + execution_lag), ``forecasts`` (per horizon:
            ``y_pred`` log return, plus ``p_up`` for classifiers), ``signal`` (rule, horizon,
            ``position`` in {-1, 0, 1} as the backtest would take it), ``close``, ``model``.
        """
        frame = self.clean_tail(candles)
        return self.predict_prepared(self.prepare_candles(candles) if frame is None else frame)

    def predict_prepared(self, frame: pd.DataFrame) -> dict[str, Any]:
        """:meth:`predict` on a frame already checked by :meth:`prepare_candles`."""
        window = self._window(frame)
        y = self.run_graph(window[None])[0]  # [1, L, F] -> [H]
        t = frame.index[-1]
        classifier = self.spec["target_kind"] == "direction"
        forecasts = []
        for h, value in zip(self.horizons, y, strict=True):
            entry: dict[str, Any] = {"horizon": h}
            if classifier:
                entry.update(p_up=float(value), y_pred=float(value > 0.5))
            else:
                entry["y_pred"] = float(value)
            forecasts.append(entry)
        lag = int(self.spec["execution_lag"])
        return {
            "model": self.source,
            "symbol": self.spec["symbol"],
            "interval": self.interval,
            "timestamp": t.isoformat(),
            "decision_time": (t + self.step).isoformat(),
            "execution_time": (t + (lag + 1) * self.step).isoformat(),
            "close": float(frame["close"].iloc[-1]),
            "forecasts": forecasts,
            "signal": self.signal(forecasts),
        }

    def signal(self, forecasts: list[dict[str, Any]]) -> dict[str, Any]:
        """The position the configured backtest rule takes for these forecasts."""
        bt = self.spec["backtest"]
        chosen = next(f for f in forecasts if f["horizon"] == self.trade_horizon)
        if bt["rule"] == "probability":
            pos = strategies.probability(
                [chosen["p_up"]], bt["upper"], bt["lower"], bt["long_short"]
            )
        elif bt["rule"] == "cost":  # the expected move must clear the round-trip cost
            if "p_up" in chosen:
                move = strategies.expected_move([chosen["p_up"]], float(bt["typical_move"]))
            else:
                move = [chosen["y_pred"]]
            cost = strategies.round_trip_cost(bt["fee_bps"], bt["slippage_bps"])
            pos = strategies.cost_aware(move, cost, bt["threshold"], bt["long_short"])
        else:
            pos = strategies.sign([chosen["y_pred"]], bt["threshold"], bt["long_short"])
        return {"rule": bt["rule"], "horizon": self.trade_horizon, "position": float(pos[0])}

    def describe(self) -> dict[str, Any]:
        """What ``GET /model`` shows: source, symbol, interval, horizons, task, parity, sizes."""
        return {
            "model": self.source,
            "model_name": self.manifest.get("model_name"),
            "symbol": self.spec["symbol"],
            "interval": self.interval,
            "horizons": self.horizons,
            "task": self.spec["task"],
            "lookback": self.lookback,
            "min_history": self.min_history,
            "features": self.feature_set.names(),
            "backtest": self.spec["backtest"],
            "graph": self.model_info,
            "parity": self.manifest.get("parity"),
            "created_at": self.manifest.get("created_at"),
        }


def transform_values(transform: Transform, candles: pd.DataFrame) -> np.ndarray:
    """``transform(candles)`` as a float64 array ``[N, C]``, columns in ``names()`` order.

    For a :class:`TransformBase` that keeps the base ``__call__`` (which only wraps the arrays
    of ``_compute`` in a DataFrame), the arrays are taken directly: the same values without the
    DataFrame (about 0.1 ms per transform and request).

    Raises:
        ValueError: the output's columns, index or length do not match.
    """
    names = transform.names()
    if isinstance(transform, TransformBase) and type(transform).__call__ is TransformBase.__call__:
        columns = transform._compute(candles)
        values = [np.asarray(columns[name], dtype=np.float64) for name in names]
        if any(v.shape != (len(candles),) for v in values):
            raise ValueError(f"{transform!r} returned columns of another length than the candles")
        return np.column_stack(values) if values else np.empty((len(candles), 0))
    out = transform(candles)
    if list(out.columns) != names or not out.index.equals(candles.index):
        raise ValueError(
            f"{transform!r} returned columns {list(out.columns)} (names() is {names}) or an "
            "index other than the candles'"
        )
    return out.to_numpy(dtype=np.float64)


def _read_json(path: Path) -> Any:
    """A bundle's JSON file, or a :class:`BundleError` naming it."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable JSON: {exc}") from None
