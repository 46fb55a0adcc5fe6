"""The run's checkpoint callback: ``last.ckpt`` after every epoch and an exact resume.

``conf/callbacks/default.yaml`` uses :class:`RunCheckpoint` in place of Lightning's
``ModelCheckpoint``. A resumed run (``python train.py ckpt_path=<old run>/checkpoints/last.ckpt``)
gets its own Hydra run folder; the old run's folder is only read.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

log = logging.getLogger(__name__)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (same arguments) plus what an exact resume needs.

    * ``last.ckpt`` is rewritten at the end of every epoch. Lightning 2.6 rewrites it only when it
      also saves a top-k checkpoint, i.e. when the monitored metric improves, so a crash could
      lose every epoch since the last improvement.
    * Resuming from a checkpoint of another run folder copies that run's best (top-k)
      checkpoints into this run's ``checkpoints/`` and restores the best score, best path and
      top-k record against the copies. Lightning alone warns that the dirpath changed and forgets
      the best score, so the first resumed epoch would count as the best one whatever its loss.
      The files are looked up next to the resumed checkpoint, so a moved run folder works too.
    * The state key keeps ``ModelCheckpoint``'s name, so checkpoints written by either class
      restore into it and readers of the ``ModelCheckpoint`` record in ``last.ckpt`` (bundle
      export, inspection) find it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_written_step = -1

    @property
    def state_key(self) -> str:
        """``ModelCheckpoint{...}``, the key Lightning's own class writes."""
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning's saving, then ``last.ckpt`` if it was not written at this step."""
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._write_last(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning's saving, then ``last.ckpt`` if it was not written at this step."""
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._write_last(trainer)

    def _write_last(self, trainer: L.Trainer) -> None:
        if (
            not self.save_last
            or trainer.fast_dev_run
            or trainer.sanity_checking
            or trainer.state.fn != TrainerFn.FITTING
            or self._last_written_step == trainer.global_step
        ):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_last_checkpoint(
        self, trainer: L.Trainer, monitor_candidates: dict[str, Any]
    ) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_written_step = trainer.global_step

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """From another run folder: copy its best checkpoints here and point the record at them.

        Runs before Lightning hands the record to :meth:`load_state_dict`, which then finds its
        own ``dirpath`` and restores everything. The files are looked up beside the resumed
        checkpoint (its run's ``checkpoints/``), falling back to the recorded folder.
        """
        states = checkpoint.get("callbacks") or {}
        state = states.get(self.state_key)
        old = state.get("dirpath") if isinstance(state, dict) else None
        if not old or not self.dirpath or old == self.dirpath:
            return
        source = Path(trainer.ckpt_path).parent if trainer.ckpt_path else Path(old)
        adopted = self._adopt(state, source, copy=trainer.is_global_zero)
        trainer.strategy.barrier()
        states[self.state_key] = adopted

    def _adopt(self, state: dict[str, Any], source: Path, copy: bool) -> dict[str, Any]:
        """``state`` pointing at copies (made here if ``copy``) of its files from ``source``.

        Returns ``state`` unchanged (Lightning then warns and keeps only the best path) when a
        recorded checkpoint is missing from ``source``.
        """
        assert self.dirpath is not None
        target = Path(self.dirpath)
        paths = [*state.get("best_k_models", {}), state.get("best_model_path") or ""]
        names = sorted({Path(p).name for p in paths if p})
        missing = [n for n in names if not (source / n).is_file()]
        if missing:
            log.warning(
                "resuming from %s: the run's best checkpoint(s) %s are missing there, so the best "
                "score is not restored and the resumed run will differ from an uninterrupted one",
                source,
                ", ".join(missing),
            )
            return state
        if copy:
            target.mkdir(parents=True, exist_ok=True)
            for name in names:
                dst = target / name
                if not (dst.exists() and os.path.samefile(source / name, dst)):
                    shutil.copy2(source / name, dst)
            log.info(
                "resuming into %s: copied %s from %s", target, ", ".join(names) or "-", source
            )

        def moved(path: str | None) -> str | None:
            return str(target / Path(path).name) if path else path

        return {
            **state,
            "dirpath": self.dirpath,
            "best_model_path": moved(state.get("best_model_path")) or "",
            "kth_best_model_path": moved(state.get("kth_best_model_path")) or "",
            "last_model_path": moved(state.get("last_model_path")) or "",
            "best_k_models": {moved(p): v for p, v in state.get("best_k_models", {}).items()},
        }
