"""The Predictor's fast path gives the same numbers as the full path and the training run.

Fast path (``serving/predictor.py``): canonical clean candles skip parsing + quality check
(:meth:`Predictor.clean_tail`), and ``windowed`` transforms run on their last
``warmup + lookback`` bars only (:meth:`Predictor.window_features`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cryptoforecast.data.schema import OHLCV
from cryptoforecast.data.sources import bundled_path, read_candle_file
from cryptoforecast.export.bundle import export_run
from cryptoforecast.features import transforms as transforms_module
from cryptoforecast.features import wavelet as wavelet_module
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.features.transforms import Transform, TransformBase
from cryptoforecast.features.wavelet import WaveletFeatures
from cryptoforecast.paths import CONF_DIR
from cryptoforecast.serving.predictor import Predictor, transform_values

from .test_export_runs import run_folder

#: Windowed tail vs full-history features (the wavelet's row-wise BLAS products may round
#: differently with another number of rows; seen: ~2e-19).
TAIL_ATOL = 1e-12
_BUNDLE: list[Path] = []


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """The bundled BTCUSDT candles as read from the file (timestamp column, UTC, float64)."""
    return read_candle_file(bundled_path("BTCUSDT"))


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    """A LightGBM bundle with the default features (RSI-200 warm-up, the windowed wavelet)."""
    if not _BUNDLE:
        run = run_folder("lightgbm_default")
        _BUNDLE.append(export_run(run, run / "fast_bundle"))
    return Predictor.from_bundle(_BUNDLE[0])


def _full_window(predictor: Predictor, frame: pd.DataFrame) -> np.ndarray:
    """The reference: every transform over the whole frame (``FeatureSet.compute``)."""
    return predictor.feature_set.compute(frame).to_numpy(dtype=np.float64)[-predictor.lookback :]


def test_fast_path_matches_training_and_full_recomputation(
    predictor: Predictor, raw: pd.DataFrame
) -> None:
    transforms = predictor.feature_set.transforms
    tail_only = [n is not None for n in predictor.transform_rows]
    assert tail_only == [getattr(t, "windowed", False) for t in transforms]
    wavelet = next(i for i, t in enumerate(transforms) if isinstance(t, WaveletFeatures))
    assert tail_only[wavelet]
    assert not all(tail_only)  # RSI-200 & co. still see the whole history
    frame = pd.read_parquet(run_folder("lightgbm_default") / "predictions.parquet")
    rows = frame.iloc[np.linspace(0, len(frame) - 1, 8).astype(int)]
    worst = 0.0
    for ts, expected in rows[["timestamp", "y_pred"]].itertuples(index=False):
        candles = raw[raw["timestamp"] <= ts].tail(predictor.min_history + 50)
        fast = predictor.clean_tail(candles)
        assert fast is not None  # the fast path is taken for file-read candles
        window = predictor.window_features(fast)
        full = _full_window(predictor, predictor.prepare_candles(candles))
        assert np.isfinite(full).all()
        worst = max(worst, float(np.max(np.abs(window - full))))
        out = predictor.predict(candles)
        assert out["forecasts"][0]["y_pred"] == pytest.approx(expected, rel=1e-5, abs=1e-9), ts
        full_y = predictor.run_graph(full[None])[0, 0]
        assert abs(out["forecasts"][0]["y_pred"] - full_y) <= 1e-12
    assert worst <= TAIL_ATOL


def test_clean_tail_is_prepare_candles_or_declines(
    predictor: Predictor, raw: pd.DataFrame
) -> None:
    candles = raw.tail(predictor.min_history + 40).reset_index(drop=True)
    expected = predictor.prepare_candles(candles)[list(OHLCV)]
    for same in (candles, candles.set_index("timestamp"), candles.tail(predictor.history_bars)):
        pd.testing.assert_frame_equal(predictor.clean_tail(same), expected)
    # anything the full path would repair, parse or reject is left to it
    nan_in_spare = candles.copy()
    nan_in_spare.loc[len(candles) - predictor.history_bars - 3, "volume"] = np.nan
    low_above_body = candles.copy()
    low_above_body.loc[len(candles) - 1, "low"] = candles["high"].iloc[-1] * 1.01
    declined = {
        "shuffled": candles.sample(frac=1.0, random_state=0),
        "duplicate row": pd.concat([candles, candles.tail(1)], ignore_index=True),
        "string timestamps": candles.assign(timestamp=candles["timestamp"].astype(str)),
        "naive timestamps": candles.assign(timestamp=candles["timestamp"].dt.tz_localize(None)),
        "upper-case column": candles.rename(columns={"close": "Close"}),
        "float32 volume": candles.astype({"volume": np.float32}),
        "off grid": candles.assign(timestamp=candles["timestamp"] + pd.Timedelta(minutes=1)),
        "NaN in a checked spare row": nan_in_spare,
        "low above body": low_above_body,
        "alias column too": candles.assign(date=candles["timestamp"]),
    }
    for name, frame in declined.items():
        assert predictor.clean_tail(frame) is None, name
    # and the full path still answers exactly as before for them
    assert predictor.predict(declined["shuffled"]) == predictor.predict(candles)
    with pytest.raises(ValueError, match="NaN volume"):
        predictor.predict(nan_in_spare)
    with pytest.raises(ValueError, match="low above min"):
        predictor.predict(low_above_body)


def _windowed_transforms() -> list[Transform]:
    """Every transform class of the package's feature modules that claims ``windowed``."""
    found: list[Transform] = []
    for module in (transforms_module, wavelet_module):
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, TransformBase)
                and obj is not TransformBase
            ):
                if getattr(obj, "windowed", False):
                    found.append(obj())
    return found


def test_windowed_transforms_equal_on_their_tail(raw: pd.DataFrame) -> None:
    """Every transform claiming ``windowed`` gives the same last rows from warm-up + L bars."""
    claimed = _windowed_transforms()
    assert any(isinstance(t, WaveletFeatures) for t in claimed)
    claimed.append(WaveletFeatures(window=48, wavelet="sym5", level=2, mode="periodization"))
    frame = raw.set_index("timestamp")
    lookback = 64
    for transform in claimed:
        need = transform.warmup + lookback
        for end in (5_000, 40_000, len(frame)):  # calm and turbulent periods, the newest bars
            history = frame.iloc[end - 3_000 : end]
            full = transform(history).to_numpy()[-lookback:]
            tail = transform(history.iloc[-need:]).to_numpy()[-lookback:]
            assert np.isfinite(full).all()
            np.testing.assert_allclose(tail, full, rtol=0, atol=TAIL_ATOL, err_msg=repr(transform))


def test_transform_values_equals_calling_the_transform(raw: pd.DataFrame) -> None:
    """The DataFrame-free shortcut gives exactly ``transform(candles).to_numpy()``."""
    feature_set: FeatureSet = instantiate(OmegaConf.load(CONF_DIR / "features" / "default.yaml"))
    frame = raw.set_index("timestamp").iloc[-3_100:]
    for transform in feature_set.transforms:
        expected = transform(frame).to_numpy(dtype=np.float64)
        np.testing.assert_array_equal(transform_values(transform, frame), expected)
