"""Hydra multirun support: failed jobs do not end a sweep; Optuna studies resume.

Hydra's sweepers re-raise the first failed job, so one bad configuration would end a long sweep.
Instead, under ``hydra.mode=MULTIRUN`` the train app catches the exception, writes
``FAILED.json`` into the job folder (:func:`record_failure`) and returns None (a failed trial
for Optuna). The :class:`MultirunSummary` callback (registered in ``conf/hydra/default.yaml``)
keeps ``multirun_summary.json`` in the sweep folder current and, at the end, logs which jobs
failed. It works for every launcher (basic, joblib, submitit) because it reads the job folders,
not in-process state. :class:`OptunaResume` (registered by ``conf/hparams_search/*.yaml``)
makes a second call with the same sweep folder continue the stored study.

Light imports only: Hydra instantiates these callbacks for every run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

MAX_DIRNAME = (
    100  # characters of overrides in a job folder's name (the job number keeps it unique)
)


def job_subdir(num: Any, override_dirname: Any) -> str:
    """A multirun job's folder name: its number and its swept overrides, safe as one folder.

    ``hydra.sweep.subdir`` in ``conf/hydra/default.yaml`` is
    ``${cf.job_subdir:${hydra.job.num},${hydra.job.override_dirname}}``, and
    :meth:`MultirunSummary.on_multirun_start` excludes the overrides every job shares, so the
    folders read ``0_model=tcn``, ``1_model=lstm,model.variant=deep``; without a swept override
    just the number. Characters other than letters, digits and ``_.,=+-`` become ``_``
    (``data.path=/a/b.csv`` cannot make sub-folders, ``target.horizon=[1,4]`` becomes
    ``target.horizon=1,4``) and names are cut at :data:`MAX_DIRNAME` characters.
    """
    text = re.sub(r"[\[\]{}()'\"]", "", str(override_dirname or ""))
    text = re.sub(r"[^A-Za-z0-9_.,=+-]+", "_", text).strip("_.")[:MAX_DIRNAME]
    return f"{num}_{text}" if text else str(num)


OmegaConf.register_new_resolver("cf.job_subdir", job_subdir, replace=True)


def swept_keys(task_overrides: list[str]) -> tuple[list[str], list[str]]:
    """``(swept, fixed)`` keys of a multirun's command-line overrides.

    ``model=lstm,tcn`` or ``x=range(1,3)`` are swept; ``data.days=30`` is the same in every job.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(task_overrides)
    swept = [o.key_or_group for o in parsed if o.is_sweep_override()]
    return swept, [o.key_or_group for o in parsed if not o.is_sweep_override()]


FAILED_FILE = "FAILED.json"
SUMMARY_FILE = "multirun_summary.json"
# files whose presence marks a job that finished (train.py, benchmark.py)
RESULT_FILES = ("metrics.json", "benchmark.csv")


