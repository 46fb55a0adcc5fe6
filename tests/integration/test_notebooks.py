"""Notebooks: committed clean, and executed headless (papermill) on real run folders."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from cryptoforecast.evaluation.inspect import (
    attention_by_lag,
    attention_on_test,
    largest_moves,
    load_run,
)
from cryptoforecast.paths import PROJECT_ROOT

from .test_compare import tiny_runs

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
# tiny_runs' job folders: named after the swept override
JOBS = {m: f"{i}_model={m}" for i, m in enumerate(("attention_lstm", "tcn_attention", "lightgbm"))}


def test_there_are_notebooks() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert {"01_attention_weights.ipynb", "02_compare_runs.ipynb"} <= set(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path: Path) -> None:
    """No outputs or execution counts; NN_topic name; papermill parameters; plots only."""
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and code.index(tagged[0]) == 0
    # house style: notebooks read artifacts and plot; model or feature code lives in the package
    from IPython.core.inputtransformer2 import TransformerManager  # %magics -> python

    for cell in code:
        defined = [
            n
            for n in ast.walk(ast.parse(TransformerManager().transform_cell(cell.source)))
            if isinstance(n, ast.FunctionDef | ast.ClassDef)
        ]
        assert not defined, f"{path.name} defines {[n.name for n in defined]}"


def _execute(
    mp: pytest.MonkeyPatch, name: str, out: Path, **parameters: object
) -> nbformat.NotebookNode:
    import papermill as pm

    mp.setenv("OMP_NUM_THREADS", "1")  # the kernel's torch on one thread (2-core CI boxes)
    pm.execute_notebook(
        str(PROJECT_ROOT / "notebooks" / name),
        str(out),
        parameters={k: str(v) if isinstance(v, Path) else v for k, v in parameters.items()},
        kernel_name="python3",  # the venv's kernel: jupyter_client runs it with sys.executable
        cwd=str(PROJECT_ROOT),
        progress_bar=False,
    )
    return nbformat.read(out, as_version=4)


def _text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            parts.append(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.slow
def test_attention_model_is_rebuilt_from_its_run_folder(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    sweep = tiny_runs(tmp_path_factory.getbasetemp())
    for model in ("attention_lstm", "tcn_attention"):
        run_dir = sweep / JOBS[model]
        res = attention_on_test(run_dir)
        saved = pd.read_parquet(run_dir / "predictions.parquet")
        assert (res.timestamps == pd.DatetimeIndex(saved["timestamp"])).all()
        np.testing.assert_allclose(res.y_pred[:, 0], saved["y_pred"], rtol=1e-5, atol=1e-9)
        np.testing.assert_array_equal(res.y_true[:, 0], saved["y_true"])
        S, heads, L, _ = res.attn.shape
        assert (S, L) == (len(saved), 128 if model == "tcn_attention" else 64)
        np.testing.assert_allclose(res.attn.sum(axis=-1), 1.0, atol=1e-5)  # rows sum to 1
        assert np.abs(np.triu(res.attn, k=1)).max() == 0.0  # causal: no key after the query
        by_lag = attention_by_lag(res.attn)
        assert by_lag.shape == (heads, L)
        np.testing.assert_allclose(by_lag[:, 0], res.attn[:, :, -1, -1].mean(axis=0))
        top = largest_moves(res.y_true, k=3)
        assert np.abs(res.y_true[top[0], 0]) == np.abs(res.y_true[:, 0]).max()
    with pytest.raises(ValueError, match="not a torch net"):
        load_run(sweep / JOBS["lightgbm"])


@pytest.mark.slow
def test_attention_notebook_runs_on_a_real_run(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = tiny_runs(tmp_path_factory.getbasetemp())
    nb = _execute(
        monkeypatch,
        "01_attention_weights.ipynb",
        tmp_path / "01.ipynb",
        run_dir=sweep / JOBS["attention_lstm"],
        n_moves=3,
    )
    text = _text(nb)
    assert "attention_lstm (variant lightweight), fold 0" in text
    gap = float(re.search(r"max \|rebuilt - predictions.parquet\| = (\S+)", text).group(1))
    assert gap < 1e-5
    assert "last 24 bars" in text  # the mass-by-lag table
    assert _images(nb) == 4  # heatmaps, mass by lag, big moves vs rest, the largest moves


@pytest.mark.slow
def test_compare_notebook_runs_on_a_real_multirun(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import wandb

    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_runs(tmp_path_factory.getbasetemp()), sweep)
    # an offline W&B run beside the runs (what logger=wandb leaves without a W&B login)
    run = wandb.init(mode="offline", dir=sweep / "extra", project="p", name="offline-probe")
    run.log({"val/loss": 0.5})
    run.summary["test/rmse"] = 123.0
    wandb.finish()
    # one job as an older default-logger run (wandb, offline) left it: no csv/, no per-epoch
    # metrics.csv in the run folder, the curve only in wandb/
    job = sweep / JOBS["attention_lstm"]
    epochs = pd.read_csv(job / "csv" / "metrics.csv").dropna(subset=["val/loss"])
    shutil.rmtree(job / "csv")
    (job / "metrics.csv").unlink()
    run = wandb.init(mode="offline", dir=job, project="p", name="default-logger")
    for epoch, val in zip(epochs["epoch"], epochs["val/loss"], strict=True):
        run.log({"val/loss": float(val), "epoch": int(epoch)})
    wandb.finish()
    nb = _execute(monkeypatch, "02_compare_runs.ipynb", tmp_path / "02.ipynb", path=sweep)
    text = _text(nb)
    assert f"3 runs under {sweep}, sorted by test/rmse" in text
    for model in JOBS:
        assert model in text
    assert "3 run equity curve(s)" in text and "2 validation curve(s)" in text
    assert "wandb/offline-run-" in text and "metrics.csv" in text  # both sources drawn
    assert "offline-probe" in text and "123.0" in text
    assert _images(nb) == 3  # metrics side by side, equity, validation loss
