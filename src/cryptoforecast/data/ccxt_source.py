"""Candles from any exchange ccxt supports, paginated and cached per month as parquet.

ccxt is the optional extra ``exchange``; it is imported only when this source is used.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.progress import Progress

from cryptoforecast.data.cache import (
    CandleCache,
    finalize,
    month_start,
    next_month,
    safe_name,
    to_ms,
    to_utc,
)
from cryptoforecast.data.schema import (
    OHLCV,
    DataError,
    DataSourceError,
    empty_candles,
    interval_to_timedelta,
)
from cryptoforecast.paths import default_cache_dir

logger = logging.getLogger(__name__)

_RETRIES = 4
_BACKOFF_S = 0.5  # doubled after each failed attempt


def _utcnow() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def fetch_ccxt(
    exchange: str,
    symbol: str,
    interval: str,
    start: pd.Timestamp,
    end: pd.Timestamp | None = None,
    *,
    cache_dir: Path | None = None,
    urls: dict[str, Any] | None = None,
    limit: int = 1000,
    progress: bool = False,
) -> pd.DataFrame:
    """Download the closed candles opening in ``[start, end)`` through ccxt.

    Complete months are fetched whole and cached under
    ``cache_dir/ccxt/{exchange}/{symbol}/{interval}/YYYY-MM.parquet``; the current month is
    fetched on every call.

    Args:
        exchange: ccxt exchange id, e.g. ``binance``.
        symbol: unified ccxt symbol (``BTC/USDT``); an exchange id such as ``BTCUSDT`` works where
            ccxt resolves it.
        interval: bar length, e.g. ``1h`` (a ccxt timeframe and a ``schema.INTERVALS`` key).
        start: first open time wanted (naive = UTC).
        end: open times before this; None (or later than now) means up to now.
        cache_dir: cache root; default ``paths.default_cache_dir()``.
        urls: entries merged into the exchange's ``urls["api"]`` (e.g. to point it elsewhere).
        limit: candles asked for per request.
        progress: show a progress bar over the months.

    Returns:
        Canonical candle frame (float64 OHLCV).

    Raises:
        DataError: a candle ccxt could not parse (names exchange, symbol and the candle).
        DataSourceError: ccxt missing, unknown exchange, or request failures after retries.

    """
    bar = interval_to_timedelta(interval)
    now = _utcnow()
    start = to_utc(start)
    end = now if end is None else min(to_utc(end), now)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = CandleCache(root / "ccxt" / safe_name(exchange) / safe_name(symbol) / interval)
    client = _make_exchange(exchange, urls)
    months = []
    month = month_start(start)
    while month < end:
        months.append(month)
        month = next_month(month)
    frames: list[pd.DataFrame] = []
    with Progress(transient=True, disable=not progress) as bar_ui:
        task = bar_ui.add_task(f"{exchange} {symbol} {interval}", total=len(months))
        for month in months:
            stop = next_month(month)
            label = f"{month:%Y-%m}"
            if stop <= now:  # every bar of the month has closed: fetch it whole and cache it
                frame = cache.read(label)
                if frame is None:
                    frame = _paginate(client, exchange, symbol, interval, month, stop, bar, limit)
                    cache.write(label, frame)
            else:
                lo = max(start, month)
                frame = _paginate(client, exchange, symbol, interval, lo, end, bar, limit)
            frames.append(frame)
            bar_ui.advance(task)
    return finalize(frames, start, end, bar, now)


def _make_exchange(exchange: str, urls: dict[str, Any] | None) -> Any:
    try:
        import ccxt
    except ImportError:
        raise DataSourceError(
            "the ccxt source needs ccxt: pip install 'cryptoforecast[exchange]'"
        ) from None
    cls = getattr(ccxt, exchange, None)
    if exchange not in ccxt.exchanges or cls is None:
        raise DataSourceError(f"ccxt has no exchange {exchange!r}")
    client = cls({"enableRateLimit": False})
    if urls:
        api = client.urls.get("api")
        if isinstance(api, dict):
            client.urls["api"] = {**api, **urls}
        elif set(urls) == {"api"}:
            client.urls["api"] = urls["api"]
        else:
            raise DataSourceError(
                f"{exchange}: urls['api'] is a single URL; pass urls={{'api': ...}}, got {urls}"
            )
    return client


def _paginate(
    client: Any,
    exchange: str,
    symbol: str,
    interval: str,
    lo: pd.Timestamp,
    hi: pd.Timestamp,
    bar: pd.Timedelta,
    limit: int,
) -> pd.DataFrame:
    """Page through ``fetch_ohlcv`` for the candles opening in ``[lo, hi)``."""
    since, stop = to_ms(lo), to_ms(hi)
    step = int(bar / pd.Timedelta(milliseconds=1))
    rows: list[list[Any]] = []
    newest = -1
    # Even one candle per page must finish; an exchange repeating a page is caught below.
    for _ in range(math.ceil((stop - since) / step) + 1):
        if since >= stop:
            break
        page = _call(client, exchange, symbol, interval, since, limit)
        page = [r for r in page if r and r[0] is not None and since <= r[0] < stop]
        if not page:
            break
        top = max(int(r[0]) for r in page)
        if top <= newest:
            break  # same page again: the exchange ignores `since`
        rows.extend(page)
        newest, since = top, top + step
    logger.debug("%s %s %s: %d candles from %s", exchange, symbol, interval, len(rows), lo)
    return _to_frame(rows, f"{exchange} {symbol} {interval}")


def _call(client: Any, exchange: str, symbol: str, interval: str, since: int, limit: int) -> Any:
    """``fetch_ohlcv`` with retries on network errors; every failure becomes DataSourceError."""
    import ccxt

    what = f"{exchange} fetch_ohlcv({symbol!r}, {interval!r}, since={since}, limit={limit})"
    last = ""
    for attempt in range(_RETRIES):
        if attempt:
            time.sleep(_BACKOFF_S * 2 ** (attempt - 1))
        try:
            return client.fetch_ohlcv(symbol, interval, since=since, limit=limit)
        except ccxt.NetworkError as exc:  # includes ExchangeNotAvailable (5xx) and timeouts
            last = f"{type(exc).__name__}: {exc}"
            logger.debug("%s attempt %d: %s", what, attempt + 1, last)
        except ccxt.BaseError as exc:
            raise DataSourceError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
    raise DataSourceError(f"{what} failed after {_RETRIES} attempts: {last}")


def _to_frame(rows: list[list[Any]], source: str) -> pd.DataFrame:
    if not rows:
        return empty_candles()
    for i, row in enumerate(rows):
        if len(row) < 6 or any(v is None for v in row[:6]):
            raise DataError(f"{source}: candle {i + 1} is incomplete: {row}")
    try:
        frame = pd.DataFrame([r[:6] for r in rows], columns=["t", *OHLCV]).astype("float64")
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: unparseable candle values: {exc}") from exc
    index = pd.to_datetime(frame.pop("t").astype("int64"), unit="ms", utc=True)
    frame.index = pd.DatetimeIndex(index, name="timestamp")
    return frame
