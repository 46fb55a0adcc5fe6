"""The one LightningModule that trains every pure forecasting net (ARCHITECTURE.md, rule 2)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.types import OptimizerConfig, OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from torchmetrics import MeanMetric, Metric, MinMetric
from torchmetrics.classification import BinaryAccuracy
from torchmetrics.regression import MeanAbsoluteError

log = logging.getLogger(__name__)

TASKS = ("regression", "classification")
VAL_LOSS_BEST_KEY = "val_loss_best"  # checkpoint entry: best epoch-level val/loss so far


class LitForecaster(L.LightningModule):
    """Wrap any net ``x [B, L, F] -> [B, H]`` with a loss, stage metrics and optimizers.

    Regression: the net outputs return forecasts and ``predict_step`` returns them unchanged.
    Classification: targets are 0/1 "up" labels, the net outputs logits (pair it with
    ``nn.BCEWithLogitsLoss``) and ``predict_step`` returns ``p_up = sigmoid(logits)``.
    The in-loop torchmetrics (``mae`` / ``acc``) serve early stopping and the progress bar only;
    reported numbers come from ``cryptoforecast.evaluation.metrics`` (R6).

    Args:
        net: Pure ``nn.Module`` mapping ``[B, L, F] -> [B, H]``.
        loss: Training loss ``loss(y_hat, y)`` on ``[B, H]`` tensors.
        optimizer: Optimizer factory taking ``params`` (Hydra ``_partial_: true``).
        scheduler: LR scheduler factory taking ``optimizer``, or ``None``.
        task: ``"regression"`` or ``"classification"``.
        compile: Wrap the net in ``torch.compile`` at fit time.

    Shapes:
        Batches are ``(x [B, L, F] float32, y [B, H] float32)``; predictions are ``[B, H]``.

    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., LRScheduler | ReduceLROnPlateau] | None = None,
        task: str = "regression",
        compile: bool = False,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if task == "classification" and not isinstance(loss, nn.BCEWithLogitsLoss):
            log.warning("classification expects logits + BCEWithLogitsLoss, got %s", type(loss))
        # Modules and optimizer factories are rebuilt from the saved Hydra config, never pickled
        # into hparams: checkpoints then hold only tensors and plain values, so they load with
        # torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"])
        self.net = net
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.task = task

        self.metric_name = "mae" if task == "regression" else "acc"
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_loss_best = MinMetric()
        self._resumed_val_loss_best: Tensor | None = None  # from a checkpoint, see on_train_start
        self.val_metric = self._make_metric()
        self.test_metric = self._make_metric()

    def _make_metric(self) -> Metric:
        return MeanAbsoluteError() if self.task == "regression" else BinaryAccuracy()

    def forward(self, x: Tensor) -> Tensor:
        """Raw net output (returns or logits). Shapes: ``x [B, L, F] -> [B, H]``."""
        out: Tensor = self.net(x)
        return out

    def model_step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Shared step for train/val/test.

        Args:
            batch: ``(x, y)``.

        Returns:
            ``(loss, preds, y)`` with ``preds`` the predictions in metric space (returns or
            ``p_up``).

        Shapes:
            ``x [B, L, F]``, ``y [B, H]`` -> scalar loss, ``preds [B, H]``, ``y [B, H]``.

        """
        x, y = batch
        out = self(x)
        # Explicit check: MSE/BCE would silently broadcast [B, H] against [B] or [B, 1].
        if out.shape != y.shape:
            raise ValueError(f"net output {tuple(out.shape)} != target {tuple(y.shape)}")
        loss = self.loss(out, y)
        preds = out if self.task == "regression" else torch.sigmoid(out)
        return loss, preds.detach(), y

    def on_train_start(self) -> None:
        """Forget what the sanity check (or an earlier ``validate``) put into the val metrics.

        A run resumed from a checkpoint starts from that checkpoint's best validation loss, so
        ``val/loss_best`` is the minimum over all epochs, as in an uninterrupted run.
        """
        self.val_loss.reset()
        self.val_metric.reset()
        self.val_loss_best.reset()
        if self._resumed_val_loss_best is not None:
            self.val_loss_best(self._resumed_val_loss_best.to(self.device))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the best epoch-level validation loss so far (metric states are not saved)."""
        checkpoint[VAL_LOSS_BEST_KEY] = self.val_loss_best.min_value.detach().cpu().clone()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the stored best validation loss for :meth:`on_train_start` (resume)."""
        best = checkpoint.get(VAL_LOSS_BEST_KEY)
        finite = isinstance(best, Tensor) and bool(torch.isfinite(best).all())
        self._resumed_val_loss_best = best if finite else None

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One optimisation step; logs ``train/loss``."""
        loss, _, _ = self.model_step(batch)
        self.train_loss(loss)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        loss, preds, y = self.model_step(batch)
        loss_metric = self.val_loss if stage == "val" else self.test_loss
        metric = self.val_metric if stage == "val" else self.test_metric
        loss_metric(loss)
        metric(preds, y if self.task == "regression" else y.long())
        self.log(f"{stage}/loss", loss_metric, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/{self.metric_name}", metric, on_step=False, on_epoch=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Logs ``val/loss`` and ``val/mae`` or ``val/acc``."""
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        """Track the best (lowest) epoch-level ``val/loss`` as ``val/loss_best``."""
        self.val_loss_best(self.val_loss.compute())
        self.log("val/loss_best", self.val_loss_best.compute(), prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Logs ``test/loss`` and ``test/mae`` or ``test/acc``."""
        self._eval_step(batch, "test")

    def predict_step(
        self, batch: Tensor | tuple[Tensor, ...] | list[Tensor], batch_idx: int
    ) -> Tensor:
        """Return forecasts (regression) or ``p_up`` probabilities (classification).

        Args:
            batch: ``x`` or ``(x, y)``; ``y`` is ignored.
            batch_idx: Index of the batch.

        Returns:
            Predictions; ``p_up`` lies in ``[0, 1]``.

        Shapes:
            ``x [B, L, F] -> [B, H]``.

        """
        x = batch if isinstance(batch, Tensor) else batch[0]
        out = self(x)
        return out if self.task == "regression" else torch.sigmoid(out)

    def setup(self, stage: str) -> None:
        """Compile the net for fitting when asked (off by default: determinism, fast_dev_run)."""
        if self.hparams["compile"] and stage == "fit":
            self.net = torch.compile(self.net)  # type: ignore[assignment]

    def configure_optimizers(self) -> OptimizerConfig | OptimizerLRSchedulerConfig:
        """Build the optimizer over all parameters and the optional scheduler.

        Returns:
            Lightning's optimizer dict; the scheduler monitors ``val/loss`` (used by
            ``ReduceLROnPlateau``, ignored by other schedulers), stepped once per epoch.

        """
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": "val/loss",
                "interval": "epoch",
                "frequency": 1,
            },
        }
