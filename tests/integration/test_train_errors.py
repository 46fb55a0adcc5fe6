"""``python train.py`` as a user runs it: clean errors, refusals, FAILED.json, signals, progress.

Real subprocesses with stdout piped (not a terminal), real files and real signals.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cryptoforecast.paths import PROJECT_ROOT

from .conftest import FAST

CLI = "import sys; from cryptoforecast.cli import main; sys.exit(main())"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def _train(*args: str, out: Path, env: dict[str, str] | None = None, timeout: int = 300):
    return subprocess.run(
        [sys.executable, "train.py", *args, f"hydra.run.dir={out}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or _env(),
    )


def _assert_clean(res: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit code 1, a short message without a traceback, holding each expected text."""
    text = res.stdout + res.stderr
    assert res.returncode == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert len(text.strip().splitlines()) < 8, text
    assert "HYDRA_FULL_ERROR=1" in res.stderr, text
    for part in expected:
        assert part in res.stderr, text
    return text


def test_misspelt_key_suggests_the_closest_key(tmp_path: Path) -> None:
    res = _train("data.dayz=5", out=tmp_path / "run")
    _assert_clean(res, "data.dayz is not a key", "did you mean data.days?")
    assert "+data.dayz" not in res.stdout + res.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_unknown_model_suggests_the_closest_option(tmp_path: Path) -> None:
    res = _train("model=tcnn", out=tmp_path / "run")
    _assert_clean(res, "did you mean model=tcn?")


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="needs a machine where torch sees no GPU"
)
def test_gpu_trainer_without_a_gpu_says_what_to_do(tmp_path: Path) -> None:
    res = _train("trainer=gpu", "data.days=60", "logger=none", out=tmp_path / "run")
    _assert_clean(res, "sees no CUDA GPU", "trainer=cpu", "CUDA build of torch")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (("data.symbol=DOGEUSDT",), ("no bundled data", "data=file data.path=")),
        (("target.horizon=0",), ("target.horizon=1",)),
        (("split=walk_forward", "data.days=20"), ("needs about", "use data.days=")),
        (("trainer.max_epochs=0",), ("untrained", "trainer.max_epochs=1 or more")),
    ],
    ids=["symbol", "horizon", "walk-forward", "zero-epochs"],
)
def test_project_errors_are_one_paragraph_with_the_fix(
    tmp_path: Path, overrides: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    out = tmp_path / "run"
    res = _train(*FAST, *overrides, out=out)
    _assert_clean(res, *expected)
    failed = json.loads((out / "FAILED.json").read_text())
    assert failed["error_type"] in ("DataError", "ConfigError") and failed["traceback_tail"]
    assert str(out / "FAILED.json") in res.stderr
    assert not (out / "metrics.json").exists()
    assert f"{failed['error_type']}: " in (out / "train.log").read_text()


@pytest.mark.slow
def test_a_corrupt_file_names_the_file_and_the_full_error_flag_shows_the_traceback(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "candles.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2025-01-01T00:00:00Z,1,2,0.5,oops,3\n")
    res = _train(*FAST, "data=file", f"data.path={bad}", out=tmp_path / "a")
    _assert_clean(res, str(bad))
    full = _train(
        *FAST, "data=file", f"data.path={bad}", out=tmp_path / "b", env=_env(HYDRA_FULL_ERROR="1")
    )
    assert full.returncode == 1 and "Traceback" in full.stderr
    assert "DataError" in full.stderr and (tmp_path / "b" / "FAILED.json").exists()


@pytest.mark.slow
def test_cryptoforecast_train_prints_the_same_clean_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-c", CLI, "train", "DOGEUSDT", "logger=none", f"hydra.run.dir={out}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    _assert_clean(res, "data=file data.path=", "HYDRA_FULL_ERROR=1 cryptoforecast")
    assert (out / "FAILED.json").exists()


@pytest.mark.slow
def test_an_unexpected_error_keeps_its_traceback(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = (
        "import sys\n"
        "import cryptoforecast.pipelines.train as t\n"
        "def boom(cfg):\n"
        "    raise ZeroDivisionError('a bug, not bad input')\n"
        "t.run = boom\n"
        "from cryptoforecast.pipelines.entry import train_main\n"
        f"sys.argv = ['train.py', 'logger=none', 'hydra.run.dir={out}']\n"
        "train_main()\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert res.returncode == 1
    assert "Traceback" in res.stderr and "ZeroDivisionError: a bug" in res.stderr
    assert "error: " not in res.stderr  # not dressed up as a user error
    failed = json.loads((out / "FAILED.json").read_text())
    assert failed["error_type"] == "ZeroDivisionError"


def _start_long_run(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "train.py",
            *FAST,
            "trainer.max_epochs=500",
            "callbacks.early_stopping=null",
            f"hydra.run.dir={out}",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float = 240) -> list[str]:
    """Read the child's (piped, non-TTY) output until a line holds ``text``."""
    assert proc.stdout is not None
    lines, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if text in line:
            return lines
    proc.kill()
    raise AssertionError(f"never saw {text!r}:\n{''.join(lines)[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_leaves_failed_json_and_a_nonzero_exit(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    out = tmp_path / "run"
    proc = _start_long_run(out)
    lines = _wait_for(proc, "epoch 2/500")
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=120)
    text = "".join(lines) + rest
    assert proc.returncode == code, text[-3000:]
    failed = json.loads((out / "FAILED.json").read_text())
    assert failed["reason"] == f"stopped by {sig.name}", failed
    assert failed["time"] and failed["traceback_tail"]
    assert not (out / "metrics.json").exists() and not (out / "predictions.parquet").exists()
    assert f"run stopped by {sig.name}" in text


@pytest.mark.slow
def test_piped_output_shows_epoch_lines_and_metrics_csv_is_written(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = _train(*FAST, "trainer.max_epochs=3", "callbacks.early_stopping=null", out=out)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if "cryptoforecast.progress" in ln]
    assert [ln.split(" - ", 1)[1].split("  ")[0] for ln in lines] == [
        "epoch 1/3",
        "epoch 2/3",
        "epoch 3/3",
    ], res.stdout[-3000:]
    assert all("train loss" in ln and "val loss" in ln and ln.endswith(" s") for ln in lines)
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(float(r["train_loss"]) > 0 and float(r["val_loss"]) > 0 for r in rows)
    assert all(float(r["seconds"]) > 0 for r in rows)
    log = (out / "train.log").read_text()
    assert log.count("cryptoforecast.progress") == 3  # the same lines in the run's log file
    assert not (out / "FAILED.json").exists()
    assert "profiling" not in res.stdout  # profile=false in the tests' settings
    assert "ops/size_mb" not in json.loads((out / "metrics.json").read_text())
