"""``cryptoforecast`` operations CLI: data check / download.

Heavy imports (pandas, torch, lightning) happen inside the commands, so ``--help`` stays instant.
Bad data ends with a one-paragraph message and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cryptoforecast`` console script; returns the exit code."""
    parser = _build_parser()
    # `cryptoforecast train SYMBOL --epochs 5 key=value ...`: Hydra overrides may follow options.
    args, extra = parser.parse_known_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    if extra:
        takes_overrides = args.func in (_cmd_train, _cmd_retrain)
        if not takes_overrides or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from cryptoforecast.data.schema import DataError, DataSourceError

    try:
        return int(args.func(args))
    except (DataError, DataSourceError) as exc:
        _console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 1


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptoforecast",
        description="cryptoforecast: data, training, comparison, sentiment scoring, export, "
        "registry, serving, paper trading, monitoring and retraining.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(title="commands")

    data = sub.add_parser("data", help="check or download candle data")
    data_sub = data.add_subparsers(title="data commands")

    check = data_sub.add_parser(
        "check", help="quality report for a candle file or a bundled symbol"
    )
    check.add_argument("target", help="a CSV/CSV.gz/parquet path, or a bundled symbol (BTCUSDT)")
    check.add_argument("--market", default="spot", choices=["spot", "futures"])
    check.add_argument("--interval", default=None, help="bar length (default: inferred)")
    check.add_argument("--spike-z", type=float, default=None, help="robust z for spikes")
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")
    check.add_argument("--max-list", type=int, default=30, help="gaps/spikes listed in the table")
    check.add_argument(
        "--off-grid",
        default="refuse",
        choices=["refuse", "snap", "drop"],
        help="off-grid timestamps: refuse (default), snap forward, or drop",
    )
    check.set_defaults(func=_cmd_data_check)

    train = sub.add_parser(
        "train",
        help="train a model (alias of `python train.py` with the research report's options)",
        description="Maps the options onto Hydra overrides and runs the same pipeline as "
        "`python train.py`; anything after the options is passed on as Hydra overrides, e.g. "
        "`cryptoforecast train BTCUSDT --model-type tcn --days 365 split=walk_forward`. "
        "Writes the run folder outputs/train/runs/<time>_<model>/.",
    )
    train.add_argument("symbol", help="e.g. BTCUSDT (bundled: BTCUSDT, ETHUSDT)")
    train.add_argument("--model-type", default="attention_lstm", help="a conf/model/*.yaml name")
    train.add_argument("--variant", default=None, help="lightweight | default | deep")
    train.add_argument("--days", type=float, default=None, help="last N days (default 365)")
    train.add_argument("--epochs", type=int, default=None, help="max epochs (torch models)")
    train.add_argument("--interval", default=None, help="1h (default), 4h, 1d")
    train.add_argument("--task", default=None, choices=["regression", "classification"])
    train.add_argument("--horizon", default=None, help="bars ahead, e.g. 1 or [1,4,24]")
    train.add_argument("overrides", nargs="*", help="extra Hydra overrides (key=value)")
    train.set_defaults(func=_cmd_train)

    dl = data_sub.add_parser("download", help="download candles into the cache")
    dl.add_argument("--source", default="binance", choices=["binance", "ccxt"])
    dl.add_argument("--symbol", default="BTCUSDT")
    dl.add_argument("--interval", default="1h")
    dl.add_argument("--days", type=float, default=365, help="the last N days (default 365)")
    dl.add_argument("--start", default=None, help="ISO UTC start (instead of --days)")
    dl.add_argument("--end", default=None, help="ISO UTC exclusive end (default: now)")
    dl.add_argument("--market", default="spot", choices=["spot", "futures"])
    dl.add_argument("--exchange", default="binance", help="ccxt exchange id (--source ccxt)")
    dl.add_argument("--cache-dir", default=None, help="default: $CRYPTOFORECAST_CACHE or ~/.cache")
    dl.set_defaults(func=_cmd_data_download)

    cmp = sub.add_parser(
        "compare",
        help="compare saved runs: key metrics and the config keys that differ",
        description="Reads run folders (metrics.json), multirun/sweep folders (searched for run "
        "folders) and benchmark folders (benchmark.csv); prints one row per run and writes "
        "comparison.md, comparison.csv and comparison_<metric>.png into --out.",
    )
    cmp.add_argument("paths", nargs="+", type=Path, help="run, multirun or benchmark folders")
    cmp.add_argument("--sort", default="test/rmse", help="metric to sort by (default test/rmse)")
    cmp.add_argument("--desc", action="store_true", help="sort largest first")
    cmp.add_argument("--metrics", default="", help="extra metrics to show, comma-separated")
    cmp.add_argument("--out", type=Path, default=None, help="default: the first PATH (folder)")
    cmp.set_defaults(func=_cmd_compare)

    senti = sub.add_parser("sentiment", help="score timestamped texts into an hourly series")
    senti_sub = senti.add_subparsers(title="sentiment commands")
    score = senti_sub.add_parser(
        "score",
        help="TEXTS.csv (timestamp,text) -> hourly CSV (timestamp,sentiment,count)",
        description="Scores each text in [-1, 1] and averages per bucket; a text stamped ts "
        "counts in the bucket containing ts (usable at that bucket's close). Feed the output to "
        "the TextSentiment feature (features/sentiment.py).",
    )
    score.add_argument("texts", type=Path, help="CSV with timestamp,text columns")
    score.add_argument(
        "--out", type=Path, required=True, help="hourly CSV to write (e.g. outputs/hourly.csv)"
    )
    score.add_argument("--scorer", default="vader", choices=["vader", "transformers"])
    score.add_argument("--model-dir", type=Path, default=None, help="local model (transformers)")
    score.add_argument("--interval", default="1h", help="bucket length (default 1h)")
    score.set_defaults(func=_cmd_sentiment)
    _add_production_commands(sub)
    return parser


