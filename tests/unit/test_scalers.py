from __future__ import annotations

import json

import numpy as np
import pytest

from cryptoforecast.features.scalers import (
    NotFittedError,
    RobustScaler,
    StandardScaler,
    scaler_from_dict,
)

SCALERS = [StandardScaler, RobustScaler]
N_TRAIN = 300


@pytest.fixture
def data() -> np.ndarray:
    rng = np.random.default_rng(4)
    return rng.normal([1.0, -5.0, 100.0], [0.5, 2.0, 30.0], size=(500, 3))


@pytest.mark.parametrize("cls", SCALERS)
def test_fit_sees_training_rows_only(cls: type[StandardScaler], data: np.ndarray) -> None:
    train = data[:N_TRAIN]
    scaler = cls().fit(train)
    center, scale = scaler.center_.copy(), scaler.scale_.copy()
    before = scaler.transform(data)

    data[N_TRAIN:] = data[N_TRAIN:] * 50.0 + 1e6  # mutate the validation rows in place
    refit = cls().fit(data[:N_TRAIN])
    np.testing.assert_array_equal(refit.center_, center)
    np.testing.assert_array_equal(refit.scale_, scale)
    np.testing.assert_array_equal(scaler.transform(data)[:N_TRAIN], before[:N_TRAIN])

    train[:] = 0.0  # the fitted scaler keeps no view on the caller's array
    np.testing.assert_array_equal(scaler.center_, center)


def test_standard_statistics_are_train_only(data: np.ndarray) -> None:
    scaler = StandardScaler().fit(data[:N_TRAIN])
    np.testing.assert_allclose(scaler.center_, data[:N_TRAIN].mean(axis=0))
    np.testing.assert_allclose(scaler.scale_, data[:N_TRAIN].std(axis=0))
    z = scaler.transform(data[:N_TRAIN])
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0)


def test_robust_statistics() -> None:
    x = np.array([[1.0], [2.0], [3.0], [4.0], [100.0]])
    scaler = RobustScaler().fit(x)
    assert scaler.center_.tolist() == [3.0]
    assert scaler.scale_.tolist() == [2.0]  # IQR: 4 - 2
    assert RobustScaler(quantile_range=(0, 100)).fit(x).scale_.tolist() == [99.0]


@pytest.mark.parametrize("cls", SCALERS)
def test_round_trip_through_json(cls: type[StandardScaler], data: np.ndarray) -> None:
    scaler = cls().fit(data[:N_TRAIN])
    state = json.loads(json.dumps(scaler.to_dict()))
    for rebuilt in (cls.from_dict(state), scaler_from_dict(state)):
        assert type(rebuilt) is cls
        np.testing.assert_array_equal(rebuilt.transform(data), scaler.transform(data))
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(data)), data)


def test_from_dict_rejects_wrong_type(data: np.ndarray) -> None:
    state = StandardScaler().fit(data).to_dict()
    with pytest.raises(ValueError, match="not 'robust'"):
        RobustScaler.from_dict(state)
    with pytest.raises(ValueError, match="unknown scaler type"):
        scaler_from_dict({**state, "type": "minmax"})


@pytest.mark.parametrize("cls", SCALERS)
def test_zero_spread_gets_scale_one(cls: type[StandardScaler], data: np.ndarray) -> None:
    data[:, 1] = 0.1  # constant column; its mean in floating point is not exactly 0.1
    scaler = cls().fit(data)
    assert scaler.scale_[1] == 1.0
    out = scaler.transform(data)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 1], 0.0, atol=1e-12)


def test_robust_zero_iqr_but_not_constant() -> None:
    x = np.zeros((100, 2))
    x[:, 0] = np.arange(100)
    x[::20, 1] = 5.0  # mostly zeros: IQR 0 although the column varies
    scaler = RobustScaler().fit(x)
    assert scaler.scale_[1] == 1.0 and np.isfinite(scaler.transform(x)).all()


@pytest.mark.parametrize("cls", SCALERS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_fit_names_the_column(cls: type[StandardScaler], bad: float) -> None:
    x = np.ones((20, 4))
    x[:, :] = np.arange(20)[:, None]
    x[7, 2] = bad
    with pytest.raises(ValueError, match=r"column 2 \(1 values, first at row 7"):
        cls().fit(x)


@pytest.mark.parametrize("cls", SCALERS)
def test_misuse_raises(cls: type[StandardScaler], data: np.ndarray) -> None:
    with pytest.raises(NotFittedError):
        cls().transform(data)
    with pytest.raises(NotFittedError):
        cls().to_dict()
    with pytest.raises(ValueError, match="2-D"):
        cls().fit(data[:, 0])
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 3\]"):
        cls().fit(data).transform(data[:, :2])


def test_windows_and_float32_keep_shape_and_dtype(data: np.ndarray) -> None:
    scaler = StandardScaler().fit(data[:N_TRAIN])
    windows = np.lib.stride_tricks.sliding_window_view(data, 16, axis=0).transpose(0, 2, 1)
    out = scaler.transform(windows.astype(np.float32))  # [B, L, F]
    assert out.shape == windows.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[5, -1], scaler.transform(data[20]), rtol=1e-5)
    nan_row = data[:1].copy()
    nan_row[0, 0] = np.nan
    assert np.isnan(scaler.transform(nan_row)[0, 0])  # transform passes NaN through
