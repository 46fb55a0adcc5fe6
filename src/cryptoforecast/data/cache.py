"""A small parquet cache of canonical candle frames, and the helpers the downloaders share.

One parquet file per key (a month ``2024-11`` or a day ``2025-01-02``) under one folder per
source, symbol and interval. Writes are atomic (temporary file, then ``os.replace``), so a killed
process never leaves a half-written file that a later run would trust.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from cryptoforecast.data.schema import OHLCV, empty_candles

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class CandleCache:
    """Parquet files of candle frames, one per key, in ``directory``.

    Args:
        directory: folder of this cache; created on the first write.

    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        """The parquet file of ``key``."""
        return self.directory / f"{safe_name(key)}.parquet"

    def read(self, key: str) -> pd.DataFrame | None:
        """The cached frame of ``key``, or None when absent or unreadable (then removed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # a corrupt file must not block a re-download
            logger.warning("unreadable cache file %s (%s); removing it", path, exc)
            path.unlink(missing_ok=True)
            return None
        logger.debug("cache hit %s", path)
        return frame

    def write(self, key: str, frame: pd.DataFrame) -> Path:
        """Store ``frame`` under ``key`` atomically and return its path."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            frame.to_parquet(tmp, engine="pyarrow")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def remove(self, key: str) -> None:
        """Delete the file of ``key`` if there is one."""
        self.path(key).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> list[str]:
        """Sorted keys present in the cache that start with ``prefix``."""
        if not self.directory.is_dir():
            return []
        found = (p.stem for p in self.directory.glob("*.parquet"))
        return sorted(k for k in found if k.startswith(prefix))


def safe_name(name: str) -> str:
    """``name`` made safe as one path component (``BTC/USDT:USDT`` -> ``BTC-USDT-USDT``)."""
    cleaned = _UNSAFE.sub("-", name).strip("-.")
    if not cleaned:
        raise ValueError(f"cannot make a file name from {name!r}")
    return cleaned


def to_utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    """``ts`` as a UTC timestamp; a naive one is taken to be UTC already."""
    out = pd.Timestamp(ts)
    return out.tz_localize("UTC") if out.tzinfo is None else out.tz_convert("UTC")


def month_start(ts: pd.Timestamp) -> pd.Timestamp:
    """Midnight UTC of the first day of the month holding ``ts``."""
    return to_utc(ts).normalize().replace(day=1)


def next_month(ts: pd.Timestamp) -> pd.Timestamp:
    """The first day of the month after the one holding ``ts``."""
    return month_start(ts) + pd.offsets.MonthBegin(1)


def to_ms(ts: pd.Timestamp) -> int:
    """Milliseconds since the epoch of ``ts``."""
    return int(to_utc(ts).value // 1_000_000)


def finalize(
    frames: Iterable[pd.DataFrame],
    start: pd.Timestamp,
    end: pd.Timestamp,
    bar: pd.Timedelta,
    now: pd.Timestamp,
) -> pd.DataFrame:
    """Join pieces into one canonical candle frame of the closed bars opening in ``[start, end)``.

    Earlier pieces win where pieces overlap (the archive before the REST tail).

    Args:
        frames: candle frames with UTC ``timestamp`` indexes, in order of preference.
        start: first open time to keep.
        end: open times must be before this.
        bar: bar length; a bar is closed once ``open + bar <= now``.
        now: the current time.

    Returns:
        Sorted, unique, float64 candle frame (OHLCV first, extra columns after).

    """
    parts = [f for f in frames if len(f)]
    frame = pd.concat(parts).sort_index(kind="stable") if parts else empty_candles()
    frame = frame[~frame.index.duplicated(keep="first")]
    idx = frame.index
    frame = frame[(idx >= start) & (idx < end) & (idx + bar <= now)]
    extra = [c for c in frame.columns if c not in OHLCV]
    frame = frame[[*OHLCV, *extra]].astype("float64")
    frame.index = pd.DatetimeIndex(frame.index, name="timestamp").as_unit("ns")
    return frame
