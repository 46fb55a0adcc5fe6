"""Ablation reports (markdown, CSV, JSON, PNG, README sections) and the study-file driver.

:mod:`cryptoforecast.pipelines.ablation` defines studies, runs their arms and evaluates them;
this module writes what a :class:`~cryptoforecast.pipelines.ablation.StudyResult` says and runs
whole study files from the command line (``experiments/ablations/run_ablations.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cryptoforecast.paths import PROJECT_ROOT
from cryptoforecast.pipelines.ablation import (
    ALPHA,
    ARM_COLUMNS,
    ArmRun,
    Study,
    StudyConfigError,
    StudyFile,
    StudyNotReady,
    StudyResult,
    _p_phrase,
    _rel,
    evaluate_study,
    execute_arm,
    fmt_p,
    load_study_file,
    plan_study,
)
from cryptoforecast.utils.report import fmt_value, json_clean

log = logging.getLogger(__name__)


def persistence_sentence(result: StudyResult) -> str:
    """Which arms beat or lose to zero-return persistence (DM p < 0.05), in words."""
    better = [
        a
        for a, r in result.arms.items()
        if r["dm_vs_persistence_p"] < ALPHA and r["dm_vs_persistence_stat"] < 0
    ]
    worse = [
        a
        for a, r in result.arms.items()
        if r["dm_vs_persistence_p"] < ALPHA and r["dm_vs_persistence_stat"] > 0
    ]

    def names(arms: list[str]) -> str:
        return ", ".join(f"`{a}`" for a in arms)

    parts = [
        f"significantly better than zero-return persistence: {names(better)}"
        if better
        else "no arm is significantly better than zero-return persistence"
    ]
    if worse:
        parts.append(f"significantly worse: {names(worse)}")
    return "; ".join(parts) + " (DM p < 0.05)."


# ----------------------------------------------------------------------------- reports


def arm_table(result: StudyResult) -> pd.DataFrame:
    """The per-arm table (``<study>.csv``), persistence last."""
    rows = {a: {k: r.get(k) for k in ARM_COLUMNS} for a, r in result.arms.items()}
    p = result.persistence
    rows["persistence (zero return)"] = {
        "rmse": p["rmse"],
        "rmse_vs_persistence_pct": 0.0,
        "mae": p["mae"],
        "directional_accuracy": p["directional_accuracy"],
        "dir_p_value": p["dir_p_value"],
    }
    table = pd.DataFrame(rows).T.reindex(columns=ARM_COLUMNS)
    table.index.name = "arm"
    return table


def _arm_markdown(result: StudyResult) -> list[str]:
    head = (
        "| arm | RMSE (USD) | vs persistence | MAE (USD) | dir. acc. (binomial p) | "
        "DM vs persistence (stat, p) | total return after costs | Sharpe | trades | "
        "train s | params |"
    )
    lines = [head, "|---" * 11 + "|"]
    for arm, r in result.arms.items():
        label = f"{arm} (baseline)" if arm == result.study.baseline else arm
        lines.append(
            f"| {label} | {r['rmse']:.2f} | {r['rmse_vs_persistence_pct']:+.2f} % | "
            f"{r['mae']:.2f} | {r['directional_accuracy']:.3f} ({fmt_p(r['dir_p_value'])}) | "
            f"{fmt_value(r['dm_vs_persistence_stat'], 3)}, {fmt_p(r['dm_vs_persistence_p'])} | "
            f"{_pct(r['backtest_total_return'])} | {fmt_value(r['backtest_sharpe'], 3)} | "
            f"{fmt_value(r['n_trades'], 4)} | {fmt_value(r['train_seconds'], 3)} | "
            f"{fmt_value(r['params'], 6)} |"
        )
    p = result.persistence
    lines.append(
        f"| persistence (zero return) | {p['rmse']:.2f} | - | {p['mae']:.2f} | "
        f"{p['directional_accuracy']:.3f} ({fmt_p(p['dir_p_value'])}) | - | 0 % | - | 0 | - | - |"
    )
    rules = sorted({str(r.get("backtest_rule", "sign")) for r in result.arms.values()})
    lines += ["", backtest_rule_note(rules)]
    return lines


def backtest_rule_note(rules: list[str]) -> str:
    """Which trading rule the total return, Sharpe and trades columns use, in words."""
    words = {
        "cost": "`cost` rule (trade only forecasts whose expected move clears the round-trip "
        "cost of fees and slippage)",
        "sign": "`sign` rule (trade the sign of every forecast, whatever its size)",
    }
    said = " and ".join(words.get(r, f"`{r}` rule") for r in rules)
    return f"Total return, Sharpe and trades: after fees and slippage, {said}."


def _pct(v: Any) -> str:
    return "-" if v is None or not math.isfinite(float(v)) else f"{100.0 * float(v):+.1f} %"


def _comparison_markdown(result: StudyResult) -> list[str]:
    lines = [
        "| treatment vs baseline | RMSE change (USD) | return-RMSE change [95 % CI] | "
        "DM stat | DM p | dir. acc. change | MAE change |",
        "|---" * 7 + "|",
    ]
    for c in result.comparisons:
        ci = c["return_rmse_change_ci95"]
        ci_text = f"[{ci[0]:+.2f} %, {ci[1]:+.2f} %]" if ci else "-"
        lines.append(
            f"| {c['treatment']} vs {c['baseline']} | {c['rmse_change_pct']:+.2f} % | "
            f"{c['return_rmse_change_pct']:+.2f} % {ci_text} | {fmt_value(c['dm_stat'], 3)} | "
            f"{fmt_p(c['dm_p'])} | {100.0 * c['da_diff']:+.2f} pp | "
            f"{c['mae_change_pct']:+.2f} % |"
        )
    return lines


def _setup_lines(result: StudyResult) -> list[str]:
    i = result.info
    dropped = {k: v for k, v in i["rows_dropped"].items() if v}
    align = (
        "identical test rows in every arm (checked)"
        if not dropped
        else f"align: intersection, rows dropped: {dropped}"
    )
    return [
        f"- Data: {i['data_source']} {i['interval']} candles, the {i['data_days']} days before "
        f"{i['data_end']} (exclusive); evaluated on the rows of {', '.join(i['symbols'])}.",
        f"- Folds: {i['n_folds']} expanding walk-forward folds of {i['test_bars']} test bars "
        f"({i['val_bars']} validation bars), fresh scaler and model per fold; "
        f"{i['n_rows']} pooled out-of-sample forecasts, {i['test_start']} -> {i['test_end']} "
        f"(last input bar, UTC), horizon {i['horizon']}; {align}.",
        f"- Models: {', '.join(i['models'])}"
        + (f" (nets: trainer.max_epochs={i['max_epochs']}, early stopping)" if i["nets"] else "")
        + f"; seeds: {i['seed_mode']}.",
    ]


def study_markdown(result: StudyResult, command: str, png_name: str) -> str:
    """The study's section: question, command, setup, tables, conclusion (for .md and README)."""
    s = result.study
    lines = [f"### {s.name}", "", f"**Question.** {s.question}", ""]
    lines += ["```bash", command, "```", ""]
    lines += _setup_lines(result)
    lines.append(
        f"- Study overrides (after the file's `shared`): `{' '.join(s.overrides) or '-'}`"
    )
    for arm, overrides in s.arms.items():
        lines.append(f"- arm `{arm}`: `{' '.join(overrides) or '(nothing added)'}`")
    lines += ["", *_arm_markdown(result), "", *_comparison_markdown(result), ""]
    lines.append(
        "RMSE and MAE in USD on the close reconstructed from the forecast return; DM = "
        "Diebold-Mariano on squared log-return errors, two-sided, HLN-corrected (negative "
        "statistic: the first model has the lower loss); the interval inverts that test."
    )
    if len(result.info["seeds"]) > 1:
        lines[-1] += (
            " Per-arm figures are means over the seeds; the DM tests, the return-RMSE change "
            "and its interval use the seed-averaged forecasts."
        )
    lines += [
        "",
        "**Conclusion.** "
        + " ".join(c[0].upper() + c[1:] + "." for c in result.conclusions)
        + " "
        + persistence_sentence(result)[0].upper()
        + persistence_sentence(result)[1:],
    ]
    if result.claim_verdict:
        lines += ["", f"**Claim.** {result.claim_verdict}"]
    lines += ["", f"![{s.name}]({png_name})", ""]
    return "\n".join(lines)