def _cmd_data_check(args: argparse.Namespace) -> int:
    from cryptoforecast.data.quality import QualityPolicy, check_candles
    from cryptoforecast.data.sources import infer_interval, read_candle_file

    path = _path_or_bundled(args.target, args.market, args.interval or "1h")
    raw = read_candle_file(path)
    interval = args.interval or infer_interval(raw["timestamp"], source=str(path))
    given = {} if args.spike_z is None else {"spike_z": args.spike_z}
    policy = QualityPolicy(off_grid=args.off_grid, **given)
    _, report = check_candles(raw, str(path), interval, policy)
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict()) + "\n")
    else:
        _print_report(report.to_dict(), args.max_list)
    return 0 if report.ok else 1


def train_overrides(args: argparse.Namespace) -> list[str]:
    """Hydra overrides equivalent to the report-style ``cryptoforecast train`` options."""
    out = [f"data.symbol={args.symbol.upper()}", f"model={args.model_type}"]
    pairs = [
        ("model.variant", args.variant),
        ("data.days", args.days),
        ("trainer.max_epochs", args.epochs),
        ("data.interval", args.interval),
        ("task", args.task),
        ("target.horizon", args.horizon),
    ]
    out += [
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in pairs
        if value is not None
    ]
    return out + list(args.overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    from cryptoforecast.models.factory import known_models

    if args.model_type not in known_models():
        from cryptoforecast.data.schema import DataError

        raise DataError(
            f"unknown model type {args.model_type!r}; known: {', '.join(known_models())}"
        )
    import shlex

    from cryptoforecast.pipelines.entry import train_main

    command = shlex.join(["cryptoforecast", *sys.argv[1:]])  # for the traceback hint
    sys.argv = ["cryptoforecast train", *train_overrides(args)]
    train_main(command)
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from cryptoforecast.data.loader import DataSpec, load_candles

    spec = DataSpec(
        source=args.source,
        symbol=args.symbol,
        interval=args.interval,
        days=None if args.start else args.days,
        start=args.start,
        end=args.end,
        market=args.market,
        exchange=args.exchange,
        native_interval=args.interval,
        cache_dir=args.cache_dir,
    )
    candles = load_candles(spec)
    _print_report(candles.report.to_dict(), max_list=10)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from cryptoforecast.evaluation.compare import (
        comparison_table,
        find_failed,
        find_runs,
        print_table,
        write_comparison,
    )

    console = _console()
    try:
        records = find_runs(args.paths)
    except FileNotFoundError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 1
    if not records:
        names = " ".join(map(str, args.paths))
        console.print(f"[bold red]error:[/] no run (metrics.json, benchmark.csv) under {names}")
        return 1
    extra = [m.strip() for m in args.metrics.split(",") if m.strip()]
    table = comparison_table(records, sort=args.sort, descending=args.desc, metrics=extra)
    first = args.paths[0]
    out = args.out or (first if first.is_dir() else first.parent)
    written = write_comparison(table, out, args.sort)
    title = f"{len(table)} run(s) by {args.sort}{' (descending)' if args.desc else ''}"
    print_table(table, title, console)
    for folder, error in find_failed(args.paths):
        console.print(f"[red]failed job[/] {folder}: {error}", highlight=False, soft_wrap=True)
    console.print("wrote " + ", ".join(map(str, written)), highlight=False, soft_wrap=True)
    return 0


def _cmd_sentiment(args: argparse.Namespace) -> int:
    from cryptoforecast.features.sentiment import (
        hourly_sentiment,
        make_scorer,
        read_texts,
        write_hourly,
    )

    texts = read_texts(args.texts)
    try:
        scorer = make_scorer(args.scorer, args.model_dir)
    except (ImportError, FileNotFoundError, ValueError) as exc:
        return _fail(exc)
    hourly = hourly_sentiment(texts, scorer, interval=args.interval)
    write_hourly(hourly, args.out)
    summary = {
        "out": str(args.out),
        "scorer": args.scorer,
        "texts": len(texts),
        "buckets": len(hourly),
        "mean_sentiment": float(hourly["sentiment"].mean()) if len(hourly) else None,
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


def _path_or_bundled(target: str, market: str = "spot", interval: str = "1h") -> Path:
    """A file path as given, or, for a bare symbol (BTCUSDT), the bundled candle file."""
    from cryptoforecast.data.sources import bundled_path

    path = Path(target)
    if not path.exists() and target.isalnum():
        path = bundled_path(target, market, interval)
    return path


def _print_report(rep: dict[str, Any], max_list: int) -> None:
    import math

    from rich.table import Table

    console = _console()
    table = Table(title=f"data quality: {rep['source']} ({rep['interval']})", show_header=False)
    table.add_column("check", style="bold")
    table.add_column("value")
    table.add_row("rows", f"{rep['rows']:,}")
    table.add_row("span (UTC, open times)", f"{rep['start']} -> {rep['end']}")
    table.add_row("missing bars", f"{rep['missing_bars']:,} in {len(rep['gaps'])} gap(s)")
    longest = rep["longest_gap_bars"]
    table.add_row(
        "longest gap", f"{longest} bars after {rep['longest_gap_after']}" if longest else "-"
    )
    table.add_row("duplicates dropped", str(rep["duplicates_dropped"]))
    table.add_row("unsorted rows", str(rep["unsorted_rows"]))
    table.add_row("zero-volume flat bars", ", ".join(rep["zero_volume_bars"]) or "0")
    table.add_row("return spikes", str(len(rep["spikes"])))
    table.add_row("warnings", str(len(rep["warnings"])))
    status = "[green]ok[/]" if not rep["errors"] else f"[red]{len(rep['errors'])} error(s)[/]"
    table.add_row("status", status)
    console.print(table)
    if rep["gaps"]:
        gaps = Table(title="gaps (last bar before the gap, missing bars)")
        gaps.add_column("after")
        gaps.add_column("missing", justify="right")
        for gap in rep["gaps"][:max_list]:
            gaps.add_row(gap["after"], str(gap["missing_bars"]))
        if len(rep["gaps"]) > max_list:
            gaps.add_row(f"... {len(rep['gaps']) - max_list} more (--json for all)", "")
        console.print(gaps)
    if rep["spikes"]:
        spikes = Table(title="return spikes (flagged, kept: check them against another source)")
        for col in ("bar (open time)", "return", "robust z", "previous close", "close"):
            spikes.add_column(col, justify="left" if col.startswith("bar") else "right")
        for spike in rep["spikes"][:max_list]:
            spikes.add_row(
                spike["timestamp"],
                f"{100 * math.expm1(spike['log_return']):+.2f} %",
                f"{spike['robust_z']:+.1f}",
                *(
                    f"{v:,.2f}" if v >= 1 else f"{v:.6g}"
                    for v in (spike.get("previous_close", math.nan), spike.get("close", math.nan))
                ),
            )
        if len(rep["spikes"]) > max_list:
            spikes.add_row(f"... {len(rep['spikes']) - max_list} more (--json for all)", "", "")
        console.print(spikes)
    for msg in rep["errors"]:
        console.print(f"[red]error:[/] {msg}", highlight=False, soft_wrap=True)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


# ---------------------------------------------------------------- export, registry, serving
# Export imports torch (lazily); predict / serve / registry / paper-trade never do.


def _add_production_commands(sub: Any) -> None:
    exp = sub.add_parser("export", help="export a run folder as a verified ONNX bundle")
    exp.add_argument("run_dir", type=Path, help="a train.py run folder (outputs/train/runs/...)")
    exp.add_argument(
        "--out", type=Path, default=None, help="bundle folder (default: RUN_DIR/bundle)"
    )
    exp.add_argument("--fold", type=int, default=None, help="walk-forward fold (default: last)")
    exp.set_defaults(func=_cmd_export)

    reg = sub.add_parser("registry", help="versioned model store with stages")
    reg.add_argument(
        "--root",
        type=Path,
        default=None,
        help="default: $CRYPTOFORECAST_REGISTRY, else ~/.cryptoforecast/registry",
    )
    reg_sub = reg.add_subparsers(title="registry commands")
    r = reg_sub.add_parser("register", help="add a bundle as the next version of NAME")
    r.add_argument("bundle", type=Path)
    r.add_argument("--name", required=True)
    r.set_defaults(func=_cmd_registry, action="register")
    reg_sub.add_parser("list", help="models, versions, stages").set_defaults(
        func=_cmd_registry, action="list"
    )
    r = reg_sub.add_parser("show", help="one version: NAME, NAME:VERSION or NAME@STAGE")
    r.add_argument("ref")
    r.set_defaults(func=_cmd_registry, action="show")
    r = reg_sub.add_parser("promote", help="set the staging or production version")
    r.add_argument("name")
    r.add_argument("version", type=int)
    r.add_argument("--stage", required=True, choices=["staging", "production"])
    r.set_defaults(func=_cmd_registry, action="promote")
    r = reg_sub.add_parser("rollback", help="restore the previous version of a stage")
    r.add_argument("name")
    r.add_argument("--stage", default="production", choices=["staging", "production"])
    r.set_defaults(func=_cmd_registry, action="rollback")
    reg_sub.add_parser(
        "verify",
        help="check every version's files and checksums and every stages.json; exit 1 on a fault",
    ).set_defaults(func=_cmd_registry, action="verify")

    pred = sub.add_parser("predict", help="forecast at the newest candle of a file")
    serve = sub.add_parser("serve", help="HTTP API: POST /predict, GET /health, GET /model")
    for p in (pred, serve):
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--model", help="registry reference: NAME@production, NAME:3, NAME")
        which.add_argument("--bundle", type=Path, help="a bundle folder")
        p.add_argument("--registry", type=Path, default=None, help="registry root")
    pred.add_argument("--data", required=True, help="candles: CSV/CSV.gz/parquet or a symbol")
    pred.add_argument(
        "--off-grid",
        default="refuse",
        choices=["refuse", "snap", "drop"],
        help="off-grid timestamps: refuse (default), snap forward, or drop",
    )
    pred.set_defaults(func=_cmd_predict)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        help="request body cap, 413 beyond it (default: the model's min_history candles at "
        "256 bytes each, times 4, at least 1 MiB)",
    )
    serve.set_defaults(func=_cmd_serve)

    paper = sub.add_parser("paper-trade", help="replay candles bar by bar through a model")
    which = paper.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="registry reference: NAME@production, NAME:3, NAME")
    which.add_argument("--bundle", type=Path, help="a bundle folder")
    paper.add_argument("--registry", type=Path, default=None, help="registry root")
    paper.add_argument("--data", required=True, help="candles: CSV/CSV.gz/parquet or a symbol")
    paper.add_argument("--start", required=True, help="first decision bar (ISO, UTC)")
    paper.add_argument("--end", default=None, help="last decision bar (default: the last)")
    paper.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/paper_trade"),
        help="output folder for decisions.parquet, trades, equity and the monitor files "
        "(default: outputs/paper_trade)",
    )
    paper.add_argument(
        "--no-monitor", action="store_true", help="skip the monitor outputs (alerts.jsonl, ...)"
    )
    paper.set_defaults(func=_cmd_paper_trade)
    _add_monitor_command(sub)

    rt = sub.add_parser(
        "retrain",
        help="retrain a registered model on the newest data; promote it only if it wins",
        description="Re-runs walk-forward training with the config of NAME@production (else the "
        "latest version) on the newest candles, registers the new model as the next version and "
        "promotes it to production only if it beats the current one on the new run's latest "
        "validation segment; writes retrain_report.json into the run folder. Anything after the "
        "options is a Hydra-style override of the registered config (key=value, +key=value).",
    )
    rt.add_argument("name", help="registered model name")
    rt.add_argument("--registry", type=Path, default=None, help="registry root")
    rt.add_argument("--data", default=None, help="newer candles: CSV/CSV.gz/parquet or a symbol")
    rt.add_argument("--days", type=float, default=None, help="last N days (default: as before)")
    rt.add_argument(
        "--out",
        type=Path,
        default=None,
        help="new run folder (default: outputs/retrain/runs/<time>_<name>)",
    )
    rt.add_argument(
        "--min-improvement",
        type=float,
        default=0.0,
        help="relative margin the challenger must beat the champion by (0: strictly better)",
    )
    rt.add_argument("--dry-run", action="store_true", help="train and score; register nothing")
    rt.add_argument("--json", action="store_true", help="print only the report as JSON")
    rt.add_argument("overrides", nargs="*", help="Hydra-style overrides (key=value)")
    rt.set_defaults(func=_cmd_retrain)


