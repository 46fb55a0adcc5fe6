"""Lightning training behind the ``Forecaster`` interface (used for every torch net)."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from cryptoforecast.data.datamodule import ForecastDataModule, SampleSet
from cryptoforecast.data.dataset import WindowDataset
from cryptoforecast.data.splits import Fold
from cryptoforecast.models.lit_forecaster import LitForecaster

log = logging.getLogger(__name__)


class EpochSeed(L.Callback):
    """Reseed all RNGs at each epoch start from (seed, epoch).

    Shuffling and dropout then depend only on the epoch, not on what ran before, so a run resumed
    from a checkpoint after epoch k replays epochs k+1.. exactly like an uninterrupted run.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Seed python, numpy and torch for this epoch."""
        s = self.seed + 1000 * trainer.current_epoch
        random.seed(s)
        np.random.seed(s % 2**32)
        torch.manual_seed(s)


class TorchForecaster:
    """Fit a fresh ``LitForecaster`` per fold with a fresh train-only scaler; predict any samples.

    Args:
        make_module: builds a new LitForecaster for ``n_features`` inputs and ``n_outputs``.
        make_trainer: builds a Trainer given callbacks, loggers and the fold's output folder.
        make_callbacks: builds fresh callbacks for the fold's output folder.
        make_loggers: builds fresh loggers for the fold's output folder.
        datamodule: keyword arguments of :class:`ForecastDataModule` (batch size, scaler, ...).
        seed: base seed for :class:`EpochSeed`.
        ckpt_path: checkpoint to resume training from, or None.
    """

    def __init__(
        self,
        make_module: Callable[[int, int], LitForecaster],
        make_trainer: Callable[[list[L.Callback], list[Any], Path], L.Trainer],
        make_callbacks: Callable[[Path], list[L.Callback]],
        make_loggers: Callable[[Path], list[Any]],
        datamodule: dict[str, Any],
        seed: int = 42,
        ckpt_path: str | None = None,
    ) -> None:
        self.make_module, self.make_trainer = make_module, make_trainer
        self.make_callbacks, self.make_loggers = make_callbacks, make_loggers
        self.datamodule_kwargs, self.seed, self.ckpt_path = datamodule, seed, ckpt_path
        self.module: LitForecaster | None = None
        self.dm: ForecastDataModule | None = None

    def fit(self, samples: SampleSet, fold: Fold, out_dir: Path) -> dict[str, float]:
        """Train on ``fold.train``, early-stop on ``fold.val``, restore the best weights.

        Returns:
            ``ops/train_seconds``, ``ops/params``, ``ops/epochs`` (epochs run),
            ``val/loss_best`` and, with a checkpoint callback, ``train/best_epoch`` (the epoch
            whose weights were restored, 1 = the first) and ``train/epochs`` (epochs run).
        """
        out_dir.mkdir(parents=True, exist_ok=True)
        self.dm = ForecastDataModule(samples, fold, **self.datamodule_kwargs)
        self.dm.setup("fit")
        (out_dir / "scaler.json").write_text(json.dumps(self.dm.state(), indent=1) + "\n")
        self.module = self.make_module(samples.n_features, len(samples.target.horizons))
        rf = getattr(self.module.net, "receptive_field", None)
        if rf is not None and rf > samples.windows.lookback:
            log.warning(
                "the net's receptive field is %d bars but the lookback is %d: the oldest "
                "inputs it could use are not in the window (set features.lookback=%d)",
                rf,
                samples.windows.lookback,
                rf,
            )
        callbacks = [*self.make_callbacks(out_dir), EpochSeed(self.seed)]
        trainer = self.make_trainer(callbacks, self.make_loggers(out_dir), out_dir)
        start = time.perf_counter()
        trainer.fit(self.module, datamodule=self.dm, ckpt_path=self.ckpt_path)
        seconds = time.perf_counter() - start
        metrics: dict[str, float] = {
            "ops/train_seconds": seconds,
            "ops/params": float(sum(p.numel() for p in self.module.parameters())),
            "ops/epochs": float(trainer.current_epoch),
        }
        val_best = trainer.callback_metrics.get("val/loss_best")
        if val_best is not None:
            metrics["val/loss_best"] = float(val_best)
        ckpt = trainer.checkpoint_callback
        best = getattr(ckpt, "best_model_path", "") if ckpt else ""
        if best and not trainer.fast_dev_run:
            saved = torch.load(best, map_location="cpu", weights_only=True)
            self.module.load_state_dict(saved["state_dict"])
            # Lightning counts epochs from 0; 1 = the first epoch (as LightGBM's best iteration)
            metrics["train/best_epoch"] = float(saved["epoch"]) + 1.0
            metrics["train/epochs"] = float(trainer.current_epoch)
            log.info("restored the best weights (epoch %d) from %s", saved["epoch"] + 1, best)
        trainer.test(self.module, datamodule=self.dm, verbose=False)
        return metrics

    def predict(self, samples: SampleSet, positions: np.ndarray) -> np.ndarray:
        """Forecasts ``[S, H]`` in target units (returns un-scaled; classifiers give p_up)."""
        if self.module is None or self.dm is None:
            raise RuntimeError("predict() before fit()")
        dm, module = self.dm, self.module
        ds = WindowDataset(dm.x, dm.y, samples.windows.ends[positions], samples.windows.lookback)
        loader = DataLoader(ds, batch_size=dm.batch_size, shuffle=False)
        device = next(module.parameters()).device
        module.eval()
        outs = []
        with torch.no_grad():
            for i, (x, _) in enumerate(loader):
                outs.append(module.predict_step(x.to(device), i).float().cpu().numpy())
        y = np.concatenate(outs) if outs else np.zeros((0, len(samples.target.horizons)))
        return y if module.task == "classification" else dm.unscale_predictions(y)
