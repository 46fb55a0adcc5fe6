"""Shared fixtures: seeded synthetic candles, hermetic cache and W&B directories."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cryptoforecast.data.synthetic import make_ohlcv


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tiny test nets run faster on one thread, and 2-core CI machines are shared with pytest."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _hermetic_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep caches and W&B files out of the user's home, and W&B offline."""
    root = tmp_path_factory.getbasetemp() / "env"
    for var in ("CRYPTOFORECAST_CACHE", "WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR"):
        path = root / var.lower()
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture
def candles() -> pd.DataFrame:
    """600 hourly bars of a seeded random walk."""
    return make_ohlcv(600, seed=7)


@pytest.fixture
def candles_csv(tmp_path: Path, candles: pd.DataFrame) -> Path:
    """The synthetic candles written as a CSV with ISO timestamps."""
    path = tmp_path / "candles.csv"
    out = candles.reset_index()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(path, index=False)
    return path
