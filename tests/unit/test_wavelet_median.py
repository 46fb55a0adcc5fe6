"""The wavelet's fast median is ``np.median(axis=-1)`` bit for bit, NaN rows included."""

from __future__ import annotations

import numpy as np
import pytest

from cryptoforecast.features.wavelet import median_last_axis


@pytest.mark.parametrize("width", [1, 2, 7, 66, 67])
def test_median_last_axis_is_numpy_median(width: int) -> None:
    rng = np.random.default_rng(width)
    a = np.abs(rng.standard_t(3, size=(500, width)))
    a[3] = 0.0  # ties
    a[5, :] = a[5, 0]
    a[11, width // 2] = np.nan  # a NaN row gives NaN
    a[17, :] = np.inf
    expected = np.median(a, axis=-1)
    got = median_last_axis(a)
    assert np.isnan(got[11]) and np.isnan(expected[11])
    np.testing.assert_array_equal(got, expected)  # equal bits, NaN where numpy has NaN
    assert median_last_axis(a[0]) == np.median(a[0])
    with pytest.raises(ValueError, match="empty axis"):
        median_last_axis(np.zeros((3, 0)))