def in_multirun() -> bool:
    """Whether the current Hydra job is part of a multirun (``-m``, sweepers, launchers)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False
    return HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(exc: BaseException) -> Path:
    """Write ``FAILED.json`` (error, traceback, overrides) into the current job folder.

    Returns:
        The path written.
    """
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "job_num": int(hc.job.num),
        "overrides": list(hc.overrides.task),
        "error_type": type(exc).__name__,
        "error": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = out / FAILED_FILE
    path.write_text(json.dumps(doc, indent=2) + "\n")
    log.error(
        "job %s failed (%s: %s); the sweep goes on. Details: %s",
        hc.job.num,
        type(exc).__name__,
        exc,
        path,
        exc_info=exc,
    )
    return path


def _yaml(path: Path) -> Any:
    return OmegaConf.load(path) if path.exists() else None


def _job_record(job_dir: Path, sweep_dir: Path, metric: str | None) -> dict[str, Any]:
    meta = job_dir / ".hydra"
    hydra_cfg, cfg, overrides = (
        _yaml(meta / name) for name in ("hydra.yaml", "config.yaml", "overrides.yaml")
    )
    rec: dict[str, Any] = {
        "num": OmegaConf.select(hydra_cfg, "hydra.job.num") if hydra_cfg else None,
        "dir": str(job_dir.relative_to(sweep_dir)),
        "model": OmegaConf.select(cfg, "model.name") if cfg else None,
        "overrides": OmegaConf.to_container(overrides) if overrides else [],
        "status": "incomplete",  # started, but no result and no recorded error (killed?)
    }
    failed = job_dir / FAILED_FILE
    if failed.exists():
        doc = json.loads(failed.read_text())
        rec["status"] = "failed"
        rec["error"] = f"{doc.get('error_type')}: {doc.get('error')}"
    elif any((job_dir / name).exists() for name in RESULT_FILES):
        rec["status"] = "ok"
        metrics_file = job_dir / "metrics.json"
        if metric and metrics_file.exists():
            value = json.loads(metrics_file.read_text()).get(metric)
            rec[metric] = value
    return rec


def summarise_sweep(
    sweep_dir: Path, metric: str | None = None, direction: str = "minimize"
) -> dict[str, Any]:
    """Status of every job folder under ``sweep_dir`` (those holding a ``.hydra`` folder).

    Args:
        sweep_dir: the multirun folder (``hydra.sweep.dir``).
        metric: the optimised metric to report per job (read from its ``metrics.json``).
        direction: ``minimize`` or ``maximize``: picks the best job by ``metric``.

    Returns:
        ``{"sweep_dir", "n_jobs", "n_ok", "n_failed", "n_incomplete", "optimized_metric",
        "best", "failed", "jobs"}`` with one record per job (num, dir, model, overrides, status,
        error or metric value), ordered by job number. ``best`` is None when the scored jobs
        are of different models (their losses are not comparable).
    """
    job_dirs = sorted({p.parent for p in sweep_dir.rglob(".hydra") if p.is_dir()})
    jobs = [_job_record(d, sweep_dir, metric) for d in job_dirs if d != sweep_dir]
    jobs.sort(key=lambda r: (r["num"] is None, r["num"] or 0, r["dir"]))
    best = None
    if metric:
        scored = [
            r for r in jobs if isinstance(r.get(metric), int | float) and math.isfinite(r[metric])
        ]
        # val/loss_best is in each model's own units (nets: scaled target; LightGBM: raw l2),
        # so a best job is named only among runs of one model (a search, not a model sweep)
        if scored and len({r["model"] for r in scored}) == 1:
            pick = max if direction == "maximize" else min
            best = pick(scored, key=lambda r: r[metric])
    failed = [r for r in jobs if r["status"] == "failed"]
    return {
        "sweep_dir": str(sweep_dir),
        "n_jobs": len(jobs),
        "n_ok": sum(r["status"] == "ok" for r in jobs),
        "n_failed": len(failed),
        "n_incomplete": sum(r["status"] == "incomplete" for r in jobs),
        "optimized_metric": metric,
        "best": best,
        "failed": [{k: r[k] for k in ("num", "dir", "overrides", "error")} for r in failed],
        "jobs": jobs,
    }


def _direction(config: DictConfig) -> str:
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default="minimize")
    name = getattr(direction, "name", direction)  # an Enum in the Optuna sweeper's schema
    return "maximize" if str(name).lower() == "maximize" else "minimize"


def stored_trials(storage: str, study_name: str) -> int:
    """Number of trials of ``study_name`` already in an Optuna ``storage`` (0 if none)."""
    import optuna

    if study_name not in optuna.study.get_all_study_names(storage):
        return 0
    return len(optuna.load_study(study_name=study_name, storage=storage).trials)


class OptunaResume(Callback):
    """Before an Optuna sweep with persistent storage: make resuming a study work.

    - creates ``hydra.sweep.dir`` first, since the sweeper opens ``sqlite:///<sweep dir>/...``
      before any launcher has created the folder;
    - when the study already holds ``n`` trials, sets the sampler seed to ``seed + n``: a
      resumed call with the same seed would otherwise replay the first call's random start-up
      trials exactly. The result stays reproducible: it depends on the seed and the history.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Create the sweep folder; advance the sampler seed past the stored trials."""
        # hydra-optuna-sweeper 1.3 builds optuna's v2 distribution classes (deprecated, still
        # supported in optuna 5): one FutureWarning per trial tells the user nothing actionable
        warnings.filterwarnings(
            "ignore", r"\w+Distribution has been deprecated in v3\.0\.0", FutureWarning
        )
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        sweeper = config.hydra.sweeper
        storage, name = sweeper.get("storage"), sweeper.get("study_name")
        seed = OmegaConf.select(sweeper, "sampler.seed", default=None)
        if not storage or not name or seed is None:
            return
        n = stored_trials(str(storage), str(name))
        if n:
            with read_write(sweeper), open_dict(sweeper):
                sweeper.sampler.seed = int(seed) + n
            log.info(
                "resuming Optuna study %r (%d trials stored in %s); sampler seed %d -> %d",
                name,
                n,
                storage,
                seed,
                seed + n,
            )


def write_summary(config: DictConfig, filename: str = SUMMARY_FILE) -> dict[str, Any]:
    """Summarise ``config.hydra.sweep.dir`` into ``<sweep dir>/<filename>`` (atomic replace)."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    summary = summarise_sweep(sweep_dir, config.get("optimized_metric"), _direction(config))
    path = sweep_dir / filename
    tmp = path.with_name(f".{filename}.{os.getpid()}.tmp")  # parallel jobs may write at once
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return summary


def print_comparison(sweep_dir: Path, metric: str = "test/rmse") -> list[Path]:
    """At the end of a sweep: the ``compare`` table of its jobs, printed and written.

    The same table as ``cryptoforecast compare <sweep dir> --sort <metric>``
    (:mod:`cryptoforecast.evaluation.compare`), saved as ``comparison.md``, ``comparison.csv``
    and ``comparison_<metric>.png`` in the sweep folder. A failure here is logged, never raised:
    the jobs' results are already on disk.

    Returns:
        The files written (empty on failure).
    """
    from cryptoforecast.evaluation.compare import (
        comparison_table,
        find_runs,
        print_table,
        write_comparison,
    )

    try:
        records = find_runs([sweep_dir])
        if not records:
            return []
        table = comparison_table(records, sort=metric)
        written = write_comparison(table, sweep_dir, metric)
        print_table(table, f"{len(table)} job(s) of {sweep_dir.name} by {metric}")

    except Exception as exc:  # noqa: BLE001 - a report must not turn a finished sweep into an error
        log.warning("no comparison table for %s: %s: %s", sweep_dir, type(exc).__name__, exc)
        return []
    log.info("comparison: %s", ", ".join(str(p) for p in written))
    return written


class MultirunSummary(Callback):
    """Create the sweep folder up front; keep ``multirun_summary.json`` current; log failures.

    The summary is rewritten after every job too, so it exists even when a sweep never reaches
    its end (killed, or the Optuna sweeper raising because every trial failed).

    Args:
        filename: name of the summary file in the sweep folder.
        fail_on_error: end the sweep with exit status 1 when a job failed, after every job has
            run and the summary is written. Off by default: a failed trial is a normal
            outcome of a search, and its error is in the summary and in the job's FAILED.json.
    """

    def __init__(self, filename: str = SUMMARY_FILE, fail_on_error: bool = False) -> None:
        self.filename, self.fail_on_error = filename, fail_on_error

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Create ``hydra.sweep.dir`` before the sweeper opens a storage inside it (sqlite).

        Also names job folders after what they sweep: the keys of the overrides that are the
        same in every job (``data.days=30`` beside ``model=lstm,tcn``) are added to
        ``hydra.job.config.override_dirname.exclude_keys`` (as a Hydra override, since every
        job's config is composed again from the sweep's overrides), so
        ``${hydra.job.override_dirname}`` holds only the swept ones (and an Optuna trial's
        parameters).
        """
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
        _, fixed = swept_keys([str(t) for t in task or []])
        dirname = config.hydra.job.config.override_dirname
        excluded = [*dirname.exclude_keys, *(k for k in fixed if k not in dirname.exclude_keys)]
        if excluded != list(dirname.exclude_keys):
            quoted = ",".join("'" + k.replace("'", "\\'") + "'" for k in excluded)
            with read_write(config), open_dict(config):
                config.hydra.overrides.hydra.append(
                    f"hydra.job.config.override_dirname.exclude_keys=[{quoted}]"
                )
                dirname.exclude_keys = excluded

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """After each multirun job (in its own process for joblib / submitit): update the file."""
        if str(OmegaConf.select(config, "hydra.mode", default="")).endswith("MULTIRUN"):
            write_summary(config, self.filename)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write the final summary; log the failed jobs by number, overrides and error."""
        from hydra.core.utils import configure_log

        # The basic launcher leaves the last job's logging (its log file) on the root logger.
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        metric = config.get("optimized_metric")
        summary = write_summary(config, self.filename)
        path = sweep_dir / self.filename
        log.info(
            "multirun: %d job(s), %d ok, %d failed, %d incomplete; summary: %s",
            summary["n_jobs"],
            summary["n_ok"],
            summary["n_failed"],
            summary["n_incomplete"],
            path,
        )
        if summary["best"] is not None:
            best = summary["best"]
            log.info(
                "best %s = %s: job %s %s", metric, best[metric], best["num"], best["overrides"]
            )
        for rec in summary["failed"]:
            log.error(
                "FAILED job %s (%s): %s [%s]",
                rec["num"],
                " ".join(rec["overrides"]),
                rec["error"],
                sweep_dir / rec["dir"] / FAILED_FILE,
            )
        if summary["n_ok"]:  # a search is ranked by what it optimises, a grid by test RMSE
            sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
            search = "optuna" in sweeper.lower() and metric
            print_comparison(sweep_dir, str(metric) if search else "test/rmse")
        if self.fail_on_error and summary["n_failed"]:
            nums = ", ".join(str(r["num"]) for r in summary["failed"])
            log.error("%d job(s) of the multirun failed: %s", summary["n_failed"], nums)
            # Hydra turns a callback's exceptions into warnings; only SystemExit sets the status
            raise SystemExit(1)
