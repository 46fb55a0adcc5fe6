"""W&B online with its server unreachable never costs the run: bounded wait, then offline.

A real ``python train.py logger=wandb`` process with a (fake) API key, ``WANDB_MODE`` unset and
``WANDB_BASE_URL`` pointing at a closed port on 127.0.0.1 (bound, then closed: connections are
refused). Without the fallback, ``wandb.init`` retries for 90 s and the run dies with a
``CommError`` and no ``metrics.json``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cryptoforecast.paths import PROJECT_ROOT
from cryptoforecast.tracking.wandb_setup import read_offline_run

from .conftest import FAST, WALK_FORWARD

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 characters, the shape of a W&B key


def closed_port() -> int:
    """A port on 127.0.0.1 that was just free and has nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    return port


@pytest.mark.slow
def test_unreachable_server_falls_back_offline_and_the_run_finishes(tmp_path: Path) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_DISABLED")}
    env.update(
        WANDB_BASE_URL=url,
        WANDB_API_KEY=FAKE_KEY,
        NETRC=str(tmp_path / "no_netrc"),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    out = tmp_path / "run"
    overrides = [o for o in FAST if not o.startswith("logger=")]
    cmd = [sys.executable, "train.py", *overrides, "logger=wandb", *WALK_FORWARD]
    cmd += ["trainer.max_epochs=1", "trainer.limit_train_batches=2", f"hydra.run.dir={out}"]
    start = time.monotonic()
    res = subprocess.run(
        cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    seconds = time.monotonic() - start
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert (out / "metrics.json").is_file()
    assert "CommError" not in log and "Traceback" not in log

    # one bounded wait, then a warning with the sync command of the run it opened offline
    warnings = re.findall(
        rf"could not start the online run at {re.escape(url)} after (\d+) s .*?"
        r"upload later with: wandb sync (\S+)",
        log,
    )
    assert len(warnings) == 1, log[-4000:]
    waited, sync_dir = int(warnings[0][0]), Path(warnings[0][1])
    assert waited <= 30, f"wandb.init waited {waited} s"
    print(f"W&B fallback after {waited} s; whole run {seconds:.0f} s")

    # every run of the job (both folds, the aggregate) is offline under the run folder, complete
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert sync_dir in runs and len(runs) == 3
    saved = {r["run"]["name"]: r for r in (read_offline_run(d, wait_s=10) for d in runs)}
    assert sorted(n.rsplit("-", 1)[1] for n in saved) == ["aggregate", "fold0", "fold1"]
    assert all(r["exit_code"] == 0 for r in saved.values())
    fold0 = next(r for n, r in saved.items() if n.endswith("fold0"))
    assert "test/rmse" in fold0["summary"]
    assert any("train/loss" in row for row in fold0["history"])  # Lightning's epochs, offline
    assert not list((out / "wandb").glob("run-*/files/wandb-summary.json"))
