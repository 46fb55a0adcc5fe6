"""Binance klines: the public data archive (data.binance.vision) first, the REST API for the tail.

Complete past months come from monthly zips, the current month's past days from daily zips, and
the bars the archive does not have yet (daily zips appear about a day late) from
``/api/v3/klines`` (spot) or ``/fapi/v1/klines`` (USD-M futures). Each parsed zip is cached as
parquet, so a second call downloads nothing that is already cached.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import logging
import os
import time
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import requests
from rich.progress import Progress

from cryptoforecast.data.cache import CandleCache, finalize, month_start, next_month, to_ms, to_utc
from cryptoforecast.data.schema import DataError, DataSourceError, interval_to_timedelta
from cryptoforecast.paths import default_cache_dir

logger = logging.getLogger(__name__)

MARKETS = {"spot": "spot", "futures": "futures/um"}
REST = {
    "spot": ("https://api.binance.com", "/api/v3/klines"),
    "futures": ("https://fapi.binance.com", "/fapi/v1/klines"),
}
_REST_LIMIT = 1000
_RETRIES = 4
_BACKOFF_S = 0.5  # doubled after each failed attempt
#: The longest ``Retry-After`` (429/503) this client waits; a longer one fails at once with a
#: message to try later (Binance bans an IP that keeps asking while rate-limited).
RETRY_AFTER_MAX_S = 60.0
_CHUNK = 8192
# Monthly zips appear a few days into the next month; until then the month comes from daily zips.
_MONTHLY_GRACE = pd.Timedelta(days=32)
# Kline columns kept besides open time: (index in the 12-column row, name).
_COLUMNS = (
    (1, "open"), (2, "high"), (3, "low"), (4, "close"), (5, "volume"), (7, "quote_volume"),
    (8, "trades"), (9, "taker_buy_volume"), (10, "taker_buy_quote_volume"),
)  # fmt: skip


class _Period(NamedTuple):
    kind: str  # "monthly" or "daily"
    label: str  # "2024-11" or "2025-01-02": the file's date and the cache key
    start: pd.Timestamp
    stop: pd.Timestamp


def _utcnow() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def fetch_binance(
    symbol: str,
    interval: str,
    start: pd.Timestamp,
    end: pd.Timestamp | None = None,
    *,
    market: str = "spot",
    cache_dir: Path | None = None,
    archive_url: str = "https://data.binance.vision",
    rest_url: str | None = None,
    progress: bool = False,
    timeout: float = 30.0,
) -> pd.DataFrame:
    """Download the closed Binance klines opening in ``[start, end)``.

    Args:
        symbol: Binance symbol, e.g. ``BTCUSDT``.
        interval: bar length, e.g. ``1h`` (see ``schema.INTERVALS``).
        start: first open time wanted (naive = UTC).
        end: open times before this; None (or later than now) means up to now.
        market: ``spot`` or ``futures`` (USD-M).
        cache_dir: cache root; default ``paths.default_cache_dir()``.
        archive_url: base of the public data archive.
        rest_url: base of the REST API; default by market.
        progress: show a progress bar over the files.
        timeout: seconds per HTTP request.

    Returns:
        Canonical candle frame (OHLCV plus quote_volume, trades, taker_buy_volume,
        taker_buy_quote_volume, all float64).

    Raises:
        DataError: unparseable archive or REST content (names the file or URL and the row).
        DataSourceError: HTTP failure after retries, or a checksum mismatch.

    """
    if market not in MARKETS:
        raise DataSourceError(f"unknown Binance market {market!r}; use 'spot' or 'futures'")
    symbol = symbol.upper().replace("/", "")
    bar = interval_to_timedelta(interval)
    now = _utcnow()
    start = to_utc(start)
    end = now if end is None else min(to_utc(end), now)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = CandleCache(root / "binance" / market / symbol / interval)
    base = f"{archive_url.rstrip('/')}/data/{MARKETS[market]}"
    periods = _plan(start, end, now)
    frames: list[pd.DataFrame] = []
    missing: list[pd.Timestamp] = []
    with requests.Session() as session, Progress(transient=True, disable=not progress) as bar_ui:
        task = bar_ui.add_task(f"binance {market} {symbol} {interval}", total=len(periods))
        while periods:
            p = periods.pop(0)
            frame = cache.read(p.label)
            if frame is None:
                name = f"{symbol}-{interval}-{p.label}.zip"
                url = f"{base}/{p.kind}/klines/{symbol}/{interval}/{name}"
                frame = _fetch_zip(session, url, cache.directory / "_downloads" / name, timeout)
                if frame is None and p.kind == "monthly" and now - p.stop < _MONTHLY_GRACE:
                    days = _days(max(start, p.start), min(end, p.stop), now)
                    logger.debug("%s not published yet; trying %d daily zips", name, len(days))
                    periods[:0] = days
                    bar_ui.update(task, total=len(periods) + bar_ui.tasks[task].completed + 1)
                elif frame is None and p.kind == "daily":
                    logger.debug("%s not in the archive yet; the REST API covers it", name)
                    missing.append(p.start)
                else:  # an old month without a zip is a month without trading: cache it empty
                    frame = frame if frame is not None else _empty()
                    cache.write(p.label, frame)
                    for key in cache.keys(prefix=f"{p.label}-"):
                        cache.remove(key)  # a month's file supersedes its daily files
            if frame is not None:
                frames.append(frame)
            bar_ui.advance(task)
        covered = max((p.stop for p in _plan(start, end, now)), default=start)
        rest_from = max(start, min(missing, default=covered))
        if rest_from < end:
            host, path = REST[market]
            url = (rest_url or host).rstrip("/") + path
            params = {"symbol": symbol, "interval": interval, "limit": _REST_LIMIT}
            frames.append(_fetch_rest(session, url, params, rest_from, end, bar, timeout))
    return finalize(frames, start, end, bar, now)


def _plan(start: pd.Timestamp, end: pd.Timestamp, now: pd.Timestamp) -> list[_Period]:
    """Archive files covering ``[start, end)``: whole past months, then finished days."""
    periods: list[_Period] = []
    current = month_start(now)
    month = month_start(start)
    while month < end:
        stop = next_month(month)
        if stop <= current:
            periods.append(_Period("monthly", f"{month:%Y-%m}", month, stop))
        else:
            periods.extend(_days(max(start, month), min(end, stop), now))
        month = stop
    return periods


def _days(lo: pd.Timestamp, hi: pd.Timestamp, now: pd.Timestamp) -> list[_Period]:
    """Daily archive files for the finished days that overlap ``[lo, hi)``."""
    one = pd.Timedelta(days=1)
    days = pd.date_range(lo.normalize(), hi, freq="D", inclusive="left")
    return [_Period("daily", f"{d:%Y-%m-%d}", d, d + one) for d in days if d + one <= now]


def _get(
    session: requests.Session, url: str, accept: tuple[int, ...] = (), **kw: Any
) -> requests.Response | None:
    """GET (``kw`` as for ``requests``) with retries on connection errors, 429 and 5xx.

    Before a retry it waits what the server's ``Retry-After`` header asks (seconds or an HTTP
    date), else an exponential backoff; a ``Retry-After`` beyond :data:`RETRY_AFTER_MAX_S` is
    not waited out but raised at once.

    Returns None on 404 and raises DataSourceError on other 4xx (not in ``accept``), on a
    ``Retry-After`` too long to wait, or when every attempt failed.
    """
    shown = requests.Request("GET", url, params=kw.get("params")).prepare().url or url
    last = ""
    wait: float | None = None
    for attempt in range(_RETRIES):
        if attempt:
            time.sleep(wait if wait is not None else _BACKOFF_S * 2 ** (attempt - 1))
        wait = None
        try:
            resp = session.get(url, **kw)
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}: {exc}"
            logger.debug("GET %s attempt %d: %s", shown, attempt + 1, last)
            continue
        code = resp.status_code
        if code == 404:
            resp.close()
            return None
        if code == 429 or code >= 500:
            wait = _retry_after(resp)
            last = f"HTTP {code}" + (f" (Retry-After {wait:g} s)" if wait is not None else "")
            resp.close()
            if wait is not None and wait > RETRY_AFTER_MAX_S:
                raise DataSourceError(
                    f"GET {shown}: HTTP {code}, the server asks to retry after {wait:g} s, "
                    f"longer than the {RETRY_AFTER_MAX_S:g} s this client waits; try again later"
                )
            logger.debug("GET %s attempt %d: %s", shown, attempt + 1, last)
            continue
        if code >= 400 and code not in accept:
            after = resp.headers.get("Retry-After")
            hint = f" (Retry-After: {after})" if after else ""
            raise DataSourceError(f"GET {shown} failed: HTTP {code}{hint}: {resp.text[:300]}")
        return resp
    raise DataSourceError(f"GET {shown} failed after {_RETRIES} attempts: {last}")


def _retry_after(resp: requests.Response) -> float | None:
    """Seconds the response's ``Retry-After`` asks to wait (delta seconds or an HTTP date)."""
    value = resp.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            logger.debug("ignoring unparseable Retry-After %r", value)
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        seconds = (when - datetime.datetime.now(datetime.UTC)).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN: ignore