def _production_errors() -> tuple[type[Exception], ...]:
    from cryptoforecast.export.bundle import BundleError
    from cryptoforecast.registry.store import RegistryError

    errors: list[type[Exception]] = [BundleError, RegistryError]
    if "cryptoforecast.export.onnx" in sys.modules:
        errors.append(sys.modules["cryptoforecast.export.onnx"].ExportError)
    return tuple(errors)


def _fail(exc: Exception) -> int:
    _console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return 1


def _cmd_export(args: argparse.Namespace) -> int:
    from cryptoforecast.export.bundle import export_run

    try:
        out = export_run(args.run_dir, args.out, args.fold)
    except _production_errors() as exc:
        return _fail(exc)
    manifest = json.loads((out / "manifest.json").read_text())
    sys.stdout.write(json.dumps({"bundle": str(out), "parity": manifest["parity"]}) + "\n")
    return 0


def _cmd_registry(args: argparse.Namespace) -> int:
    from cryptoforecast.registry.store import Registry

    registry = Registry(args.root)
    try:
        if args.action == "register":
            result: Any = {"name": args.name, "version": registry.register(args.bundle, args.name)}
        elif args.action == "list":
            result = registry.list()
        elif args.action == "show":
            result = registry.show(args.ref)
        elif args.action == "verify":
            rows = registry.verify()
            bad = [r for r in rows if not r["ok"]]
            summary = {"root": str(registry.root), "checked": len(rows), "faults": len(bad)}
            sys.stdout.write(json.dumps({**summary, "results": rows}, indent=1) + "\n")
            for row in bad:
                _fail(RuntimeError(row["error"]))
            return 1 if bad else 0
        elif args.action == "promote":
            registry.promote(args.name, args.version, args.stage)
            result = {"name": args.name, "version": args.version, "stage": args.stage}
        else:
            version = registry.rollback(args.name, args.stage)
            result = {"name": args.name, "stage": args.stage, "version": version}
    except _production_errors() as exc:
        return _fail(exc)
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    return 0


