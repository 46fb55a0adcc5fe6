"""Time every feature transform on the full bundled BTCUSDT 1h history (median of repeats).

Usage: .venv/bin/python experiments/perf/bench_features.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.paths import BUNDLED_DATA_DIR, CONF_DIR


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def feature_set(name: str) -> FeatureSet:
    """``conf/features/<name>.yaml`` composed as train.py does (lgbm extends default)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return instantiate(compose(config_name="train", overrides=[f"features={name}"]).features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    path = BUNDLED_DATA_DIR / "binance_spot_BTCUSDT_1h.csv.gz"
    candles = pd.read_csv(path, parse_dates=["timestamp"], index_col="timestamp").astype(
        np.float64
    )
    print(
        f"{path.name}: {len(candles):,} bars; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; median of {args.repeats}"
    )

    lgbm = feature_set("lgbm")
    print(f"\n{'transform':<78} {'cols':>4} {'warmup':>6} {'ms':>8}")
    for t in lgbm.transforms:
        ms = 1e3 * median_seconds(lambda t=t: t(candles), args.repeats)
        print(f"{t!r:<78} {len(t.names()):>4} {t.warmup:>6} {ms:>8.1f}")

    print(f"\n{'FeatureSet.compute':<78} {'cols':>4} {'warmup':>6} {'ms':>8}")
    for name in ("minimal", "default", "lgbm"):
        fs = feature_set(name)
        ms = 1e3 * median_seconds(lambda fs=fs: fs.compute(candles), args.repeats)
        print(
            f"{'conf/features/' + name + '.yaml':<78} {fs.n_features:>4} {fs.warmup:>6} {ms:>8.1f}"
        )


if __name__ == "__main__":
    main()