def download_file(
    session: requests.Session, url: str, dest: Path, *, timeout: float = 30.0
) -> bool:
    """Stream ``url`` to ``dest`` through ``dest.part``, resuming with a Range request on retry.

    Args:
        session: the HTTP session.
        url: what to download.
        dest: final path; written only once the download is complete.
        timeout: seconds per request.

    Returns:
        True when downloaded, False when the server answered 404.

    Raises:
        DataSourceError: HTTP failure, or the transfer broke off on every attempt.

    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last = ""
    for attempt in range(_RETRIES):
        if attempt:
            time.sleep(_BACKOFF_S * 2 ** (attempt - 1))
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else None
        resp = _get(session, url, (416,), headers=headers, stream=True, timeout=timeout)
        if resp is None:
            return False
        resumed = resp.status_code == 206
        if resp.status_code == 416 or (
            resumed and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-")
        ):
            resp.close()
            part.unlink(missing_ok=True)  # the partial file does not match the server's: restart
            last = f"HTTP {resp.status_code} to Range bytes={have}-"
            continue
        if have and not resumed:
            logger.debug("%s: server ignored the Range request; downloading from scratch", url)
        try:
            with resp, part.open("ab" if resumed else "wb") as fh:
                for chunk in resp.iter_content(_CHUNK):
                    fh.write(chunk)
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}: {exc}"
            logger.info("download of %s broke off (%s); resuming", url, last)
            continue
        os.replace(part, dest)
        return True
    raise DataSourceError(f"GET {url} failed after {_RETRIES} attempts: {last}")


def _fetch_zip(
    session: requests.Session, url: str, path: Path, timeout: float
) -> pd.DataFrame | None:
    """Download, verify and parse one archive zip (deleted afterwards); None on 404."""
    logger.info("downloading %s", url)
    if not download_file(session, url, path, timeout=timeout):
        return None
    try:
        _verify_checksum(session, url, path, timeout)
        return _parse_zip(path, url)
    finally:
        path.unlink(missing_ok=True)


def _verify_checksum(session: requests.Session, url: str, path: Path, timeout: float) -> None:
    resp = _get(session, url + ".CHECKSUM", timeout=timeout)
    if resp is None:
        logger.warning(
            "%s: the archive has no CHECKSUM file for it (%s.CHECKSUM answered 404); "
            "using it UNVERIFIED",
            path.name,
            url,
        )
        return
    words = resp.text.split()
    expected = words[0].lower() if words else ""
    with path.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256")
    if digest.hexdigest() != expected:
        path.unlink(missing_ok=True)
        raise DataSourceError(
            f"checksum mismatch for {path.name} ({url}): CHECKSUM says {expected or '<empty>'}, "
            f"the file hashes to {digest.hexdigest()}"
        )


def _parse_zip(path: Path, url: str) -> pd.DataFrame:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".csv")]
            if len(names) != 1:
                raise DataError(f"{url}: expected one CSV in the zip, found {names}")
            with zf.open(names[0]) as fh:
                raw = pd.read_csv(fh, header=None, dtype=str, keep_default_na=False)
    except (zipfile.BadZipFile, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{url}: unreadable archive: {exc}") from exc
    return _parse_rows(raw, f"{url} ({names[0]})", allow_header=True)


def _empty() -> pd.DataFrame:
    index = pd.DatetimeIndex([], tz="UTC", name="timestamp")
    return pd.DataFrame({name: [] for _, name in _COLUMNS}, index=index, dtype="float64")


def _parse_rows(raw: pd.DataFrame, source: str, allow_header: bool = False) -> pd.DataFrame:
    """Kline rows (12 columns, strings or numbers) -> candle frame; row numbers are 1-based."""
    first_line = 1
    if allow_header and len(raw) and pd.isna(pd.to_numeric(raw.iat[0, 0], errors="coerce")):
        raw, first_line = raw.iloc[1:], 2  # futures CSVs start with a header row
    if not len(raw):
        return _empty()
    if raw.shape[1] < 11:
        raise DataError(f"{source}: expected 12 kline columns, found {raw.shape[1]}")
    used = [0] + [i for i, _ in _COLUMNS]
    values = raw.iloc[:, used].apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any(axis=1).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        row = [raw.iat[i, j] for j in used[:6]]
        raise DataError(f"{source}: row {i + first_line}: unparseable kline values {row}")
    open_time = values.iloc[:, 0].to_numpy(dtype="int64")
    # Spot archives from 2025 on count microseconds, everything else milliseconds.
    open_ms = np.where(open_time > 10**14, open_time // 1000, open_time)
    index = pd.DatetimeIndex(pd.to_datetime(open_ms, unit="ms", utc=True), name="timestamp")
    data = {
        name: values.iloc[:, k + 1].to_numpy("float64") for k, (_, name) in enumerate(_COLUMNS)
    }
    return pd.DataFrame(data, index=index)


def _fetch_rest(
    session: requests.Session,
    url: str,
    params: dict[str, Any],
    lo: pd.Timestamp,
    hi: pd.Timestamp,
    bar: pd.Timedelta,
    timeout: float,
) -> pd.DataFrame:
    """Page through the klines endpoint (``params``: symbol, interval, limit) over ``[lo, hi)``."""
    frames: list[pd.DataFrame] = []
    since, stop, newest = to_ms(lo), to_ms(hi), -1
    step = int(bar / pd.Timedelta(milliseconds=1))
    while since < stop:
        params = {**params, "startTime": since, "endTime": stop - 1}
        resp = _get(session, url, params=params, timeout=timeout)
        if resp is None:
            raise DataSourceError(f"GET {url} answered 404 (params {params})")
        try:
            rows = resp.json()
        except ValueError as exc:
            raise DataError(f"{resp.url}: response is not JSON: {resp.text[:200]!r}") from exc
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise DataError(f"{resp.url}: expected a JSON list of klines, got {str(rows)[:200]}")
        if not rows:
            break
        page = _parse_rows(pd.DataFrame(rows), resp.url)
        top = to_ms(page.index.max())
        if top <= newest:
            break  # no progress: the server repeats itself
        frames.append(page)
        newest, since = top, top + step
    logger.debug("REST %s: %d pages from %s", url, len(frames), lo)
    return pd.concat(frames) if frames else _empty()
