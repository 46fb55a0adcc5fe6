from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from cryptoforecast.features import transforms as T
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.features.wavelet import WaveletFeatures
from cryptoforecast.paths import BUNDLED_DATA_DIR, CONF_DIR

CONFIGS = ("minimal", "default", "lgbm")


def load_config(name: str, *overrides: str) -> FeatureSet:
    """The feature set as train.py composes it (lgbm.yaml extends default.yaml via defaults)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"features={name}", *overrides])
    return instantiate(cfg.features)


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    path = BUNDLED_DATA_DIR / "binance_spot_BTCUSDT_1h.csv.gz"
    frame = pd.read_csv(path, nrows=4_000, parse_dates=["timestamp"], index_col="timestamp")
    return frame.astype(np.float64)


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_instantiate(name: str) -> None:
    feature_set = load_config(name)
    assert isinstance(feature_set, FeatureSet)
    assert feature_set.lookback == 64
    assert feature_set.min_history == feature_set.warmup + 64
    assert len(feature_set.names()) == len(set(feature_set.names())) == feature_set.n_features


def test_config_contents() -> None:
    minimal, default, lgbm = (load_config(n) for n in CONFIGS)
    assert minimal.names() == ["logret_1", "logret_2", "logret_4", "logret_8", "logret_24"]
    # lgbm.yaml is default.yaml plus the blocks: keep the copied part in sync
    assert lgbm.names()[: default.n_features] == default.names()
    assert (
        default.to_spec()["transforms"] == lgbm.to_spec()["transforms"][: len(default.transforms)]
    )
    assert {type(t) for t in lgbm.transforms[len(default.transforms) :]} == {
        T.LagReturns,
        T.RollingStats,
        T.MomentumBlock,
    }
    assert default.warmup == 2957  # RSI-200
    assert any(isinstance(t, WaveletFeatures) for t in default.transforms)


def test_config_mapping_overrides_switch_transforms_on_and_off() -> None:
    default = load_config("default")
    no_wavelet = load_config("default", "features.transforms.wavelet=null")
    assert not any(isinstance(t, WaveletFeatures) for t in no_wavelet.transforms)
    assert no_wavelet.names() == [n for n in default.names() if n not in WaveletFeatures().names()]
    extra = load_config(
        "minimal",
        "+features.transforms.calendar={_target_:cryptoforecast.features.transforms.Calendar}",
    )
    assert extra.names()[:5] == load_config("minimal").names()
    assert extra.names()[5:] == T.Calendar().names()


def test_mapping_form_skips_none_and_names_bad_entries() -> None:
    fs = FeatureSet({"ret": T.LogReturns([1]), "off": None, "cal": T.Calendar()}, lookback=4)
    assert fs.names() == ["logret_1", *T.Calendar().names()]
    with pytest.raises(TypeError, match="transform bad is a dict"):
        FeatureSet({"ret": T.LogReturns([1]), "bad": {"periods": [3]}}, lookback=4)


def test_compute_concatenates_in_order(real: pd.DataFrame) -> None:
    parts = [T.Calendar(), T.LogReturns([1, 3]), T.RSI([14])]
    feature_set = FeatureSet(parts, lookback=16)
    out = feature_set.compute(real)
    assert list(out.columns) == [n for t in parts for n in t.names()] == feature_set.names()
    assert feature_set.warmup == T.RSI([14]).warmup
    assert (out.dtypes == np.float64).all()
    pd.testing.assert_frame_equal(out[["logret_1", "logret_3"]], parts[1](real))


@pytest.mark.parametrize("name", ["default", "lgbm"])
def test_nan_only_within_warmup(name: str, real: pd.DataFrame) -> None:
    feature_set = load_config(name)
    out = feature_set.compute(real).to_numpy()
    assert not np.isnan(out[feature_set.warmup :]).any()
    assert np.isnan(out[: feature_set.warmup]).any()  # the warm-up is real, not decorative
    assert not np.isinf(out).any()


def test_duplicate_names_raise() -> None:
    with pytest.raises(ValueError, match=r"duplicate feature names \['logret_2'\]"):
        FeatureSet([T.LogReturns([1, 2]), T.Calendar(), T.LogReturns([2, 3])], lookback=8)


def test_bad_arguments_raise() -> None:
    with pytest.raises(TypeError, match="not a Transform"):
        FeatureSet([T.Calendar(), {"_target_": "x"}], lookback=8)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one"):
        FeatureSet([], lookback=8)
    with pytest.raises(ValueError, match="lookback"):
        FeatureSet([T.Calendar()], lookback=0)
    with pytest.raises(ValueError, match="must all be >= 2"):
        T.RSI([1, 14])
    with pytest.raises(ValueError, match="level must be in"):
        WaveletFeatures(window=32, level=4)


class _WrongColumns(T.TransformBase):
    def __init__(self) -> None:
        self._names, self._warmup = ["a"], 0

    def params(self) -> dict[str, int]:
        return {}

    def __call__(self, candles: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"b": 0.0}, index=candles.index)


def test_transform_output_is_checked(real: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"returned columns \['b'\]"):
        FeatureSet([_WrongColumns()], lookback=4).compute(real)


def test_spec_round_trip(real: pd.DataFrame) -> None:
    feature_set = load_config("lgbm")
    spec = json.loads(json.dumps(feature_set.to_spec()))
    assert spec["feature_names"] == feature_set.names()
    assert spec["lookback"] == 64 and spec["warmup"] == feature_set.warmup
    rsi = spec["transforms"][0]
    assert rsi == {
        "transform": "RSI",
        "params": {"periods": [14, 30, 200]},
        "warmup": 2957,
        "names": ["rsi_14", "rsi_30", "rsi_200"],
    }
    rebuilt = FeatureSet.from_spec(spec)
    assert rebuilt.to_spec() == spec
    pd.testing.assert_frame_equal(rebuilt.compute(real), feature_set.compute(real))


def test_from_spec_rejects_untrusted_and_drifted() -> None:
    spec = FeatureSet([T.LogReturns([1])], lookback=4).to_spec()
    spec["transforms"][0]["transform"] = "os.system"
    with pytest.raises(ValueError, match="unknown feature transform 'os.system'"):
        FeatureSet.from_spec(spec)
    spec = FeatureSet([T.LogReturns([1])], lookback=4).to_spec()
    spec["transforms"][0]["names"] = ["logret_one"]
    with pytest.raises(ValueError, match="the spec says"):
        FeatureSet.from_spec(spec)
