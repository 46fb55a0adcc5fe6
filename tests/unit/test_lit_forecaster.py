"""LitForecaster: real (tiny) Trainer runs on a synthetic AR(1) series with a learnable signal."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cryptoforecast.models.lit_forecaster import LitForecaster
from cryptoforecast.models.nets.attention_lstm import AttentionLSTM

LOOKBACK, HORIZON, N_FEATURES = 16, 2, 2


def ar1_windows(n: int, seed: int, phi: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows over r_t = phi * r_{t-1} + eps: x [n, L, 2] (r and |r|), y [n, H] next returns."""
    rng = np.random.default_rng(seed)
    length = n + LOOKBACK + HORIZON + 50
    eps = rng.normal(0.0, 1.0, length)
    r = np.zeros(length)
    for t in range(1, length):
        r[t] = phi * r[t - 1] + eps[t]
    r = r[50:]  # drop the burn-in
    feats = np.stack([r, np.abs(r)], axis=-1)  # [T, 2]
    x = np.stack([feats[i : i + LOOKBACK] for i in range(n)])  # [n, L, 2]
    y = np.stack([r[i + LOOKBACK : i + LOOKBACK + HORIZON] for i in range(n)])  # [n, H]
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def loaders(classification: bool = False) -> tuple[DataLoader, DataLoader]:
    (x_tr, y_tr), (x_va, y_va) = ar1_windows(512, seed=1), ar1_windows(256, seed=3)
    if classification:
        y_tr, y_va = (y_tr > 0).float(), (y_va > 0).float()
    train = DataLoader(TensorDataset(x_tr, y_tr), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(x_va, y_va), batch_size=64)
    return train, val


def make_lit(
    task: str = "regression",
    loss: nn.Module | None = None,
    scheduler: Any = None,
) -> LitForecaster:
    net = AttentionLSTM(
        N_FEATURES, HORIZON, hidden_size=16, num_layers=1, num_heads=2, dropout=0.0
    )
    return LitForecaster(
        net=net,
        loss=loss if loss is not None else nn.MSELoss(),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.0),
        scheduler=scheduler,
        task=task,
    )


def make_trainer(**overrides: Any) -> L.Trainer:
    kwargs: dict[str, Any] = {
        "max_epochs": 2,
        "accelerator": "cpu",
        "devices": 1,
        "deterministic": True,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "enable_checkpointing": False,
        "num_sanity_val_steps": 0,
    }
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


class ValLossHistory(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.losses.append(float(pl_module.val_loss.compute()))


def test_regression_learns_the_ar1_signal() -> None:
    L.seed_everything(0, workers=True)
    train, val = loaders()
    lit = make_lit()
    history = ValLossHistory()
    trainer = make_trainer(callbacks=[history])
    untrained = trainer.validate(lit, dataloaders=val, verbose=False)[0]["val/loss"]
    trainer.fit(lit, train_dataloaders=train, val_dataloaders=val)

    metrics = trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/loss_best", "val/mae"} <= set(metrics)
    final = float(metrics["val/loss"])
    y_val = torch.cat([y for _, y in val])
    zero_mse = float(y_val.pow(2).mean())
    assert len(history.losses) == 3  # validate() + 2 epochs
    assert history.losses[-1] < untrained
    assert final < 0.9 * zero_mse, (
        f"val/loss {final:.3f} does not beat predicting 0 ({zero_mse:.3f})"
    )
    # the sanity/validate() pass must not leak into the best-so-far
    assert float(metrics["val/loss_best"]) == pytest.approx(min(history.losses[1:]))

    preds = torch.cat(trainer.predict(lit, dataloaders=val))
    assert preds.shape == (len(y_val), HORIZON)
    mae = float((preds - y_val).abs().mean())
    assert mae == pytest.approx(float(metrics["val/mae"]), rel=1e-4)


def test_seeded_cpu_runs_are_reproducible() -> None:
    results = []
    for _ in range(2):
        L.seed_everything(0, workers=True)
        train, val = loaders()
        lit = make_lit()
        trainer = make_trainer(max_epochs=1)
        trainer.fit(lit, train_dataloaders=train, val_dataloaders=val)
        results.append(float(trainer.callback_metrics["val/loss"]))
    assert results[0] == results[1]


def test_classification_mode() -> None:
    L.seed_everything(0, workers=True)
    train, val = loaders(classification=True)
    lit = make_lit(task="classification", loss=nn.BCEWithLogitsLoss())
    trainer = make_trainer()
    trainer.fit(lit, train_dataloaders=train, val_dataloaders=val)

    assert isinstance(lit.loss, nn.BCEWithLogitsLoss)
    assert {"val/loss", "val/acc", "val/loss_best"} <= set(trainer.callback_metrics)
    # AR(1) with phi=0.8: the sign is learnable (oracle ~0.75), so beat the majority class and
    # the BCE of a constant 0.5 forecast (ln 2).
    y_val = torch.cat([y for _, y in val])
    majority = max(float(y_val.mean()), 1.0 - float(y_val.mean()))
    assert float(trainer.callback_metrics["val/acc"]) > majority + 0.05
    assert float(trainer.callback_metrics["val/loss"]) < float(np.log(2.0))
    p_up = torch.cat(trainer.predict(lit, dataloaders=val))
    assert p_up.shape == (len(val.dataset), HORIZON)
    assert ((p_up >= 0) & (p_up <= 1)).all()
    trainer.test(lit, dataloaders=val, verbose=False)
    assert {"test/loss", "test/acc"} <= set(trainer.callback_metrics)


def test_fast_dev_run_fit_and_test(tmp_path: Path) -> None:
    L.seed_everything(0, workers=True)
    train, val = loaders()
    scheduler = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=0)
    lit = make_lit(scheduler=scheduler)
    trainer = L.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        enable_progress_bar=False,
        logger=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(lit, train_dataloaders=train, val_dataloaders=val)
    trainer.test(lit, dataloaders=val, verbose=False)
    assert {"test/loss", "test/mae"} <= set(trainer.callback_metrics)