def plot_study(result: StudyResult, path: Path) -> None:
    """RMSE relative to persistence per arm, annotated with the DM p-values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.arms)
    values = [result.arms[a]["rmse_vs_persistence_pct"] for a in names]
    by_treat = {c["treatment"]: c for c in result.comparisons}
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(names) + 2.0), 4.5))
    colors = ["C7" if a == result.study.baseline else "C0" for a in names]
    bars = ax.bar(range(len(names)), values, color=colors)
    ax.axhline(0.0, color="k", lw=0.8)
    for bar, arm in zip(bars, names, strict=True):
        text = f"vs persistence: {_p_phrase(result.arms[arm]['dm_vs_persistence_p'])}"
        if arm in by_treat:
            text = f"vs {result.study.baseline}: {_p_phrase(by_treat[arm]['dm_p'])}\n" + text
        y = bar.get_height()
        ax.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, y),
            xytext=(0, 4 if y >= 0 else -4),
            textcoords="offset points",
            ha="center",
            va="bottom" if y >= 0 else "top",
            fontsize=8,
        )
    ax.set_xticks(range(len(names)), names, rotation=15, ha="right")
    ax.set_ylabel("RMSE vs zero-return persistence (%)")
    lo, hi = min([*values, 0.0]), max([*values, 0.0])
    pad = max(hi - lo, 0.05) * 0.6
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_title(
        f"{result.study.name}\nout-of-sample RMSE relative to persistence (DM p-values)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def marker(study: str, end: bool) -> str:
    """The README marker comment around a study's generated section."""
    return f"<!-- ablation:{study}:{'end' if end else 'start'} -->"


