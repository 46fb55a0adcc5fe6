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
    "backtest/n_trades",
    "backtest_sign/total_return",
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
    "n_trades": "backtest/n_trades",
    "sign_total_return": "backtest_sign/total_return",
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
PERIOD_COLUMN = "test period"
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
        test_period: first and last forecast time of its test predictions
            (``"2026-01-24 14:00 -> 2026-03-20 07:00"``), empty if no predictions were saved.
    """

    name: str
    path: Path
    kind: str
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    test_period: str = ""


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


def test_period(predictions: Path) -> str:
    """``"<first> -> <last>"`` forecast time (UTC, to the minute) of a predictions parquet.

    Empty when the file is missing or has no rows.
    """
    if not predictions.exists():
        return ""
    stamps = pd.to_datetime(pd.read_parquet(predictions, columns=["timestamp"])["timestamp"])
    if stamps.empty:
        return ""
    return f"{stamps.min():%Y-%m-%d %H:%M} -> {stamps.max():%Y-%m-%d %H:%M}"


def load_run(run_dir: Path, name: str) -> RunRecord:
    """A train run folder as a :class:`RunRecord` (``metrics.json`` + resolved config)."""
    raw = json.loads((run_dir / RUN_FILE).read_text())
    metrics = {k: _number(v) for k, v in raw.items() if not isinstance(v, str)}
    period = test_period(run_dir / "predictions.parquet")
    return RunRecord(name, run_dir, "run", metrics, load_config(run_dir), period)


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
        period = test_period(bench_dir / f"predictions_{model}.parquet")
        records.append(RunRecord(f"{prefix}{model}", bench_dir, "benchmark", metrics, cfg, period))
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


def _per_horizon(metric: str, records: Sequence[RunRecord]) -> list[str]:
    """``[metric]`` if a run has it, else its per-horizon keys (``test/h4/rmse``) by horizon."""
    if any(metric in r.metrics for r in records):
        return [metric]
    if "/" not in metric:
        return []
    prefix, name = metric.split("/", 1)
    pattern = re.compile(rf"{re.escape(prefix)}/h(\d+)/{re.escape(name)}")
    found = {
        (int(m.group(1)), key)
        for r in records
        for key in r.metrics
        if (m := pattern.fullmatch(key))
    }
    return [key for _, key in sorted(found)]


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

    Runs whose test predictions cover different periods are not comparable metric by metric:
    the table then gains a ``test period`` column and is grouped by it (sorted within each
    group), and :func:`period_warning` says so.

    Returns:
        DataFrame indexed by run name, with a ``path`` column last.
    """
    wanted = [*KEY_METRICS, *(m for m in metrics or () if m not in KEY_METRICS)]
    if sort and sort not in wanted:
        wanted.append(sort)
    present = list(dict.fromkeys(k for m in wanted for k in _per_horizon(m, records)))
    if sort and sort not in present:  # multi-horizon runs: sort by the shortest horizon
        sort = next(iter(_per_horizon(sort, records)), sort)
    diff = differing_config(records)
    rows = []
    for r in records:
        row: dict[str, Any] = {"run": r.name, "model": r.config.get("model.name", "")}
        row.update({m: r.metrics.get(m, math.nan) for m in present})
        row.update({k: _cell(r.config.get(k)) for k in diff})
        row["path"] = str(r.path)
        rows.append(row)
    periods = [r.test_period for r in records]
    several = len(set(periods)) > 1
    period_col = [PERIOD_COLUMN] if several else []
    if several:
        for row, period in zip(rows, periods, strict=True):
            row[PERIOD_COLUMN] = period or "unknown"
    table = pd.DataFrame(rows, columns=["run", "model", *period_col, *present, *diff, "path"])
    table = table.set_index("run")
    if sort and sort in table.columns:
        table = table.sort_values(
            sort, ascending=not descending, na_position="last", kind="stable"
        )
    if several:  # group by test period, in order of first appearance; sorted within a group
        order = {p: i for i, p in enumerate(dict.fromkeys(table[PERIOD_COLUMN]))}
        table = table.sort_values(PERIOD_COLUMN, key=lambda c: c.map(order), kind="stable")
    return table


def period_warning(table: pd.DataFrame) -> str | None:
    """A warning when the table's runs were tested on different periods, else None.

    Names each period and how many runs it holds: their metrics (RMSE in price units above all,
    which scales with the price level and volatility of the period) are not comparable across
    groups.
    """
    if PERIOD_COLUMN not in table.columns:
        return None
    counts = table[PERIOD_COLUMN].value_counts(sort=False)
    groups = "; ".join(f"{period} ({n} run(s))" for period, n in counts.items())
    return (
        f"the runs were tested on {len(counts)} different periods: {groups}. Their metrics "
        "are comparable only within a period; the table is grouped by test period."
    )


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
    warning = period_warning(table)
    if warning:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)


def metric_filename(metric: str) -> str:
    """``test/rmse`` -> ``comparison_test_rmse.png``."""
    return "comparison_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_") + ".png"


