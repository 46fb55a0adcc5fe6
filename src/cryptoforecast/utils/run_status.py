"""A run that did not finish says so: ``FAILED.json`` in its folder and a non-zero exit status.

:func:`stop_on_signals` turns SIGTERM and SIGINT into :class:`RunInterrupted` (a
``BaseException``, so neither Lightning nor a broad ``except Exception`` swallows it); the train
app then writes ``FAILED.json`` (:func:`write_failure`) and exits with ``128 + signal number``
(143 for SIGTERM, 130 for SIGINT), as a shell reports a process killed by that signal.

Light imports only: used by every ``python train.py``.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from cryptoforecast.utils.hydra_callbacks import FAILED_FILE

TRACEBACK_TAIL_LINES = 20


class RunInterrupted(BaseException):
    """The run received a stop signal (SIGTERM, SIGINT).

    Args:
        signum: the signal number.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        """``128 + signum``: what a shell reports for a process ended by that signal."""
        return 128 + self.signum


@contextmanager
def stop_on_signals(*signums: int) -> Iterator[None]:
    """Raise :class:`RunInterrupted` in the main thread on SIGTERM / SIGINT (or ``signums``).

    Outside the main thread (where handlers cannot be installed) this does nothing. The previous
    handlers are restored on exit. Lightning's own SIGTERM notifier, installed during ``fit``,
    calls the handler installed here too.
    """
    wanted = signums or (signal.SIGTERM, signal.SIGINT)
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise RunInterrupted(signum)

    previous = {s: signal.signal(s, _raise) for s in wanted}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def write_failure(out_dir: Path, exc: BaseException, reason: str) -> Path:
    """Write ``FAILED.json`` (reason, error type, traceback and its tail, time) into ``out_dir``.

    Returns:
        The path written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(traceback.format_exception(exc)).splitlines()
    doc = {
        "reason": reason,
        "error_type": type(exc).__name__,
        "error": str(exc),
        "traceback_tail": lines[-TRACEBACK_TAIL_LINES:],
        "traceback": "\n".join(lines),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = out_dir / FAILED_FILE
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def clear_failure(out_dir: Path) -> None:
    """Remove a ``FAILED.json`` left by an earlier attempt in the same folder."""
    (out_dir / FAILED_FILE).unlink(missing_ok=True)


def log_to_files(logger: logging.Logger, level: int, msg: str, *args: object) -> None:
    """Send a record only to the root logger's file handlers (e.g. Hydra's ``train.log``).

    For lines the console already shows in another form (a progress bar, a printed error).
    """
    if not logger.isEnabledFor(level):
        return
    record = logger.makeRecord(logger.name, level, "(unknown file)", 0, msg, args, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)
