"""Per-epoch progress that needs no terminal and no experiment tracker.

:class:`EpochProgress` (``conf/callbacks/default.yaml``, key ``epoch_progress``) writes, after
every training epoch (its validation included):

- one row of ``metrics.csv`` in the fold's run folder (the Trainer's ``default_root_dir``):
  ``epoch, train_loss, val_loss, val_loss_best, seconds``, whatever the logger, so a learning
  curve exists without W&B;
- one plain line ``epoch 3/30  train loss 0.0123  val loss 0.0145  best 0.0140  4.2 s`` to the
  run's log file (``train.log``), and to the console too when stdout is not a terminal (CI,
  nohup, SLURM), where the progress bar shows nothing.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L

from cryptoforecast.utils.run_status import log_to_files

log = logging.getLogger("cryptoforecast.progress")

COLUMNS = ("epoch", "train_loss", "val_loss", "val_loss_best", "seconds")


def _value(metrics: dict[str, Any], key: str) -> float:
    value = metrics.get(key)
    return float(value) if value is not None else math.nan


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.6g}"


class EpochProgress(L.Callback):
    """Per-epoch line (log file; console when stdout is not a TTY) and ``metrics.csv`` row.

    Args:
        filename: the CSV written into the Trainer's ``default_root_dir``.
        console: print the lines on the console: True, False, or None (default) for "when
            stdout is not a terminal".
    """

    def __init__(self, filename: str = "metrics.csv", console: bool | None = None) -> None:
        self.filename = filename
        self.console = console
        self._start = time.perf_counter()

    def _to_console(self) -> bool:
        if self.console is not None:
            return self.console
        return not (hasattr(sys.stdout, "isatty") and sys.stdout.isatty())

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the epoch's clock."""
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the epoch's validation: append the CSV row and emit the line."""
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        seconds = time.perf_counter() - self._start
        metrics = trainer.callback_metrics
        row = {
            "epoch": trainer.current_epoch + 1,
            "train_loss": _value(metrics, "train/loss"),
            "val_loss": _value(metrics, "val/loss"),
            "val_loss_best": _value(metrics, "val/loss_best"),
            "seconds": round(seconds, 3),
        }
        self._append(Path(trainer.default_root_dir) / self.filename, row)
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        line = "epoch %s/%s  train loss %s  val loss %s  best %s  %.1f s"
        args = (
            row["epoch"],
            total,
            _fmt(row["train_loss"]),
            _fmt(row["val_loss"]),
            _fmt(row["val_loss_best"]),
            seconds,
        )
        if self._to_console():
            log.info(line, *args)
        else:  # the progress bar shows it; keep the record in the log file
            log_to_files(log, logging.INFO, line, *args)

    @staticmethod
    def _append(path: Path, row: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
