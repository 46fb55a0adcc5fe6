"""fetch_ccxt (ccxt's binance client) against the local fake of Binance's REST API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cryptoforecast.data import ccxt_source
from cryptoforecast.data.ccxt_source import fetch_ccxt
from cryptoforecast.data.schema import OHLCV, DataSourceError
from tests.fakes.exchange_server import FakeBinance

pytest.importorskip("ccxt")

pytestmark = [pytest.mark.network_local, pytest.mark.exchange, pytest.mark.timeout(60)]

NOW = pd.Timestamp("2025-01-03 12:30", tz="UTC")
STEP = pd.Timedelta(hours=4)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ccxt_source, "_utcnow", lambda: NOW)
    monkeypatch.setattr(ccxt_source, "_BACKOFF_S", 0.0)


def urls(fake: FakeBinance) -> dict[str, str]:
    return {
        "public": f"{fake.url}/api/v3",
        "fapiPublic": f"{fake.url}/fapi/v1",
        "dapiPublic": f"{fake.url}/dapi/v1",
    }


def fetch(fake: FakeBinance, cache: Path, start: str, **kw: Any) -> pd.DataFrame:
    return fetch_ccxt(
        "binance", "BTC/USDT", "4h", ts(start), cache_dir=cache, urls=urls(fake), **kw
    )


def expected(fake: FakeBinance, start: str) -> pd.DataFrame:
    truth = fake.truth("spot", "BTCUSDT", "4h")[list(OHLCV)]
    return truth[(truth.index >= ts(start)) & (truth.index + STEP <= NOW)]


def kline_starts(fake: FakeBinance, lo: int = 0, hi: int | None = None) -> list[pd.Timestamp]:
    calls = [r for r in fake.requests[lo:hi] if r.path == "/api/v3/klines"]
    return [pd.Timestamp(int(r.query["startTime"]), unit="ms", tz="UTC") for r in calls]


def test_paginates_and_caches_complete_months(tmp_path: Path) -> None:
    with FakeBinance(now=NOW, rest_max_limit=50) as fake:
        first = fetch(fake, tmp_path, "2024-12-30", progress=True)
        n_first = len(fake.requests)
        second = fetch(fake, tmp_path, "2024-12-30")
    want = expected(fake, "2024-12-30")
    pd.testing.assert_frame_equal(first, want)
    pd.testing.assert_frame_equal(second, want)
    assert first.index[-1] == ts("2025-01-03 08:00")  # the 12:00 bar is still forming at NOW
    assert fake.paths("/api/v3/exchangeInfo")  # ccxt loaded the markets from the fake
    # December (186 bars) is fetched whole in pages of 50, January from the month start.
    assert kline_starts(fake, 0, n_first) == [
        ts("2024-12-01"), ts("2024-12-09 08:00"), ts("2024-12-17 16:00"), ts("2024-12-26"),
        ts("2025-01-01"),
    ]  # fmt: skip
    assert kline_starts(fake, n_first) == [ts("2025-01-01")]  # December came from the cache
    assert (tmp_path / "ccxt" / "binance" / "BTC-USDT" / "4h" / "2024-12.parquet").is_file()


def test_fully_cached_span_makes_no_requests(tmp_path: Path) -> None:
    with FakeBinance(now=NOW) as fake:
        fetch_ccxt("binance", "BTC/USDT", "4h", ts("2024-11-20"), ts("2024-12-05"),
                   cache_dir=tmp_path, urls=urls(fake))  # fmt: skip
        n_first = len(fake.requests)
        got = fetch_ccxt("binance", "BTC/USDT", "4h", ts("2024-11-20"), ts("2024-12-05"),
                         cache_dir=tmp_path, urls=urls(fake))  # fmt: skip
    assert len(fake.requests) == n_first
    assert got.index[0] == ts("2024-11-20") and got.index[-1] == ts("2024-12-04 20:00")


class RepeatingClient:
    """An exchange that ignores ``since`` and always answers the same page."""

    def __init__(self) -> None:
        self.calls = 0

    def fetch_ohlcv(self, symbol: str, timeframe: str, since: int, limit: int) -> list[list[Any]]:
        self.calls += 1
        t0 = int(ts("2024-12-01").value // 1_000_000)
        return [[t0 + i * 3_600_000, 1.0, 2.0, 0.5, 1.5, 10.0] for i in range(3)]


def test_pagination_stops_when_the_exchange_repeats_a_page() -> None:
    client = RepeatingClient()
    frame = ccxt_source._paginate(
        client, "x", "BTC/USDT", "1h", ts("2024-12-01"), ts("2024-12-02"), pd.Timedelta("1h"), 3
    )
    assert client.calls == 2 and len(frame) == 3


def test_persistent_http_500_raises_with_the_url(tmp_path: Path) -> None:
    with FakeBinance(now=NOW, fail={"/api/v3/klines": 500}) as fake:
        with pytest.raises(DataSourceError, match="failed after") as err:
            fetch(fake, tmp_path, "2025-01-02")
    assert f"{fake.url}/api/v3/klines" in str(err.value)
    assert len(fake.paths("/api/v3/klines")) == ccxt_source._RETRIES


def test_missing_ccxt_and_unknown_exchange(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DataSourceError, match="no exchange 'nosuchexchange'"):
        fetch_ccxt("nosuchexchange", "BTC/USDT", "1h", ts("2025-01-01"), cache_dir=tmp_path)
    monkeypatch.setitem(sys.modules, "ccxt", None)
    with pytest.raises(DataSourceError, match=r"pip install 'cryptoforecast\[exchange\]'"):
        fetch_ccxt("binance", "BTC/USDT", "1h", ts("2025-01-01"), cache_dir=tmp_path)
