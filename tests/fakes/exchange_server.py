"""A local stand-in for Binance's public data archive and REST API, for tests only.

It serves, from seeded synthetic candles, exactly what the real endpoints serve:

- ``/data/spot/{monthly,daily}/klines/{SYM}/{iv}/{SYM}-{iv}-{period}.zip`` (futures under
  ``/data/futures/um``): one CSV of 12 columns, without header (spot) or with the header row
  (futures); spot files for periods from 2025-01-01 on count microseconds, all others
  milliseconds.
- ``<zip>.CHECKSUM``: ``<sha256>  <zip name>\\n``.
- ``/api/v3/klines`` and ``/fapi/v1/klines``: JSON lists of 12-element lists in milliseconds,
  including the bar still forming at ``now``.
- ``/api/v3/exchangeInfo``, ``/fapi/v1/exchangeInfo``, ``/dapi/v1/exchangeInfo`` for ccxt.

Faults for tests: ``missing`` (404), ``fail`` (persistent status), ``throttle`` (the first N
requests under a path prefix get 429 with a ``Retry-After`` header), ``drop_once`` (send half the
body, then close), ``bad_checksum``, ``no_checksum``, ``honor_range``, ``rest_max_limit``,
``rest_ignore_start``; ``files`` may be pre-filled with a crafted zip for a path.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)
STEPS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000,
         "1d": 86_400_000}  # fmt: skip
MICROS_FROM = pd.Timestamp("2025-01-01", tz="UTC")
MARKET_DIRS = {"spot": "spot", "futures": "futures/um"}
REST_PATHS = {"/api/v3/klines": "spot", "/fapi/v1/klines": "futures"}


def synthetic_klines(seed: int, open_ms: np.ndarray, step_ms: int) -> list[list[Any]]:
    """Deterministic klines in Binance's REST shape (prices as 8-decimal strings).

    Each field has its own random stream, so a longer span starts with the same bars (two fakes
    with different ``now`` agree on the bars they share).
    """
    n = len(open_ms)
    streams = [np.random.default_rng([seed, k]) for k in range(5)]
    close = np.round(20_000 * np.exp(np.cumsum(streams[0].normal(0, 0.004, n))), 2)
    open_ = np.round(np.r_[close[:1], close[:-1]], 2)
    high = np.round(np.maximum(open_, close) * (1 + streams[1].uniform(0, 0.003, n)), 2)
    low = np.round(np.minimum(open_, close) * (1 - streams[2].uniform(0, 0.003, n)), 2)
    volume = np.round(streams[3].uniform(1, 100, n), 5)
    trades = streams[4].integers(100, 5000, n)
    rows = []
    for i in range(n):
        quote = round(volume[i] * close[i], 4)
        rows.append([
            int(open_ms[i]), f"{open_[i]:.8f}", f"{high[i]:.8f}", f"{low[i]:.8f}",
            f"{close[i]:.8f}", f"{volume[i]:.8f}", int(open_ms[i] + step_ms - 1), f"{quote:.8f}",
            int(trades[i]), f"{volume[i] / 2:.8f}", f"{quote / 2:.8f}", "0",
        ])  # fmt: skip
    return rows


def klines_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """The candle frame a correct client must produce from ``rows``."""
    index = pd.DatetimeIndex(
        pd.to_datetime([r[0] for r in rows], unit="ms", utc=True), name="timestamp"
    ).as_unit("ns")
    cols = {"open": 1, "high": 2, "low": 3, "close": 4, "volume": 5, "quote_volume": 7,
            "trades": 8, "taker_buy_volume": 9, "taker_buy_quote_volume": 10}  # fmt: skip
    return pd.DataFrame(
        {name: [float(r[j]) for r in rows] for name, j in cols.items()}, index=index
    )


@dataclass
class Request:
    """One request as the fake saw it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeBinance:
    """Binance archive + REST on 127.0.0.1; use as a context manager.

    ``now`` fixes which files exist (a period's file appears ``delay`` after the period ends) and
    the last REST bar (the one forming at ``now``). Bars start at ``listing``.
    """

    now: pd.Timestamp
    listing: pd.Timestamp = pd.Timestamp("2024-10-01", tz="UTC")
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    delay: pd.Timedelta = pd.Timedelta(days=1)
    seed: int = 7
    rest_max_limit: int = 1000
    honor_range: bool = True
    missing: set[str] = field(default_factory=set)
    fail: dict[str, int] = field(default_factory=dict)  # path prefix -> status
    # path prefix -> (requests answered 429, their Retry-After header value)
    throttle: dict[str, tuple[int, str]] = field(default_factory=dict)
    drop_once: set[str] = field(default_factory=set)
    bad_checksum: set[str] = field(default_factory=set)
    no_checksum: bool = False
    rest_ignore_start: bool = False
    requests: list[Request] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str, str], list[list[Any]]] = {}
        self._server: ThreadingHTTPServer | None = None

    # ---- data --------------------------------------------------------------------------------
    def rows(self, market: str, symbol: str, interval: str) -> list[list[Any]]:
        """All bars from ``listing`` to the one forming at ``now``, in REST shape."""
        key = (market, symbol, interval)
        with self._lock:
            if key not in self._rows:
                step = STEPS[interval]
                lo = self.listing.value // 1_000_000
                opens = np.arange(lo, self.now.value // 1_000_000 + 1, step)
                opens = opens[opens <= self.now.value // 1_000_000]
                seed = self.seed ^ zlib.crc32("/".join(key).encode())
                self._rows[key] = synthetic_klines(seed, opens, step)
            return self._rows[key]

    def truth(self, market: str, symbol: str, interval: str) -> pd.DataFrame:
        """Every bar the fake knows (closed or not), as the expected candle frame."""
        return klines_frame(self.rows(market, symbol, interval))

    def archive_zip(
        self, market: str, kind: str, symbol: str, interval: str, period: str
    ) -> bytes:
        """The zip the archive serves for one period (built on first use, then fixed)."""
        name = f"{symbol}-{interval}-{period}"
        path = f"/data/{MARKET_DIRS[market]}/{kind}/klines/{symbol}/{interval}/{name}.zip"
        if path in self.files:
            return self.files[path]
        lo = pd.Timestamp(period, tz="UTC")
        hi = lo + (pd.offsets.MonthBegin(1) if kind == "monthly" else pd.Timedelta(days=1))
        lo_ms, hi_ms = lo.value // 1_000_000, hi.value // 1_000_000
        scale = 1000 if market == "spot" and lo >= MICROS_FROM else 1
        lines = [HEADER] if market == "futures" else []
        for r in self.rows(market, symbol, interval):
            if lo_ms <= r[0] < hi_ms:
                vals = [r[0] * scale, *r[1:6], (r[6] + 1) * scale - 1, *r[7:]]
                lines.append(",".join(str(v) for v in vals))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(
                zipfile.ZipInfo(f"{name}.csv", (2025, 1, 1, 0, 0, 0)), "\n".join(lines) + "\n"
            )
        self.files[path] = buf.getvalue()
        return self.files[path]

    # ---- server ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        assert self._server is not None, "use FakeBinance as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def paths(self, prefix: str = "") -> list[str]:
        """Paths requested so far that start with ``prefix``."""
        with self._lock:
            return [r.path for r in self.requests if r.path.startswith(prefix)]

    def __enter__(self) -> FakeBinance:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        with self._lock:
            first = not any(r.path == path for r in self.requests)
            self.requests.append(Request(path, query, dict(h.headers.items())))
        for prefix, status in self.fail.items():
            if path.startswith(prefix):
                return _send(h, status, b"<html>Internal Server Error</html>", "text/html")
        for prefix, (count, after) in self.throttle.items():
            if path.startswith(prefix) and count > 0:
                with self._lock:
                    self.throttle[prefix] = (count - 1, after)
                body = b'{"code":-1003,"msg":"Too many requests."}'
                return _send(h, 429, body, extra={"Retry-After": after})
        if path in REST_PATHS:
            return self._klines(h, REST_PATHS[path], query)
        if path.endswith("/exchangeInfo"):
            return _send(h, 200, json.dumps(self._exchange_info(path)).encode())
        body = self._archive(path)
        if body is None:
            return _send(h, 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        if path.endswith(".zip") and path in self.drop_once and first:
            h.send_response(200)
            h.send_header("Content-Type", "application/zip")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return None
        rng = h.headers.get("Range", "")
        if rng.startswith("bytes=") and self.honor_range:
            offset = int(rng[6:].split("-")[0])
            if offset >= len(body):
                return _send(h, 416, b"")
            extra = {"Content-Range": f"bytes {offset}-{len(body) - 1}/{len(body)}"}
            return _send(h, 206, body[offset:], "application/zip", extra)
        return _send(h, 200, body, "application/zip" if path.endswith(".zip") else "text/plain")

    def _archive(self, path: str) -> bytes | None:
        """Body of an archive path, or None when the real archive would answer 404."""
        if path in self.missing or path.removesuffix(".CHECKSUM") in self.missing:
            return None
        checksum = path.endswith(".zip.CHECKSUM")
        zip_path = path.removesuffix(".CHECKSUM")
        parts = zip_path.split("/")  # '', data, spot|futures, [um], kind, klines, SYM, iv, file
        market = "futures" if parts[2] == "futures" else "spot"
        parts = parts[:3] + parts[4:] if market == "futures" else parts
        if len(parts) != 8 or parts[1] != "data" or parts[4] != "klines":
            return None
        kind, symbol, interval, name = parts[3], parts[5], parts[6], parts[7]
        period = name.removeprefix(f"{symbol}-{interval}-").removesuffix(".zip")
        if symbol not in self.symbols or interval not in STEPS or kind not in ("monthly", "daily"):
            return None
        try:
            lo = pd.Timestamp(period, tz="UTC")
        except ValueError:
            return None
        hi = lo + (pd.offsets.MonthBegin(1) if kind == "monthly" else pd.Timedelta(days=1))
        if hi + self.delay > self.now or hi <= self.listing:
            return None
        body = self.archive_zip(market, kind, symbol, interval, period)
        if not checksum:
            return body
        if self.no_checksum:
            return None
        digest = hashlib.sha256(body).hexdigest()
        if zip_path in self.bad_checksum:
            digest = hashlib.sha256(body + b"x").hexdigest()
        return f"{digest}  {name}\n".encode()

    def _klines(self, h: BaseHTTPRequestHandler, market: str, q: dict[str, str]) -> None:
        if q.get("symbol") not in self.symbols:
            return _send(h, 400, b'{"code":-1121,"msg":"Invalid symbol."}')
        if q.get("interval") not in STEPS:
            return _send(h, 400, b'{"code":-1120,"msg":"Invalid interval."}')
        limit = min(int(q.get("limit", 500)), self.rest_max_limit)
        rows = self.rows(market, q["symbol"], q["interval"])
        if self.rest_ignore_start:  # a misbehaving server: always the same first page
            return _send(h, 200, json.dumps(rows[:limit]).encode())
        lo, hi = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
        sel = [r for r in rows if lo <= r[0] <= hi]
        sel = sel[:limit] if "startTime" in q else sel[-limit:]
        return _send(h, 200, json.dumps(sel).encode())

    def _exchange_info(self, path: str) -> dict[str, Any]:
        info: dict[str, Any] = {
            "timezone": "UTC",
            "serverTime": self.now.value // 1_000_000,
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": [],
        }
        if path.startswith("/api/v3/"):
            info["symbols"] = [_spot_symbol(s) for s in self.symbols]
        return info


def _spot_symbol(symbol: str) -> dict[str, Any]:
    base, quote = symbol[:-4], symbol[-4:]
    return {
        "symbol": symbol, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
        "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": True,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
             "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
             "stepSize": "0.00001000"},
        ],
        "permissions": [], "permissionSets": [["SPOT", "MARGIN"]],
    }  # fmt: skip


def _send(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    ctype: str = "application/json",
    extra: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    for k, v in (extra or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(body)
