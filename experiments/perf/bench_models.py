"""Training speed of every model on the same real windows, and the report's two speed claims.

For each torch net (default variant unless given): parameter count and training samples/s over
timed epochs (the first epoch is a warm-up and not timed; no validation inside the timing). Then
the full fit to early stopping on the same holdout split for lstm and lightgbm (the fair reading of
"LightGBM trains 10-100x faster than LSTM"), and TCN vs LSTM at the defaults and at matched
parameter counts ("TCN trains 3-5x faster than LSTM").

Data: the last 365 days of bundled BTCUSDT 1h, default features (34), lookback 64 for every
model (same windows); TCN also at its own default lookback 128.

Usage: .venv/bin/python experiments/perf/bench_models.py [--epochs 3] [--models lstm,tcn,...]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from cryptoforecast.data.datamodule import ForecastDataModule, SampleSet, build_samples
from cryptoforecast.data.loader import DataSpec, load_candles
from cryptoforecast.data.splits import HoldoutSplit
from cryptoforecast.data.targets import TargetSpec
from cryptoforecast.models.factory import build_model, known_models
from cryptoforecast.paths import CONF_DIR
from cryptoforecast.pipelines.train import run


class EpochTimer(L.Callback):
    """Wall time of each training epoch."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.times.append(time.perf_counter() - self._t)


def config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=["paths.output_dir=/tmp/bench", *overrides])


def samples_for(lookback: int) -> SampleSet:
    cfg = config(f"features.lookback={lookback}")
    fs = instantiate(cfg.features)
    candles = load_candles(DataSpec(days=365), history_bars=fs.min_history)
    return build_samples(candles, fs, TargetSpec())


def throughput(model: str, variant: str, samples: SampleSet, epochs: int) -> tuple[int, float]:
    cfg = config(f"model={model}", f"model.variant={variant}", "model.module.scheduler=null")
    L.seed_everything(0, verbose=False)
    fold = HoldoutSplit().folds(samples.windows.timestamps, samples.step, 2)[0]
    dm = ForecastDataModule(samples, fold, batch_size=256)
    lit = build_model(cfg.model, samples.n_features, 1)
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=epochs + 1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(lit, datamodule=dm)
    per_epoch = sorted(timer.times[1:])[len(timer.times[1:]) // 2]  # median of timed epochs
    return sum(p.numel() for p in lit.parameters()), len(fold.train) / per_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per net")
    parser.add_argument("--models", default=None, help="comma list (default: all torch nets)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(os.cpu_count() or 1)
    nets = [m for m in known_models() if m not in ("naive", "lightgbm")]
    nets = args.models.split(",") if args.models else nets
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; last 365 days BTCUSDT 1h, 34 features, batch 256"
    )
    s64 = samples_for(64)
    rows: dict[str, tuple[int, float]] = {}
    print(f"{'model':<28}{'params':>10}{'samples/s':>12}")
    for net in nets:
        rows[net] = throughput(net, "default", s64, args.epochs)
        print(f"{net + ' (L=64)':<28}{rows[net][0]:>10,}{rows[net][1]:>12,.0f}")
    for net in ("tcn", "lstm"):
        if net in nets:
            rows[f"{net}/matched"] = throughput(net, "matched", s64, args.epochs)
            p, sps = rows[f"{net}/matched"]
            print(f"{net + '/matched (L=64)':<28}{p:>10,}{sps:>12,.0f}")
    if "tcn" in nets:
        rows["tcn@128"] = throughput("tcn", "default", samples_for(128), args.epochs)
        print(
            f"{'tcn (L=128, its default)':<28}"
            f"{rows['tcn@128'][0]:>10,}{rows['tcn@128'][1]:>12,.0f}"
        )
    if "tcn" in rows and "lstm" in rows:
        print(f"TCN/LSTM samples/s at defaults (L=64): {rows['tcn'][1] / rows['lstm'][1]:.2f}x")
        print(
            f"TCN/LSTM samples/s at matched params: "
            f"{rows['tcn/matched'][1] / rows['lstm/matched'][1]:.2f}x "
            f"({rows['tcn/matched'][0]:,} vs {rows['lstm/matched'][0]:,} params)"
        )
    # Full fits to early stopping on the same split: what a user waits for.
    fits = {}
    for model in ("lstm", "lightgbm"):
        m = run(
            config(
                f"model={model}",
                "logger=none",
                "callbacks.progress_bar=null",
                f"paths.output_dir=/tmp/bench/{model}",
            )
        )
        fits[model] = m["ops/train_seconds"]
        print(
            f"full fit to early stopping, {model}: {fits[model]:.1f} s "
            f"(test RMSE {m['test/rmse']:.2f} vs zero-return {m['baseline/rmse']:.2f})"
        )
    print(f"LSTM/LightGBM fit time: {fits['lstm'] / fits['lightgbm']:.1f}x")


if __name__ == "__main__":
    main()