def _load_predictor(args: argparse.Namespace) -> Any:
    from cryptoforecast.serving.predictor import Predictor

    if args.bundle is not None:
        return Predictor.from_bundle(args.bundle)
    return Predictor.from_registry(args.model, root=args.registry)


def _cmd_predict(args: argparse.Namespace) -> int:
    from cryptoforecast.data.quality import QualityPolicy
    from cryptoforecast.data.sources import read_candle_file

    try:
        predictor = _load_predictor(args)
    except _production_errors() as exc:
        return _fail(exc)
    predictor.quality = QualityPolicy(off_grid=args.off_grid)
    path = _path_or_bundled(args.data)  # the file's name and rows are in the messages
    sys.stdout.write(json.dumps(predictor.predict(read_candle_file(path)), indent=1) + "\n")
    return 0


def _cmd_paper_trade(args: argparse.Namespace) -> int:
    from cryptoforecast.data.sources import read_candle_file
    from cryptoforecast.serving.monitor import MonitorSpec
    from cryptoforecast.serving.paper import paper_trade

    try:
        predictor = _load_predictor(args)
    except _production_errors() as exc:
        return _fail(exc)
    path = _path_or_bundled(args.data)
    monitor = None if args.no_monitor else MonitorSpec()
    try:
        raw = read_candle_file(path)
        result = paper_trade(predictor, raw, args.start, args.end, monitor=monitor)
    except _production_errors() as exc:  # e.g. an unreadable training_stats.json
        return _fail(exc)
    result.save(args.out)
    keys = ("n_decisions", "total_return", "sharpe", "max_drawdown", "n_trades", "bh_total_return")
    summary: dict[str, Any] = {k: result.metrics.get(k) for k in keys}
    if result.monitor is not None:
        summary["alerts"] = len(result.monitor.alerts)
    sys.stdout.write(json.dumps({"out": str(args.out), **summary}) + "\n")
    return 0


