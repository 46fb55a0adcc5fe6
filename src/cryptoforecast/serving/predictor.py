"""Forecasts from raw candles with an exported bundle: features -> scaling -> ONNX -> signal.

The serving path imports neither torch nor lightning (tested in a subprocess): only pandas,
numpy, onnxruntime and the package's causal feature code, which is the same code training ran,
rebuilt from the bundle's ``feature_spec.json``.

A forecast is made at the close of the newest bar ``t`` given: features are computed on the last
``history_bars`` candles (at least ``warmup + lookback``, the feature set's ``min_history``), the
window is rows ``[t-L+1, t]``, and the backtest's rule turns the forecast into the position the
backtest would take, executed at the close of bar ``t + execution_lag``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptoforecast.backtest import strategies
from cryptoforecast.data.quality import check_candles
from cryptoforecast.data.schema import DataError, interval_to_timedelta
from cryptoforecast.data.sources import normalize_raw_frame
from cryptoforecast.export.bundle import MODEL_FILE, decode_outputs, verify_bundle
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.features.scalers import scaler_from_dict

log = logging.getLogger(__name__)


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
    """

    def __init__(
        self,
        folder: Path,
        verify: bool = True,
        history_bars: int | None = None,
        source: str | None = None,
    ) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = verify_bundle(self.folder) if verify else {}
        self.spec: dict[str, Any] = json.loads((self.folder / "feature_spec.json").read_text())
        state = json.loads((self.folder / "scaler.json").read_text())
        self.feature_set = FeatureSet.from_spec(self.spec)
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

        Accepts any column case and either a DatetimeIndex or a ``timestamp`` column.

        Raises:
            DataError: unparseable or invalid candles (NaN, OHLC violations, conflicting
                duplicates, off-grid timestamps), named by row and timestamp.
        """
        raw = candles
        if isinstance(raw.index, pd.DatetimeIndex) and "timestamp" not in raw.columns:
            raw = raw.rename_axis("timestamp").reset_index()
        raw = normalize_raw_frame(raw, source="candles")
        raw = raw.sort_values("timestamp", kind="stable")
        if not keep_all:  # a few spare rows for exact duplicates the check drops
            raw = raw.tail(self.history_bars + 16)
        frame, report = check_candles(raw.reset_index(drop=True), "candles", self.interval)
        report.raise_for_errors()
        return frame if keep_all else frame.tail(self.history_bars)

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
        features = self.feature_set.compute(frame).to_numpy(dtype=np.float64)
        window = features[-self.lookback :]  # [L, F], rows t-L+1 .. t
        if not np.isfinite(window).all():
            raise PredictionError(
                "features inside the window are not finite (warm-up not satisfied: gaps in the "
                f"last {len(frame)} candles, or too little history)"
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
        return self.predict_prepared(self.prepare_candles(candles))

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
