"""Compare saved runs side by side, from their folders alone (no W&B, no models loaded).

Inputs are what ``train.py`` and ``benchmark.py`` write: a run folder (``metrics.json`` +
``.hydra/config.yaml``), a multirun / Optuna sweep folder (searched recursively for run folders)
or a benchmark folder (``benchmark.csv``, one row per model). The table holds each run's key
metrics and only the config keys whose values differ between the runs.

    records = find_runs([Path("outputs/train/multiruns/2026-03-20_12-00-00")])
    table = comparison_table(records, sort="test/rmse")
    write_comparison(table, out_dir, "test/rmse")   # comparison.md, .csv, comparison_test_rmse.png
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# The headline numbers, in table order (whichever exist in at least one run).
KEY_METRICS = (
    "test/rmse",
    "test/mae",
    "test/directional_accuracy",
    "baseline/rmse",
    "backtest/sharpe",
    "backtest/total_return",
    "ops/train_seconds",
    "val/loss_best",
)
# benchmark.csv column -> the metric name a train run uses for the same number
BENCHMARK_COLUMNS = {
    "rmse": "test/rmse",
    "mae": "test/mae",
    "directional_accuracy": "test/directional_accuracy",
    "backtest_sharpe": "backtest/sharpe",
    "backtest_total_return": "backtest/total_return",
    "backtest_max_drawdown": "backtest/max_drawdown",
    "train_seconds": "ops/train_seconds",
    "params": "ops/params",
}
# Config keys that name where things were written, not what was run.
IGNORED_PREFIXES = ("paths.", "hydra.")
IGNORED_SUFFIXES = (
    "dirpath",
    "save_dir",
    "default_root_dir",
    "output_dir",
    "log_dir",
    "cache_dir",
    "submitit_folder",
)
RUN_FILE, BENCHMARK_FILE, FAILED_FILE = "metrics.json", "benchmark.csv", "FAILED.json"
# file that marks a folder -> its kind, in order of precedence
MARKERS = ((BENCHMARK_FILE, "benchmark"), (RUN_FILE, "run"), (FAILED_FILE, "failed"))


@dataclass
class RunRecord:
    """One comparable run: a train run folder or one model row of a benchmark.

    Attributes:
        name: short label (path relative to the searched folder; ``<model>`` for benchmarks).
        path: the run (or benchmark) folder.
        kind: ``run`` or ``benchmark``.
        metrics: flat metrics (``test/rmse`` ...); missing values are NaN.
        config: the flattened resolved config (``model.name`` ...), empty if none was saved.
    """

    name: str
    path: Path
    kind: str
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def _natural_key(text: str) -> list[Any]:
    """Sort "2" before "10" (job folders)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _scan(root: Path) -> Iterator[tuple[str, Path]]:
    """Yield ``(kind, folder)`` for run, benchmark and failed-job folders under ``root``."""
    if root.is_file():
        kind = dict(MARKERS).get(root.name)
        if kind:
            yield kind, root.parent
        return
    for dirpath, dirnames, filenames in os.walk(root):
        kind = next((k for marker, k in MARKERS if marker in filenames), None)
        if kind:
            dirnames[:] = []  # a run's own sub-folders (fold_<k>, checkpoints) are not runs
            yield kind, Path(dirpath)
        else:  # hidden folders: .hydra, .submitit
            dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=_natural_key)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def load_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``.hydra/config.yaml`` flattened to dotted keys; interpolations resolved.

    An interpolation that cannot be resolved outside Hydra (``${hydra:...}``) keeps its text.
    """
    from omegaconf import OmegaConf

    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        return {}
    cfg = OmegaConf.load(path)
    flat = _flatten(OmegaConf.to_container(cfg, resolve=False))
    for key, value in flat.items():
        if isinstance(value, str) and "${" in value:
            try:
                resolved = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
            except Exception:  # e.g. the hydra: resolver; keep the text
                continue
            flat[key] = (
                OmegaConf.to_container(resolved) if OmegaConf.is_config(resolved) else resolved
            )
    return flat


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def load_run(run_dir: Path, name: str) -> RunRecord:
    """A train run folder as a :class:`RunRecord` (``metrics.json`` + resolved config)."""
    raw = json.loads((run_dir / RUN_FILE).read_text())
    metrics = {k: _number(v) for k, v in raw.items() if not isinstance(v, str)}
    return RunRecord(name, run_dir, "run", metrics, load_config(run_dir))


def load_benchmark(bench_dir: Path, prefix: str = "") -> list[RunRecord]:
    """One :class:`RunRecord` per model row of ``benchmark.csv``.

    Columns map onto train-run metric names (``rmse`` -> ``test/rmse`` ...); other columns keep
    their name under ``benchmark/``. ``baseline/rmse`` and ``baseline/mae`` come from the
    ``naive`` row (zero-return persistence) when the benchmark has one.
    """
    table = pd.read_csv(bench_dir / BENCHMARK_FILE, index_col="model")
    config = load_config(bench_dir)
    base = table.loc["naive"] if "naive" in table.index else None
    records = []
    for model, row in table.iterrows():
        metrics = {BENCHMARK_COLUMNS.get(c, f"benchmark/{c}"): _number(v) for c, v in row.items()}
        if base is not None:
            metrics["baseline/rmse"] = _number(base.get("rmse"))
            metrics["baseline/mae"] = _number(base.get("mae"))
        cfg = {**config, "model.name": str(model)}
        records.append(RunRecord(f"{prefix}{model}", bench_dir, "benchmark", metrics, cfg))
    return records


def _prefixes(dirs: list[Path]) -> list[str]:
    """Names for the searched folders: none for one, else their names (or relative paths)."""
    if len(dirs) == 1:
        return [""]
    names = [d.name for d in dirs]
    if len(set(names)) == len(names):
        return names
    common = os.path.commonpath([d.resolve() for d in dirs])
    return [os.path.relpath(d.resolve(), common) for d in dirs]


def find_runs(paths: Sequence[Path | str]) -> list[RunRecord]:
    """Every run under ``paths`` (run, multirun, sweep or benchmark folders, or their files).

    Names are paths relative to the searched folder (a job number in a multirun, the model in a
    benchmark), prefixed by the folder's name when several folders are compared. Failed
    multirun jobs (``FAILED.json``, no metrics) are skipped; see :func:`find_failed`.

    Raises:
        FileNotFoundError: a path does not exist.
    """
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"no such file or folder: {root}")
    dirs = [root if root.is_dir() else root.parent for root in roots]
    records: list[RunRecord] = []
    seen: set[Path] = set()
    for root, base, prefix in zip(roots, dirs, _prefixes(dirs), strict=True):
        for kind, folder in _scan(root):
            if kind == "failed" or folder.resolve() in seen:
                continue
            seen.add(folder.resolve())
            rel = os.path.relpath(folder, base)
            label = "/".join(p for p in (prefix, "" if rel == "." else rel) if p)
            if kind == "run":
                records.append(load_run(folder, label or folder.name))
            else:
                records.extend(load_benchmark(folder, f"{label}/" if label else ""))
    return records


def find_failed(paths: Sequence[Path | str]) -> list[tuple[Path, str]]:
    """Failed multirun jobs under ``paths``: ``(job folder, "ErrorType: message")``."""
    out = []
    for root in paths:
        for kind, folder in _scan(Path(root)):
            if kind == "failed":
                doc = json.loads((folder / FAILED_FILE).read_text())
                out.append((folder, f"{doc.get('error_type')}: {doc.get('error')}"))
    return out


def _ignored(key: str) -> bool:
    return key.startswith(IGNORED_PREFIXES) or key.rsplit(".", 1)[-1].endswith(IGNORED_SUFFIXES)


def _hashable(value: Any) -> Any:
    return (
        json.dumps(value, sort_keys=True, default=str) if isinstance(value, list | dict) else value
    )


def _override_keys(run_dir: Path) -> set[str]:
    """Keys set on the command line of a run (``.hydra/overrides.yaml``), without +/++/~."""
    from omegaconf import OmegaConf

    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return set()
    items = OmegaConf.to_container(OmegaConf.load(path))
    return {str(item).split("=", 1)[0].lstrip("+~") for item in items or []}


def differing_config(records: Sequence[RunRecord]) -> list[str]:
    """Config keys whose values differ between the records (output paths ignored).

    A key missing from some runs counts as a difference only when every run has it or a run
    overrode it on the command line (otherwise a model sweep would list every key that only one
    model has). A ``_target_`` key is dropped when another differing key of its group remains,
    and always under ``model`` (the table's ``model`` column names the model).
    """
    if len(records) < 2:
        return []
    keys = sorted({k for r in records for k in r.config if not _ignored(k)})
    keys = [k for k in keys if k != "model.name"]
    overridden = {k for r in records if r.kind == "run" for k in _override_keys(r.path)}
    out = []
    for key in keys:
        present = [key in r.config for r in records]
        values = {_hashable(r.config.get(key)) for r in records}
        if len(values) > 1 and (all(present) or key in overridden):
            out.append(key)
    groups = {"model"} | {k.split(".", 1)[0] for k in out if not k.endswith("._target_")}
    return [k for k in out if not (k.endswith("._target_") and k.split(".", 1)[0] in groups)]


def comparison_table(
    records: Sequence[RunRecord],
    sort: str | None = "test/rmse",
    descending: bool = False,
    metrics: Iterable[str] | None = None,
) -> pd.DataFrame:
    """One row per run: ``model``, the key metrics present, then the differing config keys.

    Args:
        records: runs from :func:`find_runs`.
        sort: metric (or column) to sort by; ignored if no run has it. NaN rows go last.
        descending: sort largest first (e.g. ``backtest/sharpe``).
        metrics: extra metric names to show beside :data:`KEY_METRICS`.

    Returns:
        DataFrame indexed by run name, with a ``path`` column last.
    """
    wanted = [*KEY_METRICS, *(m for m in metrics or () if m not in KEY_METRICS)]
    if sort and sort not in wanted:
        wanted.append(sort)
    present = [m for m in wanted if any(m in r.metrics for r in records)]
    diff = differing_config(records)
    rows = []
    for r in records:
        row: dict[str, Any] = {"run": r.name, "model": r.config.get("model.name", "")}
        row.update({m: r.metrics.get(m, math.nan) for m in present})
        row.update({k: _cell(r.config.get(k)) for k in diff})
        row["path"] = str(r.path)
        rows.append(row)
    table = pd.DataFrame(rows, columns=["run", "model", *present, *diff, "path"])
    table = table.set_index("run")
    if sort and sort in table.columns:
        table = table.sort_values(
            sort, ascending=not descending, na_position="last", kind="stable"
        )
    return table


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return "-"
        return f"{number:.4g}" if abs(number) < 1e4 else f"{number:,.0f}"
    return "-" if value is None else str(value)


def to_markdown(table: pd.DataFrame) -> str:
    """The table as GitHub markdown (numbers to 4 significant digits; ``path`` left out)."""
    shown = table.drop(columns=["path"], errors="ignore")
    cols = [shown.index.name or "run", *shown.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, row in shown.iterrows():
        cells = [str(name), *(_fmt(v).replace("|", "\\|") for v in row.tolist())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def print_table(table: pd.DataFrame, title: str, console: Any = None) -> None:
    """Print the comparison table with ``rich``, as wide as it needs (never truncated).

    Args:
        table: from :func:`comparison_table` (its ``path`` column is left out).
        title: the table's title.
        console: a ``rich`` console; default one on stdout. A table wider than the console
            is printed on a console of its own width rather than cut.
    """
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    console = console or Console()
    view = Table(title=title)
    shown = table.drop(columns=["path"], errors="ignore")
    for col in [shown.index.name, *shown.columns]:
        view.add_column(str(col), justify="left" if col in ("run", "model") else "right")
    for name, row in shown.iterrows():
        cells = ("-" if v != v else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row)
        view.add_row(str(name), *cells)  # v != v: NaN
    width = Measurement.get(console, console.options.update_width(1000), view).maximum
    if width > console.width:  # wider than the terminal (or 80 when piped): do not truncate
        console = Console(width=width, file=console.file)
    console.print(view)


def metric_filename(metric: str) -> str:
    """``test/rmse`` -> ``comparison_test_rmse.png``."""
    return "comparison_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_") + ".png"


def plot_metric(table: pd.DataFrame, metric: str, path: Path) -> Path:
    """Horizontal bars of ``metric`` per run, in table order; the persistence value marked.

    For ``test/<m>`` the run's ``baseline/<m>`` (zero-return persistence), when present, is drawn
    as a black tick on each bar so "beats the random walk" is visible at a glance.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metric not in table.columns:
        raise KeyError(f"{metric!r} is not a column of the comparison table")
    values = pd.to_numeric(table[metric], errors="coerce")
    labels = [
        f"{name} ({m})" if m else str(name)
        for name, m in zip(table.index, table["model"], strict=True)
    ]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(table) + 1.4))
    y = np.arange(len(table))
    ax.barh(y, values.fillna(0.0).to_numpy(), color="tab:blue", alpha=0.8)
    baseline = metric.replace("test/", "baseline/", 1) if metric.startswith("test/") else None
    if baseline and baseline in table.columns:
        base = pd.to_numeric(table[baseline], errors="coerce").to_numpy()
        ax.scatter(base, y, marker="|", s=300, color="black", zorder=3)
    for yi, v in zip(y, values, strict=True):
        ax.text(v if np.isfinite(v) else 0.0, float(yi), f" {_fmt(v)}", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()  # first row of the table on top
    has_base = baseline is not None and baseline in table.columns
    ax.set_xlabel(f"{metric} (black tick: zero-return persistence)" if has_base else metric)
    ax.set_title(f"{metric} by run")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_comparison(table: pd.DataFrame, out_dir: Path, metric: str | None) -> list[Path]:
    """Write ``comparison.md``, ``comparison.csv`` and, if ``metric`` is a column, its bar plot."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "comparison.md", out_dir / "comparison.csv"]
    written[0].write_text(to_markdown(table))
    table.to_csv(written[1])
    if metric and metric in table.columns and table[metric].notna().any():
        written.append(plot_metric(table, metric, out_dir / metric_filename(metric)))
    return written