@pytest.mark.parametrize(
    "scheduler",
    [
        functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, mode="min", factor=0.5),
        functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
    ],
)
def test_configure_optimizers_from_partials(scheduler: Any) -> None:
    lit = make_lit(scheduler=scheduler)
    conf = lit.configure_optimizers()
    assert isinstance(conf["optimizer"], torch.optim.AdamW)
    assert conf["optimizer"].param_groups[0]["lr"] == 1e-2
    assert conf["lr_scheduler"]["monitor"] == "val/loss"
    assert conf["lr_scheduler"]["scheduler"].optimizer is conf["optimizer"]
    assert set(make_lit().configure_optimizers()) == {"optimizer"}


def test_scheduler_steps_during_fit() -> None:
    L.seed_everything(0, workers=True)
    train, val = loaders()
    step = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    lit = make_lit(scheduler=step)
    trainer = make_trainer(limit_train_batches=2, limit_val_batches=1)
    trainer.fit(lit, train_dataloaders=train, val_dataloaders=val)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-2 * 0.25)


def test_hparams_exclude_modules() -> None:
    lit = make_lit()
    assert "net" not in lit.hparams and "loss" not in lit.hparams
    assert set(lit.hparams) == {"task", "compile"}
    assert not any(isinstance(v, nn.Module) for v in lit.hparams.values())


def test_rejects_unknown_task_and_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="task"):
        make_lit(task="ranking")
    lit = make_lit()
    x, y = torch.randn(4, LOOKBACK, N_FEATURES), torch.randn(4, 1)
    with pytest.raises(ValueError, match="target"):
        lit.model_step((x, y))


def test_best_val_loss_survives_a_checkpoint_round_trip() -> None:
    """A resumed fit starts from the stored best val/loss, so val/loss_best spans all epochs."""
    lit = make_lit()
    lit.val_loss_best(torch.tensor(0.25))
    lit.val_loss_best(torch.tensor(0.75))
    checkpoint: dict[str, Any] = {}
    lit.on_save_checkpoint(checkpoint)
    checkpoint = torch.load(_round_trip(checkpoint), weights_only=True)  # plain tensors only
    resumed = make_lit()
    resumed.on_load_checkpoint(checkpoint)
    resumed.on_train_start()
    resumed.val_loss_best(torch.tensor(0.5))  # a later, worse epoch
    assert resumed.val_loss_best.compute().item() == 0.25
    fresh = make_lit()  # a fit without a checkpoint starts from nothing
    fresh.on_train_start()
    fresh.val_loss_best(torch.tensor(0.5))
    assert fresh.val_loss_best.compute().item() == 0.5


def _round_trip(obj: dict[str, Any]) -> Any:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf
