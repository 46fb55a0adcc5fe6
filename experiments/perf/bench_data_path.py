"""Data path timing on the full bundled BTCUSDT 1h history, and training throughput.

Measures (median of --repeats, in a fresh process each stage is warm after the first call):
  1. load + quality checks of all ~72k bars (load_candles, data.days=null),
  2. all default features (conf/features/default.yaml) and the wavelet's share,
  3. targets + windows,
  4. training samples/s of the default model (attention_lstm, variant default) on real windows.

Usage: .venv/bin/python experiments/perf/bench_data_path.py [--repeats 3] [--train-batches 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from cryptoforecast.data.datamodule import ForecastDataModule, build_samples
from cryptoforecast.data.loader import DataSpec, load_candles
from cryptoforecast.data.splits import HoldoutSplit
from cryptoforecast.data.targets import TargetSpec
from cryptoforecast.features.wavelet import WaveletFeatures
from cryptoforecast.models.factory import build_model
from cryptoforecast.paths import CONF_DIR


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-batches", type=int, default=40)
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["paths.output_dir=/tmp/bench"])
    feature_set = instantiate(cfg.features)

    t_load, candles = timed(lambda: load_candles(DataSpec(days=None)), args.repeats)
    frame = candles.frame  # type: ignore[attr-defined]
    t_feat, _ = timed(lambda: feature_set.compute(frame), args.repeats)
    wavelet = next(t for t in feature_set.transforms if isinstance(t, WaveletFeatures))
    t_wav, _ = timed(lambda: wavelet(frame), args.repeats)
    target = TargetSpec()
    t_samples, samples = timed(lambda: build_samples(candles, feature_set, target), 1)

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"bars: {len(frame):,}  features: {feature_set.n_features}  "
        f"samples: {len(samples.windows):,}"
    )  # type: ignore[attr-defined]
    print(f"load + quality checks : {t_load:6.3f} s")
    print(
        f"default features      : {t_feat:6.3f} s  (wavelet {t_wav:.3f} s = "
        f"{100 * t_wav / t_feat:.0f}% of features)"
    )
    print(f"load + checks + features: {t_load + t_feat:6.3f} s (target < 3 s)")
    print(f"features+targets+windows (build_samples, once): {t_samples:6.3f} s")

    # Training throughput: the default model on the last year's real windows.
    L.seed_everything(0)
    year = load_candles(DataSpec(days=365), history_bars=feature_set.min_history)
    s = build_samples(year, feature_set, target)
    fold = HoldoutSplit().folds(s.windows.timestamps, s.step, target.reach)[0]
    dm = ForecastDataModule(s, fold, batch_size=cfg.datamodule.batch_size)
    model = build_model(cfg.model, s.n_features, 1)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=args.train_batches,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - start
    n = min(args.train_batches * cfg.datamodule.batch_size, len(fold.train))
    params = sum(p.numel() for p in model.parameters())
    print(
        f"attention_lstm/default ({params:,} params, L={feature_set.lookback}, "
        f"batch {cfg.datamodule.batch_size}): {n / seconds:,.0f} training samples/s "
        f"({n:,} samples in {seconds:.2f} s, incl. trainer start-up and one val batch)"
    )


if __name__ == "__main__":
    main()