def _add_monitor_command(sub: Any) -> None:
    mon = sub.add_parser(
        "monitor",
        help="rolling accuracy and MAE vs persistence, feature drift (PSI), alerts",
        description="Scores a model's decisions as their outcomes become known (rolling "
        "directional accuracy, MAE / persistence MAE), tracks feature drift (PSI against the "
        "bundle's training deciles) and writes alert events when a threshold is crossed. The "
        "decisions come from --decisions (a paper-trade decisions.parquet) or from running the "
        "model bar by bar over --start .. --end. Writes monitor.parquet, scores.parquet, "
        "psi.parquet, alerts.jsonl, monitor_summary.json and monitor.png into --out.",
    )
    which = mon.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="registry reference: NAME@production, NAME:3, NAME")
    which.add_argument("--bundle", type=Path, help="a bundle folder")
    mon.add_argument("--registry", type=Path, default=None, help="registry root")
    mon.add_argument("--data", required=True, help="candles: CSV/CSV.gz/parquet or a symbol")
    mon.add_argument("--start", default=None, help="first decision bar (ISO, UTC)")
    mon.add_argument("--end", default=None, help="last decision bar (default: the last)")
    mon.add_argument("--decisions", type=Path, default=None, help="decisions.parquet to score")
    mon.add_argument(
        "--out", type=Path, default=Path("outputs/monitor"), help="default: outputs/monitor"
    )
    mon.add_argument("--window", type=int, default=None, help="scored decisions (default 168)")
    mon.add_argument("--min-periods", type=int, default=None, help="default min(48, window)")
    mon.add_argument("--drift-window", type=int, default=None, help="PSI rows (default 168)")
    mon.add_argument("--drift-min-periods", type=int, default=None, help="default: the window")
    mon.add_argument("--da-floor", type=float, default=None, help="alert below (default 0.5)")
    mon.add_argument(
        "--mae-ratio-ceiling", type=float, default=None, help="alert above (default 1.05)"
    )
    mon.add_argument("--psi-threshold", type=float, default=None, help="alert above (0.25)")
    mon.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    mon.set_defaults(func=_cmd_monitor)