def draw_metric(ax: Any, table: pd.DataFrame, metric: str) -> None:
    """Draw ``metric`` per run on ``ax`` so that small differences are visible.

    For ``test/<m>`` with the run's ``baseline/<m>`` (zero-return persistence) in the table,
    bars show the **difference to that baseline in %** (``100 * (value / baseline - 1)``; 0 =
    persistence, so "beats the random walk" reads as a bar left of 0 for error metrics).
    Otherwise the values are dots on an axis zoomed to their range (bars from 0 would make a
    2 % difference invisible). Runs keep the table's order, first on top.

    Raises:
        KeyError: ``metric`` is not a column of the table.
    """
    if metric not in table.columns:
        raise KeyError(f"{metric!r} is not a column of the comparison table")
    values = pd.to_numeric(table[metric], errors="coerce").to_numpy(dtype=float)
    labels = [
        f"{name} ({m})" if m else str(name)
        for name, m in zip(table.index, table["model"], strict=True)
    ]
    y = np.arange(len(table))
    baseline = metric.replace("test/", "baseline/", 1) if metric.startswith("test/") else None
    base = (
        pd.to_numeric(table[baseline], errors="coerce").to_numpy(dtype=float)
        if baseline and baseline in table.columns
        else None
    )
    if base is not None and np.isfinite(values / base).any():
        diff = 100.0 * (values / base - 1.0)
        shown = np.nan_to_num(diff, nan=0.0)
        ax.barh(y, shown, color=np.where(shown <= 0, "tab:green", "tab:red"), alpha=0.8)
        ax.axvline(0.0, color="black", lw=1.0)
        for yi, d, v in zip(y, diff, values, strict=True):
            text = f" {d:+.2f} % ({_fmt(v)})" if np.isfinite(d) else " -"
            ax.text(0.0 if not np.isfinite(d) else d, float(yi), text, va="center", fontsize=8)
        span = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0
        ax.set_xlim(-1.6 * span or -1.0, 1.6 * span or 1.0)
        ax.set_xlabel(f"{metric}: difference to zero-return persistence ({baseline}), %")
    else:
        ax.scatter(values, y, color="tab:blue", zorder=3)
        for yi, v in zip(y, values, strict=True):
            if np.isfinite(v):
                ax.text(v, float(yi), f"  {_fmt(v)}", va="center", fontsize=8)
        finite = values[np.isfinite(values)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            pad = 0.15 * (hi - lo) or 0.05 * abs(hi) or 1.0
            ax.set_xlim(lo - pad, hi + 2 * pad)  # zoomed to the data (room for the labels)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(f"{metric} (axis zoomed to the data, not from 0)")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(len(table) - 0.5, -0.5)  # first row of the table on top


def plot_metric(table: pd.DataFrame, metric: str, path: Path) -> Path:
    """Write :func:`draw_metric`'s chart of ``metric`` as a PNG.

    Raises:
        KeyError: ``metric`` is not a column of the comparison table.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metric not in table.columns:
        raise KeyError(f"{metric!r} is not a column of the comparison table")
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(table) + 1.4))
    try:
        draw_metric(ax, table, metric)
        ax.set_title(f"{metric} by run")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def write_comparison(table: pd.DataFrame, out_dir: Path, metric: str | None) -> list[Path]:
    """Write ``comparison.md``, ``comparison.csv`` and, if ``metric`` is a column, its chart.

    For multi-horizon runs (``test/h1/rmse``, ``test/h4/rmse`` ... instead of ``test/rmse``)
    one chart per horizon is drawn.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "comparison.md", out_dir / "comparison.csv"]
    written[0].write_text(to_markdown(table))
    table.to_csv(written[1])
    charts = [metric] if metric in table.columns else []
    if metric and not charts and "/" in metric:
        prefix, name = metric.split("/", 1)
        pattern = re.compile(rf"{re.escape(prefix)}/h\d+/{re.escape(name)}")
        charts = [c for c in table.columns if pattern.fullmatch(str(c))]
    for column in charts:
        if table[column].notna().any():
            written.append(plot_metric(table, column, out_dir / metric_filename(column)))
    return written


LOSS_COLUMNS = {"val/loss": ("val/loss", "val_loss"), "train/loss": ("train/loss", "train_loss")}


def _per_epoch(rows: pd.DataFrame, source: str) -> pd.DataFrame | None:
    """One row per epoch (the last logged value of each loss), or None without ``val/loss``."""
    out = pd.DataFrame(index=rows.index)
    for name, aliases in LOSS_COLUMNS.items():
        found = next((a for a in aliases if a in rows.columns), None)
        if found is not None:
            out[name] = pd.to_numeric(rows[found], errors="coerce")
    if "epoch" not in rows.columns or "val/loss" not in out.columns:
        return None
    out["epoch"] = pd.to_numeric(rows["epoch"], errors="coerce")
    out = out.dropna(subset=["epoch"]).groupby("epoch", sort=True).last().reset_index()
    out = out.dropna(subset=["val/loss"])
    if out.empty:
        return None
    out["epoch"] = out["epoch"].astype(int)
    out.attrs["source"] = source
    return out


def epoch_losses(run_dir: Path) -> pd.DataFrame | None:
    """Per-epoch losses of a torch run, from whatever its logger left in the run folder.

    Sources, first found wins: ``metrics.csv`` (the per-epoch log written for every run),
    ``csv/metrics.csv`` (``logger=csv``), then W&B offline runs (``logger=wandb``, the default,
    without a W&B login: ``wandb/offline-run-*``; with several, as under walk-forward, the last
    one holding ``val/loss``, i.e. the last fold). Nothing is read over the network.

    Returns:
        ``epoch``, ``val/loss`` and, when logged, ``train/loss``, one row per epoch, with
        ``attrs["source"]`` naming the file read; None when no source has a validation loss
        (LightGBM, naive, ``fast_dev_run``).
    """
    run_dir = Path(run_dir)
    for path in (run_dir / "metrics.csv", run_dir / "csv" / "metrics.csv"):
        if path.exists():
            found = _per_epoch(pd.read_csv(path), str(path))
            if found is not None:
                return found
    offline = sorted(p for p in (run_dir / "wandb").glob("offline-run-*") if p.is_dir())
    if offline:
        from cryptoforecast.tracking.wandb_setup import read_offline_run

        for folder in reversed(offline):
            history = pd.DataFrame(read_offline_run(folder)["history"])
            found = _per_epoch(history, str(folder))
            if found is not None:
                return found
    return None