def update_readme(path: Path, study: str, section: str) -> None:
    """Replace the text between the study's markers in ``path``.

    Markers and section are appended when absent; a missing file is created with a title.

    Raises:
        ValueError: only one marker, or the end marker before the start.
    """
    start, end = marker(study, False), marker(study, True)
    block = f"{start}\n{section.rstrip()}\n{end}"
    text = path.read_text() if path.is_file() else "# Ablation studies\n"
    i, j = text.find(start), text.find(end)
    if (i < 0) != (j < 0) or (i >= 0 and j < i):
        raise ValueError(f"{path}: markers of study {study!r} are broken; fix them by hand")
    if i >= 0:
        text = text[:i] + block + text[j + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def write_study(result: StudyResult, out_dir: Path, command: str) -> dict[str, Path]:
    """Write ``<study>.csv/.md/.json/.png`` into ``out_dir`` and its README section."""
    name = result.study.name
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("csv", "md", "json", "png")}
    arm_table(result).to_csv(paths["csv"])
    plot_study(result, paths["png"])
    section = study_markdown(result, command, paths["png"].name)
    paths["md"].write_text(section)
    doc = {
        "study": name,
        "question": result.study.question,
        "command": command,
        "arms": {a: {"overrides": list(o)} for a, o in result.study.arms.items()},
        "baseline": result.study.baseline,
        "info": result.info,
        "metrics": result.arms,
        "persistence": result.persistence,
        "comparisons": result.comparisons,
        "conclusions": result.conclusions,
        "persistence_conclusion": persistence_sentence(result),
        "claim": None if result.study.claim is None else vars(result.study.claim),
        "claim_verdict": result.claim_verdict,
    }
    paths["json"].write_text(json.dumps(json_clean(doc), indent=2, allow_nan=False) + "\n")
    update_readme(out_dir / "README.md", name, section)
    return paths


