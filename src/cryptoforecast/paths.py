"""Project locations computed from this file (no rootutils, no marker files)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# src/cryptoforecast -> src -> repository root (valid for the editable install used here)
PROJECT_ROOT = PACKAGE_DIR.parent.parent
CONF_DIR = PROJECT_ROOT / "conf"
BUNDLED_DATA_DIR = PACKAGE_DIR / "data" / "bundled"


def default_cache_dir() -> Path:
    """Where downloaded candles are cached: $CRYPTOFORECAST_CACHE or ~/.cache/cryptoforecast."""
    env = os.environ.get("CRYPTOFORECAST_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "cryptoforecast"
