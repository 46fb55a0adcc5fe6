"""profile_forecaster: keys, call pattern, sizes per backend. No timing thresholds (noisy CI)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cryptoforecast.data.datamodule import SampleSet, build_samples
from cryptoforecast.data.loader import Candles, DataSpec
from cryptoforecast.data.quality import QualityReport
from cryptoforecast.data.splits import Fold, HoldoutSplit
from cryptoforecast.data.synthetic import make_ohlcv
from cryptoforecast.data.targets import TargetSpec
from cryptoforecast.evaluation.profiling import (
    peak_rss_mb,
    profile_forecaster,
    serialized_size_bytes,
)
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.features.transforms import LogReturns, RealizedVolatility
from cryptoforecast.models.base import Forecaster
from cryptoforecast.models.baselines import NaiveForecaster
from cryptoforecast.models.lightgbm_forecaster import LightGBMForecaster

KEYS = {
    "ops/size_mb",
    "ops/latency_single_p50_ms",
    "ops/latency_single_p99_ms",
    "ops/latency_batch_p50_ms",
    "ops/latency_batch_p99_ms",
    "ops/peak_rss_mb",
}


def _candles(frame: pd.DataFrame) -> Candles:
    return Candles(
        frame=frame,
        report=QualityReport(source="syn", interval="1h"),
        sample_start=frame.index[0],
        spec=DataSpec(source="file", path="syn.csv", symbol="SYN", days=None),
    )


@pytest.fixture(scope="module")
def samples() -> SampleSet:
    features = FeatureSet([LogReturns(lags=(1, 2)), RealizedVolatility(windows=(12,))], lookback=4)
    return build_samples(_candles(make_ohlcv(1200, seed=0, ar=0.3)), features, TargetSpec())


@pytest.fixture(scope="module")
def fold(samples: SampleSet) -> Fold:
    split = HoldoutSplit(val_fraction=0.2, test_fraction=0.2)
    return split.folds(samples.windows.timestamps, samples.step, samples.target.reach)[0]


class CountingForecaster:
    """Records every predict call; computes a small matrix product so calls take some time."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.weights = np.random.default_rng(0).normal(size=(64, 64))

    def fit(self, samples: SampleSet, fold: Fold, out_dir: Path) -> dict[str, float]:
        return {"ops/train_seconds": 0.0, "ops/params": 0.0}

    def predict(self, samples: SampleSet, positions: np.ndarray) -> np.ndarray:
        self.calls.append(len(positions))
        x = np.tile(samples.features[samples.windows.ends[positions]][:, :1], (1, 64))
        return np.tanh(x @ self.weights)[:, :1]


class TinyTorchForecaster:
    """A forecaster wrapping a torch module, as TorchForecaster does (``.module``)."""

    def __init__(self, eval_mode: bool = True) -> None:
        self.module = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Dropout(0.1))
        self.eval_mode = eval_mode

    def fit(self, samples: SampleSet, fold: Fold, out_dir: Path) -> dict[str, float]:
        return {"ops/train_seconds": 0.0, "ops/params": 0.0}

    def predict(self, samples: SampleSet, positions: np.ndarray) -> np.ndarray:
        if self.eval_mode:
            self.module.eval()
        x = torch.as_tensor(samples.features[samples.windows.ends[positions]], dtype=torch.float32)
        with torch.no_grad():
            return self.module(x)[:, :1].numpy()


def _check(out: dict[str, float]) -> None:
    assert set(out) == KEYS
    assert all(isinstance(v, float) and np.isfinite(v) for v in out.values())
    assert out["ops/latency_single_p50_ms"] > 0 and out["ops/latency_batch_p50_ms"] > 0
    assert out["ops/latency_single_p99_ms"] >= out["ops/latency_single_p50_ms"]
    assert out["ops/latency_batch_p99_ms"] >= out["ops/latency_batch_p50_ms"]
    assert out["ops/size_mb"] >= 0 and out["ops/peak_rss_mb"] > 0


def test_fake_forecaster_call_pattern(samples: SampleSet, fold: Fold) -> None:
    model = CountingForecaster()
    assert isinstance(model, Forecaster)
    out = profile_forecaster(
        model, samples, fold.test[:10], n_single=30, batch_size=25, n_batch=4, n_warmup=3
    )
    _check(out)
    assert out["ops/size_mb"] == 0.0
    # warm-up: 3 single calls and 1 batch; then 30 timed single calls and 4 timed batches of 25
    # (the 10 positions wrap around)
    assert model.calls == [1] * 3 + [25] + [1] * 30 + [25] * 4


def test_naive_forecaster(samples: SampleSet, fold: Fold, tmp_path: Path) -> None:
    model = NaiveForecaster("ma")
    model.fit(samples, fold, tmp_path)
    out = profile_forecaster(model, samples, fold.test, n_single=50, n_batch=5)
    _check(out)
    assert out["ops/size_mb"] == 0.0 and serialized_size_bytes(model) == 0


def test_lightgbm_forecaster(samples: SampleSet, fold: Fold, tmp_path: Path) -> None:
    model = LightGBMForecaster(
        n_estimators=30, min_data_in_leaf=20, early_stopping_rounds=0, num_threads=1
    )
    model.fit(samples, fold, tmp_path)
    out = profile_forecaster(model, samples, fold.test, n_single=50, n_batch=5)
    _check(out)
    assert out["ops/size_mb"] > 0
    assert out["ops/size_mb"] * 1024 * 1024 == pytest.approx(model.model_size_bytes())


def test_torch_module_size_is_its_state_dict(samples: SampleSet, fold: Fold) -> None:
    model = TinyTorchForecaster()
    buffer = io.BytesIO()
    torch.save(model.module.state_dict(), buffer)
    assert serialized_size_bytes(model) == len(buffer.getvalue()) > (3 * 16 + 16) * 4
    out = profile_forecaster(model, samples, fold.test, n_single=20, batch_size=64, n_batch=3)
    _check(out)
    assert not model.module.training


def test_torch_module_left_in_training_mode_is_flagged(
    samples: SampleSet, fold: Fold, caplog: pytest.LogCaptureFixture
) -> None:
    model = TinyTorchForecaster(eval_mode=False)
    with caplog.at_level(logging.WARNING, logger="cryptoforecast.evaluation.profiling"):
        profile_forecaster(model, samples, fold.test, n_single=5, batch_size=8, n_batch=2)
    assert "training mode" in caplog.text


def test_peak_rss_and_bad_arguments(samples: SampleSet, fold: Fold) -> None:
    assert peak_rss_mb() > 10  # a Python process with numpy, pandas and torch loaded
    model = CountingForecaster()
    with pytest.raises(ValueError, match="positions"):
        profile_forecaster(model, samples, np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="positions"):
        profile_forecaster(model, samples, fold.test.astype(float))
    with pytest.raises(ValueError, match="n_single"):
        profile_forecaster(model, samples, fold.test, batch_size=0)
