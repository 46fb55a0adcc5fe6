"""Crash safety: a training process killed with SIGKILL resumes to exactly the uninterrupted run.

Three real ``python train.py`` processes on tiny settings: an uninterrupted run, a run killed with
``kill -9`` once ``last.ckpt`` holds the first epoch after the final best one, and the README's
resume command (``ckpt_path=<killed run>/checkpoints/last.ckpt``, a new run folder). The resumed
run must end with bit-identical weights, the same best checkpoint, identical predictions and an
identical ``metrics.json`` (``val/loss_best`` included; only timings and memory may differ).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from cryptoforecast.export.bundle import best_checkpoint
from cryptoforecast.paths import PROJECT_ROOT

# 60 days of bundled BTCUSDT, log-return features, the smallest net; early stopping with a short
# patience so its state (wait count, best score) decides when the run ends.
TINY = (
    "data.days=60",
    "features=minimal",
    "model.variant=lightweight",
    "logger=none",
    "trainer.max_epochs=10",
    "callbacks.early_stopping.patience=2",
    "callbacks.progress_bar=null",
    "trainer.enable_progress_bar=false",
)
# Wall-clock figures that differ between any two runs.
VOLATILE = ("ops/train_seconds", "ops/latency", "ops/peak_rss")


def _train(out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "train.py", *TINY, *extra, f"hydra.run.dir={out}"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def _checkpoint_state(path: Path) -> tuple[int, str] | None:
    """``(epoch, best checkpoint's file name)`` recorded in ``last.ckpt``; None while absent."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, EOFError, RuntimeError, OSError):
        return None
    best = [
        Path(state["best_model_path"]).name
        for key, state in ckpt.get("callbacks", {}).items()
        if key.startswith("ModelCheckpoint")
    ]
    return int(ckpt["epoch"]), best[0] if best else ""


def _kill_at_epoch(proc: subprocess.Popen[str], last: Path, epoch: int, timeout: float) -> int:
    """SIGKILL ``proc`` as soon as ``last`` holds ``epoch`` (0-based) or later; the epoch held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _checkpoint_state(last)
        if state is not None and state[0] >= epoch:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            return state[0]
        assert proc.poll() is None, f"the run ended without a last.ckpt of epoch {epoch}"
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no last.ckpt of epoch {epoch} within {timeout} s")


def _stable_metrics(run: Path) -> dict[str, object]:
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if not k.startswith(VOLATILE)}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]  # type: ignore[no-any-return]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0, msg=f"{key}: {a} vs {b}")


@pytest.mark.slow
def test_kill_9_after_a_worse_epoch_then_resume_equals_the_uninterrupted_run(
    tmp_path: Path,
) -> None:
    full_dir, killed_dir, resumed_dir = (tmp_path / n for n in ("full", "killed", "resumed"))
    full_log = _finish(_train(full_dir))
    full_metrics = _stable_metrics(full_dir)
    best_full = best_checkpoint(full_dir / "checkpoints")
    best_epoch, epochs = int(best_full.stem.split("_")[1]), int(full_metrics["ops/epochs"])
    # early stopping ended the run: the epochs after the best one did not improve
    assert best_epoch + 1 < epochs < 10, (best_epoch, epochs)

    # kill -9 after the first epoch past the final best: resuming must bring back the best score,
    # the best checkpoint, early stopping's wait count and val/loss_best from before the crash
    killed = _train(killed_dir)
    last = killed_dir / "checkpoints" / "last.ckpt"
    stopped_after = _kill_at_epoch(killed, last, best_epoch + 1, timeout=240)
    assert killed.returncode == -signal.SIGKILL
    assert stopped_after == best_epoch + 1, "the poll missed the epoch to kill at"
    assert _checkpoint_state(last) == (stopped_after, best_full.name)
    assert not (killed_dir / "metrics.json").exists()

    resumed_log = _finish(_train(resumed_dir, f"ckpt_path={last}"))

    # the same best epoch, restored for testing in both runs, each from its own folder
    best_resumed = best_checkpoint(resumed_dir / "checkpoints")
    assert best_resumed.name == best_full.name
    epoch = int(best_full.stem.split("_")[1])  # epoch_003.ckpt: 0-based; the log counts from 1
    assert f"restored the best weights (epoch {epoch + 1}) from {best_full}" in full_log
    assert f"restored the best weights (epoch {epoch + 1}) from {best_resumed}" in resumed_log
    _assert_same_weights(best_full, best_resumed)
    for run in (full_dir, resumed_dir):
        assert _checkpoint_state(run / "checkpoints" / "last.ckpt") == (epochs - 1, best_full.name)
    _assert_same_weights(
        full_dir / "checkpoints" / "last.ckpt", resumed_dir / "checkpoints" / "last.ckpt"
    )

    # every metric identical, val/loss_best and the epoch count included; same predictions
    assert _stable_metrics(resumed_dir) == full_metrics
    pd.testing.assert_frame_equal(
        pd.read_parquet(full_dir / "predictions.parquet"),
        pd.read_parquet(resumed_dir / "predictions.parquet"),
        check_exact=True,
    )
    assert "The dirpath has changed" not in resumed_log  # Lightning's "best score dropped"
    # the interrupted run's folder is only read (resume writes a new run folder)
    assert _checkpoint_state(last) == (stopped_after, best_full.name)
    assert sorted(p.name for p in last.parent.iterdir()) == [best_full.name, "last.ckpt"]