def _monitor_spec(args: argparse.Namespace) -> Any:
    from cryptoforecast.serving.monitor import MonitorSpec

    def given(value: Any, default: Any) -> Any:
        return default if value is None else value

    base = MonitorSpec()
    window = given(args.window, base.window)
    drift_window = given(args.drift_window, base.drift_window)
    return MonitorSpec(
        window=window,
        min_periods=given(args.min_periods, min(base.min_periods, max(window, 1))),
        drift_window=drift_window,
        drift_min_periods=given(args.drift_min_periods, max(drift_window, 1)),
        da_floor=given(args.da_floor, base.da_floor),
        mae_ratio_ceiling=given(args.mae_ratio_ceiling, base.mae_ratio_ceiling),
        psi_threshold=given(args.psi_threshold, base.psi_threshold),
    )


def _utc_time(value: str | None, flag: str) -> Any:
    import pandas as pd

    from cryptoforecast.data.schema import DataError

    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except ValueError as exc:
        raise DataError(f"{flag} {value!r}: not a timestamp (ISO, e.g. 2026-03-01T00:00)") from exc
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def _read_decisions(path: Path) -> Any:
    import pandas as pd

    from cryptoforecast.data.schema import DataError

    if not path.is_file():
        raise DataError(f"{path}: file not found (--decisions: a paper-trade decisions.parquet)")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise DataError(f"{path}: cannot read decisions: {exc}") from exc


