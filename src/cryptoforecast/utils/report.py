"""Terminal summary tables (rich)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

log = logging.getLogger(__name__)

# (metric key, label, format) of the forecast table; regression and classification runs
_REGRESSION_ROWS = (
    ("rmse", "RMSE (price)", ".2f"),
    ("mae", "MAE (price)", ".2f"),
    ("mape", "MAPE (%)", ".3f"),
    ("r2", "R² (returns)", ".4f"),
    ("directional_accuracy", "dir. accuracy", ".4f"),
    ("f1", "F1 of up", ".4f"),
    ("ic", "IC (Spearman)", ".4f"),
)
_CLASSIFICATION_ROWS = (
    ("accuracy", "accuracy", ".4f"),
    ("auc", "AUC", ".4f"),
    ("brier", "Brier score", ".4f"),
    ("log_loss", "log loss", ".4f"),
    ("f1", "F1 of up", ".4f"),
)
# several horizons (or a symbol's section): the key metrics only
_KEY_REGRESSION = ("rmse", "mae", "r2", "directional_accuracy", "ic")
_KEY_CLASSIFICATION = ("accuracy", "auc", "brier", "log_loss")
# the row that carries the DM test (squared loss) and the one with the hit rate's binomial p
_DM_ROWS = frozenset({"rmse", "brier"})
_HIT_ROWS = frozenset({"directional_accuracy", "accuracy"})
_PREFIXES = ("test", "baseline", "baseline_last")
# backtest blocks shown as rows: the configured rule, then the sign rule when present
_BACKTESTS = (("backtest", "model"), ("backtest_sign", "model, sign rule"))
WIDTH = 80

_BT_KEYS = (
    "total_return",
    "sharpe",
    "max_drawdown",
    "n_trades",
    "exposure",
    "bh_total_return",
    "bh_sharpe",
    "bh_max_drawdown",
)


def _horizon_keys(metrics: dict[str, float]) -> list[str]:
    """``["test"]`` for one horizon, ``["test/h1", "test/h4", ...]`` (by horizon) for several."""
    hs = sorted(
        {
            int(k.split("/")[1][1:])
            for k in metrics
            if re.fullmatch(r"test/h\d+/(rmse|accuracy)", k)
        }
    )
    return [f"test/h{h}" for h in hs] or ["test"]


def _significance(metrics: dict[str, float], key: str, name: str) -> str:
    """DM statistic and p beside the squared-loss row; the binomial p beside the hit rate."""
    if name in _DM_ROWS:
        stat, p = metrics.get(f"{key}/dm_stat"), metrics.get(f"{key}/dm_p")
        if stat is not None and p is not None and stat == stat:
            return f"DM {stat:+.2f} p {_p(p)}"
    if name in _HIT_ROWS:
        p = metrics.get(f"{key}/hit_p")
        if p is not None and p == p:
            return f"binom. p {_p(p)}"
    return ""


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def forecast_table(
    metrics: dict[str, float], title: str, symbols: Sequence[str] = ()
) -> Table | None:
    """Model vs both persistence forecasts, per horizon, with the tests beside them.

    Returns:
        The table, or None when ``metrics`` holds no ``test/*`` forecast metric.
    """
    classifier = any(k.endswith("/auc") or k.endswith("/brier") for k in metrics)
    rows = _CLASSIFICATION_ROWS if classifier else _REGRESSION_ROWS
    key_names = _KEY_CLASSIFICATION if classifier else _KEY_REGRESSION
    horizon_keys = _horizon_keys(metrics)
    several = len(horizon_keys) > 1
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption=(
            "zero ret.: zero-return persistence (random walk); last chg.: the last h-bar change "
            "repeats. DM: Diebold-Mariano test vs zero ret. on squared "
            + ("error of p_up" if classifier else "error")
            + " (negative: model better), two-sided; binom. p: hit rate > 50 %, one-sided."
        ),
    )
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("zero ret.", justify="right")
    table.add_column("last chg.", justify="right")
    table.add_column("vs zero ret.")
    shown = False
    for i, key in enumerate(horizon_keys):
        suffix = key[len("test") :]  # "" or "/h4"
        label = f"h{suffix[2:]} " if several else ""
        if i:
            table.add_section()
        for name, text, fmt in rows:
            if several and name not in key_names:
                continue
            vals = [metrics.get(f"{p}{suffix}/{name}") for p in _PREFIXES]
            if vals[0] is None:
                continue
            shown = True
            cells = [_fmt(v, fmt) for v in vals]
            table.add_row(label + text, *cells, _significance(metrics, key, name))
    for symbol in symbols:
        table.add_section()
        for name, text, fmt in rows:
            if name not in key_names:
                continue
            vals = [metrics.get(f"{p}/{symbol}/{name}") for p in _PREFIXES]
            if vals[0] is not None:
                table.add_row(f"{symbol} {text}", *(_fmt(v, fmt) for v in vals), "")
    return table if shown else None


def stopped_at_start(metrics: dict[str, float]) -> list[str]:
    """Warnings for models whose early stopping kept their first iteration or epoch.

    Reads ``[fold<k>/][<base>/]train/best_iteration_h<h>`` (LightGBM, 1 = the first boosting
    round) and ``train/best_epoch`` (torch nets, 1 = the first epoch): such a model never beat
    its start on validation data, so its forecasts are close to its initial guess. A net that
    ran a single epoch (``train/epochs`` 1) had no later epoch to prefer and is not reported.
    """
    hits: dict[str, list[str]] = {}
    for key, value in sorted(metrics.items()):
        head, sep, name = key.rpartition("train/")
        if not sep or not (name == "best_epoch" or name.startswith("best_iteration_h")):
            continue
        ran = metrics.get(f"{head}train/epochs") if name == "best_epoch" else None
        if value is not None and value == 1 and (ran is None or ran > 1):
            what = "epoch" if name == "best_epoch" else f"iteration ({name.rsplit('_', 1)[1]})"
            hits.setdefault(what, []).append(head.rstrip("/") or "the model")
    return [
        f"early stopping kept the first {what} in {len(where)} fit(s) "
        f"({', '.join(where)}): the model never beat its start on validation data"
        for what, where in hits.items()
    ]


def backtest_table(metrics: dict[str, float], symbols: Sequence[str] = ()) -> Table | None:
    """The backtest(s) after costs beside buy and hold over the same bars.

    One row per block present (``backtest/*``; ``backtest_sign/*`` when written), then buy and
    hold; with ``symbols`` the same rows per symbol (``backtest/<SYMBOL>/*``).

    Returns:
        The table, or None without ``backtest/total_return``.
    """
    if "backtest/total_return" not in metrics:
        return None
    table = Table(
        title="backtest after costs (buy & hold: same bars, no costs)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("strategy", "total ret.", "Sharpe", "max DD", "trades", "exposure"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for i, scope in enumerate(("", *(f"/{s}" for s in symbols))):
        if i:
            table.add_section()
        name = scope[1:] + " " if scope else ""
        hold = None
        for block, text in _BACKTESTS:
            m = {k: metrics.get(f"{block}{scope}/{k}") for k in _BT_KEYS}
            if m["total_return"] is None:
                continue
            hold = hold or m
            table.add_row(
                f"{name}{text}",
                _pct(m["total_return"]),
                _fmt(m["sharpe"], ".2f"),
                _pct(m["max_drawdown"]),
                _fmt(m["n_trades"], ".0f"),
                _pct(m["exposure"]),
            )
        if hold is not None:
            table.add_row(
                f"{name}buy & hold",
                _pct(hold["bh_total_return"]),
                _fmt(hold["bh_sharpe"], ".2f"),
                _pct(hold["bh_max_drawdown"]),
                "-",
                "100.0 %",
            )
    return table


def print_summary(
    metrics: dict[str, float],
    title: str,
    symbols: Sequence[str] = (),
    console: Console | None = None,
) -> None:
    """Print the forecast table (model vs persistence, tests beside) and the backtest table.

    Multi-horizon runs get the key metrics per horizon, classifiers accuracy, AUC, Brier score
    and log loss; every cell is labelled and both tables fit an 80-column terminal. With
    ``symbols`` (multi-asset runs) the first rows are pooled over all symbols, and a section per
    symbol follows with its own metrics and backtest (``test/<SYMBOL>/*``...).

    Args:
        metrics: the run's flat metrics (``metrics.json``).
        title: the forecast table's title.
        symbols: the symbols of a multi-asset run (empty for one symbol).
        console: where to print; default a new ``rich`` console at most 80 columns wide.
    """
    console = console or Console(width=min(WIDTH, Console().width))
    for table in (forecast_table(metrics, title, symbols), backtest_table(metrics, symbols)):
        if table is not None:
            console.print(table)
    for line in stopped_at_start(metrics):
        log.warning(line)
        console.print(f"[yellow]warning:[/yellow] {line}")


def _fmt(value: float | None, fmt: str) -> str:
    return "-" if value is None or value != value else format(value, fmt)


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f} %"


def fmt_value(v: Any, digits: int = 4) -> str:
    """A table cell: ``-`` for None/NaN/inf, floats with ``digits`` significant digits."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def json_clean(v: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None, keys to str."""
    if isinstance(v, dict):
        return {str(k): json_clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
