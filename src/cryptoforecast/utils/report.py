"""Terminal summary tables (rich)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

log = logging.getLogger(__name__)

_ROWS = ("rmse", "mae", "mape", "r2", "directional_accuracy", "f1", "ic")
_SYMBOL_ROWS = ("rmse", "mae", "directional_accuracy", "ic")


def print_summary(metrics: dict[str, float], title: str, symbols: Sequence[str] = ()) -> None:
    """Print model vs persistence baselines for the headline metrics.

    With ``symbols`` (multi-asset runs) the first rows are pooled over all symbols, and a
    section per symbol follows with its own metrics and backtest (``test/<SYMBOL>/*``...).
    """
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("persistence (zero return)", justify="right")
    table.add_column("persistence (last change)", justify="right")
    for name in _ROWS:
        vals = [metrics.get(f"{p}/{name}") for p in ("test", "baseline", "baseline_last")]
        if vals[0] is None:
            continue
        table.add_row(name, *("-" if v is None else f"{v:.4f}" for v in vals))
    if "backtest/total_return" in metrics:
        table.add_section()
        for name, bh in (
            ("total_return", "bh_total_return"),
            ("sharpe", "bh_sharpe"),
            ("max_drawdown", "bh_max_drawdown"),
        ):
            value, hold = metrics.get(f"backtest/{name}"), metrics.get(f"backtest/{bh}")
            table.add_row(
                f"backtest {name} (after costs)", _num(value), f"buy & hold {_num(hold)}", ""
            )
        table.add_row(
            "backtest trades / exposure",
            _num(metrics.get("backtest/n_trades")),
            _num(metrics.get("backtest/exposure")),
            "",
        )
        if "backtest_sign/total_return" in metrics:
            table.add_row(
                "backtest_sign total_return / trades (every forecast's sign)",
                _num(metrics.get("backtest_sign/total_return")),
                f"trades {_num(metrics.get('backtest_sign/n_trades'))}",
                "",
            )
    for symbol in symbols:
        table.add_section()
        for name in _SYMBOL_ROWS:
            keys = [f"{p}/{symbol}/{name}" for p in ("test", "baseline", "baseline_last")]
            if keys[0] in metrics:
                table.add_row(f"{symbol} {name}", *(_num(metrics.get(k)) for k in keys))
        for name, bh in (("total_return", "bh_total_return"), ("sharpe", "bh_sharpe")):
            value = metrics.get(f"backtest/{symbol}/{name}")
            hold = metrics.get(f"backtest/{symbol}/{bh}")
            if value is not None:
                table.add_row(
                    f"{symbol} backtest {name}", _num(value), f"buy & hold {_num(hold)}", ""
                )
    Console().print(table)
    for line in stopped_at_start(metrics):
        log.warning(line)
        Console().print(f"[yellow]warning:[/yellow] {line}")


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


def _num(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


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