# ----------------------------------------------------------------------------- driver


@dataclass
class RunOptions:
    """What :func:`run_studies` does: which studies, where, how small."""

    study_file: Path
    out_dir: Path
    runs_dir: Path
    only: tuple[str, ...] = ()
    smoke: bool = False
    force: bool = False
    command: str = ""


@dataclass
class Outcome:
    """Per study: ``done`` (with its result), ``skipped`` (not composable yet) or ``failed``."""

    status: str
    result: StudyResult | None = None
    message: str = ""


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} runs"),
        TimeElapsedColumn(),
        console=console,
    )


def _run_all(study: Study, runs: list[ArmRun], console: Console, force: bool) -> Iterator[ArmRun]:
    progress = _progress(console)
    with progress:
        task = progress.add_task(study.name, total=len(runs))
        for run in runs:
            progress.update(task, description=f"{study.name}: {run.arm} seed {run.seed}")
            done = execute_arm(run, force=force)
            state = (
                "reused (resolved config unchanged)"
                if done.reused
                else f"trained in {done.wall_seconds:.0f} s"
            )
            progress.console.print(f"  {study.name}/{run.arm} seed {run.seed}: {state}")
            progress.advance(task)
            yield done


def run_study(study: Study, spec: StudyFile, options: RunOptions, console: Console) -> StudyResult:
    """Plan, run (or reuse) and evaluate one study, then write its reports."""
    runs = plan_study(study, spec, options.runs_dir, smoke=options.smoke)
    runs = list(_run_all(study, runs, console, options.force))
    result = evaluate_study(study, runs)
    write_study(result, options.out_dir, options.command)
    return result