def _cmd_monitor(args: argparse.Namespace) -> int:
    from cryptoforecast.data.schema import DataError
    from cryptoforecast.data.sources import read_candle_file
    from cryptoforecast.serving.monitor import monitor_predictor
    from cryptoforecast.serving.paper import paper_trade
    from cryptoforecast.utils.report import json_clean

    spec = _monitor_spec(args)
    start, end = _utc_time(args.start, "--start"), _utc_time(args.end, "--end")
    try:
        predictor = _load_predictor(args)
    except _production_errors() as exc:
        return _fail(exc)
    frame = predictor.prepare_candles(read_candle_file(_path_or_bundled(args.data)), keep_all=True)
    if args.decisions is not None:
        decisions = _read_decisions(args.decisions)
        if "timestamp" in decisions.columns and (start is not None or end is not None):
            ts = decisions["timestamp"]
            decisions = decisions[(ts >= (start or ts.min())) & (ts <= (end or ts.max()))]
    elif start is None:
        raise DataError("monitor: give --start (the first decision bar) or --decisions")
    else:
        decisions = paper_trade(predictor, frame, start, end).decisions
    try:
        report = monitor_predictor(predictor, decisions, frame, spec, prepared=True)
    except _production_errors() as exc:
        return _fail(exc)
    report.save(args.out)
    out = {"out": str(args.out), "model": predictor.source, **report.summary}
    if args.json:
        sys.stdout.write(json.dumps(json_clean(out)) + "\n")
    else:
        _print_monitor(out)
    return 0


def _print_monitor(rep: dict[str, Any]) -> None:
    from rich.table import Table

    def num(value: Any) -> str:
        return "-" if value is None or value != value else f"{value:.4g}"  # v != v: NaN

    alerts, window = rep["alerts"], rep["thresholds"]["window"]
    table = Table(
        title=f"monitor: {rep['model']} ({rep['symbol']}, h={rep['horizon']}), "
        f"{rep['first_decision'][:16]} -> {str(rep['as_of'])[:16]} UTC"
    )
    table.add_column("metric", style="bold")
    table.add_column(f"last {window} scored", justify="right")
    table.add_column("whole span", justify="right")
    table.add_row("decisions (scored / pending)", "", f"{rep['n_scored']} / {rep['n_pending']}")
    table.add_row(
        "directional accuracy",
        num(rep["directional_accuracy"]),
        num(rep["overall_directional_accuracy"]),
    )
    table.add_row("MAE (log return)", num(rep["mae"]), "")
    table.add_row("persistence MAE", num(rep["mae_persistence"]), "")
    table.add_row("MAE ratio", num(rep["mae_ratio"]), num(rep["overall_mae_ratio"]))
    table.add_row("max feature PSI", f"{num(rep['max_psi'])} ({rep['drift_status']})", "")
    worst = ", ".join(f"{w['feature']} {w['psi']:.3f}" for w in rep["worst_features"][:3])
    table.add_row("most drifted", worst or "-", "")
    breaches = ", ".join(f"{k} {v}" for k, v in alerts["breaches"].items())
    table.add_row("alerts", ", ".join(alerts["active"]) or "none active", breaches)
    console = _console()
    console.print(table)
    console.print(f"wrote {rep['out']}", highlight=False, soft_wrap=True)


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cryptoforecast.serving.app import create_app

    try:
        predictor = _load_predictor(args)
    except _production_errors() as exc:
        return _fail(exc)
    if args.max_body_bytes is not None and args.max_body_bytes < 1:
        return _fail(ValueError(f"--max-body-bytes must be >= 1, got {args.max_body_bytes}"))
    app = create_app(predictor, max_body_bytes=args.max_body_bytes)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def retrain_overrides(args: argparse.Namespace) -> list[str]:
    """Overrides of the registered config equivalent to ``retrain``'s options, then the rest."""
    out: list[str] = []
    if args.data is not None:
        path = Path(args.data)
        if path.exists():
            out += ["data.source=file", f"data.path='{path.resolve()}'"]
        elif args.data.isalnum():
            out += ["data.source=bundled", f"data.symbol={args.data.upper()}"]
        else:
            from cryptoforecast.data.schema import DataError

            raise DataError(f"--data {args.data}: no such file, and not a symbol like BTCUSDT")
    if args.days is not None:
        out.append(f"data.days={args.days:g}")
    return out + list(args.overrides)


