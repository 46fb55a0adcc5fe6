"""Learning curves from whatever a run's logger left: metrics.csv, csv/ or W&B offline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cryptoforecast.evaluation.compare import epoch_losses


def test_lightning_csv_rows_become_one_row_per_epoch(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    # Lightning's CSVLogger: train and val of an epoch on separate rows
    pd.DataFrame(
        {
            "epoch": [0, 0, 1, 1],
            "step": [3, 3, 7, 7],
            "train/loss": [1.2, None, 1.1, None],
            "val/loss": [None, 0.9, None, 0.8],
        }
    ).to_csv(tmp_path / "csv" / "metrics.csv", index=False)
    got = epoch_losses(tmp_path)
    assert got is not None and got.attrs["source"].endswith("csv/metrics.csv")
    assert got.to_dict("list") == {
        "epoch": [0, 1],
        "val/loss": [0.9, 0.8],
        "train/loss": [1.2, 1.1],
    }


def test_run_metrics_csv_comes_first(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    pd.DataFrame({"epoch": [0], "val/loss": [5.0]}).to_csv(tmp_path / "csv" / "metrics.csv")
    pd.DataFrame({"epoch": [0, 1, 2], "val_loss": [0.7, 0.6, 0.65]}).to_csv(
        tmp_path / "metrics.csv", index=False
    )
    got = epoch_losses(tmp_path)
    assert got is not None and got.attrs["source"] == str(tmp_path / "metrics.csv")
    assert list(got["val/loss"]) == [0.7, 0.6, 0.65]


def test_wandb_offline_history_of_a_default_run(tmp_path: Path) -> None:
    """``logger=wandb`` (the default) without a login: the curve is in the offline run."""
    import wandb

    run = wandb.init(mode="offline", dir=tmp_path, project="p", name="default-logger")
    for epoch, (val, train) in enumerate([(0.66, 1.38), (0.58, 1.13), (0.61, 1.02)]):
        run.log({"val/loss": val, "val/loss_best": min(val, 0.58), "epoch": epoch})
        run.log({"train/loss": train, "epoch": epoch})
    run.log({"test/loss": 0.7, "epoch": 3})  # after fit: no val/loss, not an epoch of the curve
    wandb.finish()
    got = epoch_losses(tmp_path)
    assert got is not None and "offline-run-" in got.attrs["source"]
    assert list(got["epoch"]) == [0, 1, 2]
    assert list(got["val/loss"]) == pytest.approx([0.66, 0.58, 0.61])
    assert list(got["train/loss"]) == pytest.approx([1.38, 1.13, 1.02])


def test_no_epochs_gives_none(tmp_path: Path) -> None:
    assert epoch_losses(tmp_path) is None  # LightGBM, naive, fast_dev_run
    pd.DataFrame({"epoch": [0], "train/loss": [1.0]}).to_csv(tmp_path / "metrics.csv")
    assert epoch_losses(tmp_path) is None  # no validation loss
