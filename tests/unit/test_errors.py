"""Clean errors: closest keys, composition messages, walk-forward needs, the data.days warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from cryptoforecast.data.loader import DataSpec, load_candles
from cryptoforecast.data.schema import DataError
from cryptoforecast.data.splits import WalkForwardSplit
from cryptoforecast.paths import CONF_DIR
from cryptoforecast.utils.errors import closest_keys, composition_message, user_error


def _composition_error(*overrides: str) -> ConfigCompositionException:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        with pytest.raises(ConfigCompositionException) as info:
            compose(config_name="train", overrides=list(overrides))
    return info.value


def test_a_misspelt_key_gets_the_closest_valid_keys_not_a_plus_hint() -> None:
    exc = _composition_error("data.dayz=5")
    message = composition_message(exc, "train", ["data.dayz=5"])
    assert message == "data.dayz is not a key of the train config: did you mean data.days?"
    assert "+data" not in message


def test_a_misspelt_group_name_and_option_are_matched() -> None:
    assert "did you mean data.days" in composition_message(
        _composition_error("dat.days=5"), "train", ["dat.days=5"]
    )
    message = composition_message(_composition_error("model=tcnn"), "train", ["model=tcnn"])
    assert message.startswith("model=tcnn is not a config option; did you mean model=tcn?")
    assert "lightgbm" in message  # the options are listed


def test_closest_keys_ignores_far_keys() -> None:
    keys = ["data.days", "data.end", "data.quality", "trainer.max_epochs"]
    assert closest_keys("data.dayz", keys) == ["data.days"]
    assert closest_keys("completely.different", keys) == []


def test_user_error_is_found_behind_hydra_instantiate() -> None:
    cause = DataError("data=file needs the file")
    try:
        try:
            raise cause
        except DataError as inner:
            raise RuntimeError("Error in call to target") from inner
    except RuntimeError as outer:
        assert user_error(outer) is cause
    assert user_error(ValueError("x")) is None


def test_walk_forward_error_says_how_many_days_the_folds_need() -> None:
    split = WalkForwardSplit(n_folds=4, val_bars=720, test_bars=720, train_bars=2000)
    step = pd.Timedelta(hours=1)
    short = pd.date_range("2025-01-01", periods=20 * 24, freq="h", tz="UTC")
    with pytest.raises(DataError, match=r"needs about (\d+) sample bars") as info:
        split.folds(short, step, reach=2)
    text = str(info.value)
    need = split.bars_needed(reach=2)
    assert f"needs about {need} sample bars = {need / 24:.1f} days" in text
    assert "samples span 480 bars = 20.0 days" in text
    days = int(text.split("use data.days=")[1].split()[0])
    # the suggestion is enough, and not wildly more than enough
    enough = pd.date_range("2025-01-01", periods=days * 24, freq="h", tz="UTC")
    assert len(split.folds(enough, step, reach=2)) == 4
    fewer = pd.date_range("2025-01-01", periods=(days - 3) * 24, freq="h", tz="UTC")
    with pytest.raises(DataError):
        split.folds(fewer, step, reach=2)


def test_walk_forward_error_suggests_the_folds_that_fit() -> None:
    split = WalkForwardSplit(n_folds=4, val_bars=100, test_bars=100, train_bars=200)
    times = pd.date_range("2025-01-01", periods=420, freq="h", tz="UTC")
    with pytest.raises(DataError, match=r"or split\.n_folds=2,") as info:
        split.folds(times, pd.Timedelta(hours=1), reach=2)
    two = WalkForwardSplit(n_folds=2, val_bars=100, test_bars=100, train_bars=200)
    assert len(two.folds(times, pd.Timedelta(hours=1), reach=2)) == 2, str(info.value)


def test_days_beyond_the_history_warn_with_the_days_that_exist(
    candles_csv: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cryptoforecast.data.loader")
    loaded = load_candles(DataSpec(source="file", path=str(candles_csv), days=1000))
    assert len(loaded.frame) == 600  # everything there is
    warned = [r.getMessage() for r in caplog.records if "data.days=1000" in r.getMessage()]
    assert len(warned) == 1, caplog.text
    assert "holds: 25.0 days" in warned[0] and str(candles_csv) in warned[0]
    caplog.clear()
    load_candles(DataSpec(source="file", path=str(candles_csv), days=10))
    assert not [r for r in caplog.records if "asks for more history" in r.getMessage()]
