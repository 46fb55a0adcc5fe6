"""``load_candles``: one entry point for every candle source, with quality checks on each load."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from cryptoforecast.data.quality import QualityPolicy, QualityReport, check_candles, describe
from cryptoforecast.data.resample import resample_candles
from cryptoforecast.data.schema import DataError, interval_to_timedelta
from cryptoforecast.data.sources import bundled_path, read_candle_file

log = logging.getLogger(__name__)

SOURCES = ("bundled", "file", "binance", "ccxt")
MARKETS = ("spot", "futures")


@dataclass(frozen=True)
class DataSpec:
    """Which candles to load. Built from ``conf/data/*.yaml`` via ``_target_``.

    Args:
        source: ``bundled`` (default, no network), ``file``, ``binance`` or ``ccxt``.
        symbol: e.g. ``BTCUSDT`` (ccxt takes ``BTC/USDT`` too).
        interval: bar length; bundled and file data at 1h are resampled for 4h/1d.
        days: keep the last N days of the available history (None: all).
        start: inclusive first bar open time (ISO, UTC), or None.
        end: exclusive end (ISO, UTC), or None.
        path: the file for ``source=file``.
        market: ``spot`` or ``futures`` (USD-M perpetual) for bundled and binance.
        exchange: ccxt exchange id for ``source=ccxt``.
        native_interval: the interval stored in the source (``file``/``bundled``: 1h).
        cache_dir: cache folder for downloads (None: ``~/.cache/cryptoforecast``).
        quality: the repair policy (``data.quality``: sort, drop_exact_duplicates, spike_z,
            off_grid).
        symbols: several symbols for one multi-asset run (e.g. ``[BTCUSDT, ETHUSDT]``), each
            loaded with this spec otherwise; None (default) for a single-symbol run. ``symbol``
            must then be one of them (it selects nothing else; the default ``BTCUSDT`` fits any
            list holding BTCUSDT), so ``data.symbol=X data.symbols=[...]`` without X fails
            instead of being silently ignored. At least two distinct symbols; not with
            ``source=file`` (one path holds one symbol).

    """

    source: str = "bundled"
    symbol: str = "BTCUSDT"
    interval: str = "1h"
    days: float | None = 365
    start: str | None = None
    end: str | None = None
    path: str | None = None
    market: str = "spot"
    exchange: str = "binance"
    native_interval: str = "1h"
    cache_dir: str | None = None
    quality: QualityPolicy = field(default_factory=QualityPolicy)
    symbols: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise DataError(f"data.source={self.source!r}; choose one of {', '.join(SOURCES)}")
        if self.market not in MARKETS:
            raise DataError(f"data.market={self.market!r}; choose one of {', '.join(MARKETS)}")
        if self.source == "file" and not self.path:
            raise DataError(
                "data=file needs data.path: data=file data.path=/path/to/candles.csv "
                "(CSV, CSV.gz or parquet with timestamp, open, high, low, close, volume)"
            )
        if self.days is not None and self.days <= 0:
            raise DataError(f"data.days must be positive, got {self.days}")
        interval_to_timedelta(self.interval)
        if not isinstance(self.quality, QualityPolicy):  # Hydra passes a dict or DictConfig
            object.__setattr__(self, "quality", _quality_policy(self.quality))
        if self.symbols is not None:
            object.__setattr__(self, "symbols", _check_symbols(self))

    def per_symbol(self) -> list[DataSpec]:
        """One single-symbol spec per symbol (``[self]`` for a single-symbol spec).

        Bundled symbols are all checked before any is loaded, so an unknown one fails at once
        (the message lists the bundled files).
        """
        if self.symbols is None:
            return [self]
        specs = [replace(self, symbol=s, symbols=None) for s in self.symbols]
        if self.source == "bundled":
            for spec in specs:
                bundled_path(spec.symbol, spec.market, spec.native_interval)
        return specs


def _quality_policy(given: Any) -> QualityPolicy:
    """``data.quality`` (a mapping) as a :class:`QualityPolicy`; unknown keys are a DataError."""
    if not isinstance(given, Mapping):
        raise DataError(f"data.quality must be a mapping of policy keys, got {given!r}")
    known = {f.name for f in fields(QualityPolicy)}
    unknown = sorted(str(k) for k in given if k not in known)
    if unknown:
        raise DataError(f"data.quality: unknown key(s) {unknown}; known: {sorted(known)}")
    return QualityPolicy(**{str(k): v for k, v in given.items()})


def _check_symbols(spec: DataSpec) -> tuple[str, ...]:
    """``spec.symbols`` as a tuple of strings, or a DataError naming the contradiction."""
    given = spec.symbols
    if isinstance(given, str) or not isinstance(given, Sequence):
        raise DataError(f"data.symbols must be a list like [BTCUSDT,ETHUSDT], got {given!r}")
    symbols = tuple(str(s) for s in given)
    if len(symbols) < 2:
        raise DataError(
            f"data.symbols={list(symbols)} lists fewer than 2 symbols; for one symbol use "
            "data.symbol=... and leave data.symbols=null"
        )
    upper = [s.upper() for s in symbols]
    duplicates = sorted({s for s in upper if upper.count(s) > 1})
    if duplicates:
        raise DataError(f"data.symbols={list(symbols)} repeats {duplicates}")
    if spec.symbol.upper() not in upper:
        raise DataError(
            f"data.symbol={spec.symbol} is not in data.symbols={list(symbols)}; with "
            f"data.symbols set, data.symbol must name one of them (e.g. data.symbol={symbols[0]})"
        )
    if spec.source == "file":
        raise DataError(
            "data.symbols needs a source with per-symbol data (bundled, binance, ccxt); "
            "source=file reads the one file data.path"
        )
    return symbols


@dataclass
class Candles:
    """Loaded candles and what the checks found.

    ``frame`` holds ``history_bars`` extra bars (when the source has them) before
    ``sample_start``, the first bar of the requested span, so features can warm up on real history
    instead of eating into the requested days.
    """

    frame: pd.DataFrame
    report: QualityReport
    sample_start: pd.Timestamp
    spec: DataSpec


def load_candles(spec: DataSpec, history_bars: int = 0) -> Candles:
    """Load, check and slice candles as ``spec`` says.

    Args:
        spec: what to load.
        history_bars: bars of extra history wanted before the requested span (feature warm-up).

    Returns:
        :class:`Candles`. The report describes the loaded frame, with duplicate and sorting
        counts from the whole source.

    Raises:
        DataError: bad data (named file, row, timestamp, value) or an empty selection.

    """
    step = interval_to_timedelta(spec.interval)
    native, source_name = _read_native(spec, history_bars, step)
    frame, report = check_candles(native, source_name, spec.native_interval, spec.quality)
    report.raise_for_errors()
    frame = resample_candles(frame, spec.interval, spec.native_interval)
    if frame.empty:
        raise DataError(f"{source_name}: no candles")
    end = pd.Timestamp(spec.end, tz="UTC") if spec.end else frame.index[-1] + step
    start = pd.Timestamp(spec.start, tz="UTC") if spec.start else frame.index[0]
    if spec.days is not None:
        wanted = end - pd.Timedelta(days=spec.days)
        if wanted < frame.index[0] and not spec.start:
            have = (end - frame.index[0]) / pd.Timedelta(days=1)
            log.warning(
                "data.days=%g asks for more history than %s holds: %.1f days (%s -> %s); the "
                "run uses all of it, and its first %d bars only warm up the features "
                "(set data.days=%d or less to silence this)",
                spec.days,
                source_name,
                have,
                frame.index[0],
                frame.index[-1],
                history_bars,
                int(have - history_bars * step / pd.Timedelta(days=1)),
            )
        start = max(start, wanted)
    frame = frame[frame.index < end]
    in_span = frame.index >= start
    if not in_span.any():
        raise DataError(
            f"{source_name}: no candles between {start} and {end} "
            f"(the data spans {report.start} to {report.end})"
        )
    first = int(in_span.argmax())
    frame = frame.iloc[max(0, first - history_bars) :]
    if first < history_bars:
        log.warning(
            "%s: only %d of the %d warm-up bars requested exist before %s",
            source_name,
            first,
            history_bars,
            frame.index[first] if len(frame) else start,
        )
    loaded = QualityReport(
        source=source_name,
        interval=spec.interval,
        duplicates_dropped=report.duplicates_dropped,
        unsorted_rows=report.unsorted_rows,
        warnings=[w for w in report.warnings if "duplicate" in w or "order" in w],
    )
    describe(frame, loaded, step, spec.quality.spike_z)
    sample_start = frame.index[min(first, history_bars)]
    for warning in loaded.warnings:
        log.warning("%s: %s", source_name, warning)
    log.info(
        "loaded %s %s %s: %d bars %s -> %s (%d warm-up bars before %s), %d gap(s)",
        spec.source,
        spec.symbol,
        spec.interval,
        len(frame),
        loaded.start,
        loaded.end,
        min(first, history_bars),
        sample_start,
        len(loaded.gaps),
    )
    return Candles(frame=frame, report=loaded, sample_start=sample_start, spec=spec)


def _read_native(
    spec: DataSpec, history_bars: int, step: pd.Timedelta
) -> tuple[pd.DataFrame, str]:
    """Raw frame at the native interval (RangeIndex + ``timestamp`` column) and its name."""
    if spec.source == "bundled":
        path = bundled_path(spec.symbol, spec.market, spec.native_interval)
        return read_candle_file(path), f"bundled:{path.name}"
    if spec.source == "file":
        path = Path(str(spec.path)).expanduser()
        return read_candle_file(path), str(path)
    # Network sources: ask only for what is needed (span + warm-up history).
    end = pd.Timestamp(spec.end, tz="UTC") if spec.end else None
    if spec.start:
        start = pd.Timestamp(spec.start, tz="UTC")
    elif spec.days is not None:
        start = (end or pd.Timestamp.now(tz="UTC").floor(step)) - pd.Timedelta(days=spec.days)
    else:
        raise DataError(f"data.source={spec.source} needs data.days or data.start")
    start = start - history_bars * step
    cache = Path(spec.cache_dir).expanduser() if spec.cache_dir else None
    if spec.source == "binance":
        from cryptoforecast.data.binance import fetch_binance

        # Mirrors (and the tests' local fake exchange) are reached through these variables.
        urls = {
            "archive_url": os.environ.get("CRYPTOFORECAST_BINANCE_ARCHIVE_URL"),
            "rest_url": os.environ.get("CRYPTOFORECAST_BINANCE_REST_URL"),
        }
        frame = fetch_binance(
            spec.symbol,
            spec.native_interval,
            start,
            end,
            market=spec.market,
            cache_dir=cache,
            progress=True,
            **{k: v for k, v in urls.items() if v},
        )
        name = f"binance:{spec.market}:{spec.symbol}:{spec.native_interval}"
    else:
        from cryptoforecast.data.ccxt_source import fetch_ccxt

        frame = fetch_ccxt(
            spec.exchange,
            spec.symbol,
            spec.native_interval,
            start,
            end,
            cache_dir=cache,
            progress=True,
        )
        name = f"ccxt:{spec.exchange}:{spec.symbol}:{spec.native_interval}"
    return frame.reset_index(), name