def _cmd_retrain(args: argparse.Namespace) -> int:
    import contextlib

    from cryptoforecast.pipelines.retrain import RetrainError, retrain

    errors: tuple[type[Exception], ...] = (RetrainError,)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # training's own tables go to stderr
            report = retrain(
                args.name,
                registry_root=args.registry,
                overrides=retrain_overrides(args),
                out_dir=args.out,
                min_improvement=args.min_improvement,
                dry_run=args.dry_run,
            )
    except errors + _production_errors() as exc:  # after the import: ExportError is known
        return _fail(exc)
    data = report.to_dict()
    if args.json:
        sys.stdout.write(json.dumps(data) + "\n")
        return 0
    _print_retrain(data)
    summary = {k: data[k] for k in ("name", "decision", "promoted", "improvement", "dry_run")}
    summary["champion"], summary["challenger"] = (
        data["champion"]["version"],
        data["challenger"]["version"],
    )
    summary["report"] = str(Path(data["challenger"]["run_dir"]) / "retrain_report.json")
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


def _print_retrain(rep: dict[str, Any]) -> None:
    from rich.table import Table

    seg, metric = rep["segment"], rep["metric"]
    champ, chall = rep["champion"], rep["challenger"]
    chall_name = (
        "challenger (dry run)" if chall["version"] is None else f"challenger v{chall['version']}"
    )
    table = Table(title=f"{rep['name']}: champion vs challenger")
    table.add_column("metric")
    table.add_column(f"champion v{champ['version']}", justify="right")
    table.add_column(chall_name, justify="right")
    table.add_column("coin" if rep["task"] == "classification" else "zero return", justify="right")
    sides = [rep["scores"][k] for k in ("champion", "challenger", "persistence")]
    for key in (metric, "directional_accuracy"):
        table.add_row(key, *(_num(s[key]) for s in sides))
    if len(seg["horizons"]) > 1:
        for h in map(str, seg["horizons"]):
            table.add_row(f"{metric} h={h}", *(_num(s["per_horizon"][h][metric]) for s in sides))
    lines = [
        f"segment: validation of fold {seg['fold']}, {seg['start']} -> {seg['end']}, "
        f"{seg['n']} bars ({seg['dropped']} dropped)",
        f"champion v{champ['version']} ({champ['source']}) trained to {champ['train_end']}; "
        f"challenger to {chall['train_end']}",
    ]
    for h, dm in rep["dm"].items():
        result = (
            f"stat {_num(dm['statistic'])}, p {_num(dm['p_value'])}"
            if "error" not in dm
            else dm["error"]
        )
        lines.append(f"Diebold-Mariano h={h} (challenger vs champion, < 0 favours it): {result}")
    colour = "green" if rep["decision"] == "promote" else "yellow"
    lines.append(f"[bold {colour}]{rep['decision']}[/]: {rep['reason']}")
    lines += [f"note: {note}" for note in rep["notes"]]
    console = _console()
    console.print(table)
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
