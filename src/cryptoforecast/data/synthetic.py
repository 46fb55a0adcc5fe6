"""Seeded synthetic OHLCV for tests, smoke runs and the noise/planted-signal canaries."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoforecast.data.schema import interval_to_timedelta


def make_ohlcv(
    n_bars: int = 600,
    seed: int = 0,
    start: str = "2024-01-01",
    interval: str = "1h",
    vol: float = 0.01,
    ar: float = 0.0,
    price: float = 30_000.0,
) -> pd.DataFrame:
    """A canonical candle frame whose log returns follow an AR(1) process.

    Args:
        n_bars: number of bars.
        seed: RNG seed; the same seed gives the same frame.
        start: open time of the first bar (UTC).
        interval: bar length.
        vol: standard deviation of the return innovations.
        ar: AR(1) coefficient of the close-to-close log returns (0: a random walk, no signal).
        price: first open.

    Returns:
        Frame indexed by UTC ``timestamp`` with open/high/low/close/volume; OHLC-consistent.

    """
    rng = np.random.default_rng(seed)
    eps = rng.normal(0.0, vol, n_bars)
    ret = np.empty(n_bars)
    prev = 0.0
    for i in range(n_bars):  # AR(1) recursion; n_bars is small in tests
        prev = ar * prev + eps[i]
        ret[i] = prev
    close = price * np.exp(np.cumsum(ret))
    open_ = np.concatenate([[price], close[:-1]])
    wick = np.abs(rng.normal(0.0, vol / 2, (2, n_bars)))
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = rng.lognormal(3.0, 0.5, n_bars)
    index = pd.date_range(
        pd.Timestamp(start, tz="UTC"),
        periods=n_bars,
        freq=interval_to_timedelta(interval),
        name="timestamp",
        unit="ns",
    )
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )
