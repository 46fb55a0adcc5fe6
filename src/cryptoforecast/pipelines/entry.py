"""The Hydra apps of ``python train.py`` / ``cryptoforecast train`` and ``python benchmark.py``.

Errors a user can fix (bad data, a misspelt key, too little data for the folds) end with one
paragraph and exit code 1 (:mod:`cryptoforecast.utils.errors`); ``HYDRA_FULL_ERROR=1`` shows the
traceback. A run that does not finish (an exception, SIGTERM, SIGINT) leaves ``FAILED.json`` in
its run folder and exits non-zero (:mod:`cryptoforecast.utils.run_status`).
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from cryptoforecast.paths import CONF_DIR
from cryptoforecast.utils.errors import clean_errors

log = logging.getLogger(__name__)


_COMMAND: dict[str, str] = {}


def _command() -> str:
    """How the user ran the app, for the "full traceback" hint (``python train.py k=v``)."""
    if "given" in _COMMAND:
        return _COMMAND["given"]
    prog = sys.argv[0]
    prog = f"python {Path(prog).name}" if prog.endswith(".py") else prog
    return " ".join([prog, *(shlex.quote(a) for a in sys.argv[1:])])


def _overrides() -> list[str]:
    return [a for a in sys.argv[1:] if not a.startswith("-")]


def train_main(command: str | None = None) -> None:
    """``python train.py`` / ``cryptoforecast train``: :func:`train_app` with clean errors.

    Args:
        command: the command line to show in the "full traceback" hint (default: from
            ``sys.argv``); ``cryptoforecast train`` passes its own, since it rewrites argv.
    """
    _COMMAND.pop("given", None)
    if command:
        _COMMAND["given"] = command
    with clean_errors(_command(), "train", _overrides()):
        train_app()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def train_app(cfg: DictConfig) -> float | None:
    """Run one training job; return the metric a sweeper optimises.

    In a multirun a failing job must not end the sweep: its error goes to ``FAILED.json`` in the
    job folder and it returns None (a failed trial for Optuna); the ``MultirunSummary`` callback
    names the failed jobs at the end. A single run writes ``FAILED.json`` too, then prints a
    project error as one paragraph (exit 1) and re-raises anything else. SIGTERM / SIGINT end
    any run with ``FAILED.json`` and exit status ``128 + signal``.
    """
    from cryptoforecast.pipelines.train import metric_value, run
    from cryptoforecast.utils.errors import (
        full_error_requested,
        mark_task_started,
        paragraph,
        print_error,
        user_error,
    )
    from cryptoforecast.utils.hydra_callbacks import in_multirun, record_failure
    from cryptoforecast.utils.run_status import (
        RunInterrupted,
        clear_failure,
        log_to_files,
        stop_on_signals,
        write_failure,
    )

    mark_task_started()
    out_dir = Path(cfg.paths.output_dir)
    clear_failure(out_dir)
    with stop_on_signals():
        try:
            return metric_value(run(cfg), cfg.get("optimized_metric"))
        except RunInterrupted as exc:
            path = write_failure(out_dir, exc, f"stopped by {exc.signal_name}")
            log.error("run stopped by %s before it finished; marked in %s", exc.signal_name, path)
            raise SystemExit(exc.exit_code) from None
        except Exception as exc:
            if in_multirun():
                record_failure(exc)
                return None
            found = user_error(exc)
            path = write_failure(out_dir, found or exc, str(found or exc))
            if found is None or full_error_requested():
                raise
            log_to_files(log, logging.ERROR, "%s: %s (%s)", type(found).__name__, found, path)
            print_error(paragraph(str(found), _command(), details=str(path)))
            raise SystemExit(1) from None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="benchmark")
def benchmark_app(cfg: DictConfig) -> None:
    """Run the model benchmark (``python benchmark.py``)."""
    from cryptoforecast.pipelines.benchmark import run

    run(cfg)


def benchmark_main() -> None:
    """``python benchmark.py``: :func:`benchmark_app` with clean errors."""
    with clean_errors(_command(), "benchmark", _overrides()):
        benchmark_app()