def _print_result(result: StudyResult, console: Console) -> None:
    rules = "/".join(sorted({str(r.get("backtest_rule")) for r in result.arms.values()}))
    table = Table(
        title=f"{result.study.name}: pooled out-of-sample (trade horizon); Sharpe: {rules} rule"
    )
    for col in ("arm", "RMSE", "vs pers. %", "dir acc", "DM p vs base", "Sharpe", "train s"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    by_treat = {c["treatment"]: c for c in result.comparisons}
    for arm, r in result.arms.items():
        p = fmt_p(by_treat[arm]["dm_p"]) if arm in by_treat else "(baseline)"
        table.add_row(
            arm,
            f"{r['rmse']:.2f}",
            f"{r['rmse_vs_persistence_pct']:+.2f}",
            f"{r['directional_accuracy']:.3f}",
            p,
            fmt_value(r["backtest_sharpe"], 3),
            fmt_value(r["train_seconds"], 3),
        )
    console.print(table)
    for line in result.conclusions:
        console.print(f"- {line}", highlight=False)
    console.print(f"- {persistence_sentence(result)}", highlight=False)
    if result.claim_verdict:
        console.print(f"- {result.claim_verdict}", highlight=False)


def run_studies(options: RunOptions, console: Console | None = None) -> dict[str, Outcome]:
    """Run the selected studies of a study file.

    A study that does not compose yet is skipped with a note; a failing one is reported and the
    others go on.

    Raises:
        StudyConfigError: the study file is malformed or ``only`` names an unknown study.
    """
    console = console or Console()
    spec = load_study_file(options.study_file)
    names = list(options.only) or list(spec.studies)
    unknown = [n for n in names if n not in spec.studies]
    if unknown:
        raise StudyConfigError(
            f"{options.study_file}: no study {unknown}; studies: {list(spec.studies)}"
        )
    outcomes: dict[str, Outcome] = {}
    for name in names:
        study = spec.studies[name]
        console.rule(f"study {name}")
        try:
            result = run_study(study, spec, options, console)
        except StudyNotReady as exc:
            note = f" ({study.note})" if study.note else ""
            console.print(f"[yellow]skipped {name}: config does not compose yet{note}: {exc}")
            outcomes[name] = Outcome("skipped", message=str(exc))
            continue
        except Exception as exc:  # report, go on with the other studies, exit non-zero
            log.exception("study %s failed", name)
            console.print(f"[red]study {name} failed: {type(exc).__name__}: {exc}")
            outcomes[name] = Outcome("failed", message=f"{type(exc).__name__}: {exc}")
            continue
        _print_result(result, console)
        console.print(f"reports: {options.out_dir / name}.{{csv,md,json,png}}, README.md section")
        outcomes[name] = Outcome("done", result=result)
    return outcomes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_ablations.py",
        description="Run ablation studies on identical walk-forward folds and write reports.",
    )
    p.add_argument("study_file", type=Path, help="study config YAML (studies.yaml)")
    p.add_argument("--only", action="append", default=[], metavar="STUDY",
                   help="run only this study (repeatable, or comma-separated)")  # fmt: skip
    p.add_argument("--smoke", action="store_true",
                   help="append the file's smoke overrides: tiny data, minutes")  # fmt: skip
    p.add_argument("--out", type=Path, default=None,
                   help="reports folder (default: the study file's folder; "
                        "with --smoke outputs/ablations_smoke)")  # fmt: skip
    p.add_argument("--runs", type=Path, default=None,
                   help="run folders (default: <out>/runs with --out, else "
                        "outputs/ablations[_smoke]/runs)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="retrain even if a run can be reused")
    return p


def options_from_args(argv: Sequence[str]) -> RunOptions:
    """Parse the command line into :class:`RunOptions` (defaults as in ``--help``)."""
    args = _parser().parse_args(list(argv))
    suffix = "_smoke" if args.smoke else ""
    default_out = PROJECT_ROOT / f"outputs/ablations{suffix}"
    out = args.out or (default_out if args.smoke else args.study_file.parent)
    runs = args.runs or ((args.out / "runs") if args.out else default_out / "runs")
    only = tuple(n.strip() for item in args.only for n in item.split(",") if n.strip())
    words = ["experiments/ablations/run_ablations.py", _rel(args.study_file)]
    words += [f"--only={n}" for n in only] + (["--smoke"] if args.smoke else [])
    words += [f"--{k}={_rel(getattr(args, k))}" for k in ("out", "runs") if getattr(args, k)]
    return RunOptions(
        study_file=args.study_file,
        out_dir=out,
        runs_dir=runs,
        only=only,
        smoke=args.smoke,
        force=args.force,
        command="python " + " ".join(shlex.quote(w) for w in words),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry (``experiments/ablations/run_ablations.py``).

    Returns:
        0 when no study failed (skipped studies do not fail the run), 1 otherwise, 2 on a
        malformed study file.
    """
    console = Console(width=max(Console().width, 110))
    if not logging.getLogger().handlers:  # a plain command line; keep a host's handlers
        logging.basicConfig(
            level=logging.WARNING, handlers=[RichHandler(console=console, show_path=False)]
        )
    log.setLevel(logging.INFO)
    logging.getLogger("lightning").setLevel(logging.WARNING)  # no per-run "GPU available" lines
    options = options_from_args(sys.argv[1:] if argv is None else argv)
    try:
        outcomes = run_studies(options, console)
    except StudyConfigError as exc:
        console.print(f"[red]{exc}")
        return 2
    console.rule("summary")
    for name, outcome in outcomes.items():
        extra = f" ({outcome.message})" if outcome.status != "done" else ""
        console.print(f"{name}: {outcome.status}{extra}", highlight=False)
    return 1 if any(o.status == "failed" for o in outcomes.values()) else 0
