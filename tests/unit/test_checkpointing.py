"""RunCheckpoint: last.ckpt after every epoch, resume from another run folder, missing files."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cryptoforecast.models.checkpointing import RunCheckpoint

# val/loss by epoch: best at epoch 0, then worse; what ModelCheckpoint sees
SCRIPT = [1.0, 2.0, 3.0, 4.0]


class Scripted(L.LightningModule):
    """A one-weight model whose val/loss follows SCRIPT, whatever it learns."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Linear(1, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.w(x), y)

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        if not self.trainer.sanity_checking:
            self.log("val/loss", SCRIPT[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(out: Path, epochs: int, ckpt_path: Path | None = None) -> RunCheckpoint:
    data = TensorDataset(torch.randn(8, 1), torch.randn(8, 1))
    ckpt = RunCheckpoint(
        dirpath=str(out),
        filename="epoch_{epoch:03d}",
        monitor="val/loss",
        save_last=True,
        auto_insert_metric_name=False,
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    loader = DataLoader(data, batch_size=4)
    trainer.fit(Scripted(), loader, loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
    return ckpt


def _record(path: Path) -> tuple[int, str, float]:
    """(epoch, best file name, best score) stored in a checkpoint."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    (record,) = (v for k, v in state["callbacks"].items() if k.startswith("ModelCheckpoint{"))
    return state["epoch"], Path(record["best_model_path"]).name, float(record["best_model_score"])


def test_last_ckpt_is_rewritten_after_every_epoch(tmp_path: Path) -> None:
    _fit(tmp_path / "a", epochs=3)  # only epoch 0 improves
    assert _record(tmp_path / "a" / "last.ckpt") == (2, "epoch_000.ckpt", 1.0)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["epoch_000.ckpt", "last.ckpt"]


def test_resume_in_a_new_folder_keeps_the_best_checkpoint_and_score(tmp_path: Path) -> None:
    _fit(tmp_path / "a", epochs=2)
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    ckpt = _fit(tmp_path / "b", epochs=4, ckpt_path=tmp_path / "a" / "last.ckpt")
    # epoch 2 and 3 are worse than epoch 0: the best stays the (copied) epoch 0 checkpoint
    assert ckpt.best_model_score == 1.0
    assert ckpt.best_model_path == str((tmp_path / "b" / "epoch_000.ckpt").resolve())
    assert (tmp_path / "b" / "epoch_000.ckpt").read_bytes() == before["epoch_000.ckpt"]
    assert _record(tmp_path / "b" / "last.ckpt") == (3, "epoch_000.ckpt", 1.0)
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == before  # only read


def test_resume_from_a_moved_run_folder_finds_the_best_checkpoint_beside_last(
    tmp_path: Path,
) -> None:
    _fit(tmp_path / "a", epochs=2)
    (tmp_path / "a").rename(tmp_path / "moved")
    ckpt = _fit(tmp_path / "b", epochs=3, ckpt_path=tmp_path / "moved" / "last.ckpt")
    assert ckpt.best_model_score == 1.0 and Path(ckpt.best_model_path).parent == tmp_path / "b"


def test_resume_without_the_best_checkpoint_warns_and_still_trains(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _fit(tmp_path / "a", epochs=2)
    (tmp_path / "a" / "epoch_000.ckpt").unlink()
    with caplog.at_level(logging.WARNING, logger="cryptoforecast.models.checkpointing"):
        ckpt = _fit(tmp_path / "b", epochs=3, ckpt_path=tmp_path / "a" / "last.ckpt")
    assert "epoch_000.ckpt are missing there" in caplog.text
    assert "will differ from an uninterrupted one" in caplog.text
    assert Path(ckpt.best_model_path).is_file()  # the first resumed epoch, as Lightning does


def test_state_key_is_model_checkpoints(tmp_path: Path) -> None:
    ckpt = RunCheckpoint(dirpath=str(tmp_path), monitor="val/loss", mode="min")
    assert ckpt.state_key.startswith("ModelCheckpoint{'monitor': 'val/loss', 'mode': 'min'")
