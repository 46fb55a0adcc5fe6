"""Ablation studies: one change at a time, on identical walk-forward folds, judged honestly.

A study file (YAML, e.g. ``experiments/ablations/studies.yaml``) holds Hydra overrides shared by
every run and a mapping of studies. A study names its arms, each a list of Hydra overrides
composed on ``conf/train.yaml`` exactly as ``python train.py`` composes them; the first arm (or
the one named by ``baseline:``) is the baseline, every other arm a treatment. Each arm (and seed)
runs through the real :func:`cryptoforecast.pipelines.train.run` in its own run folder; a folder
whose finished run had the same resolved config is reused, so re-running a report is cheap.

Evaluation, on the pooled out-of-sample rows of the traded horizon:

- **Identical folds.** Every arm (and seed) must have exactly the same ``(symbol, horizon,
  timestamp)`` test rows, after the ``evaluate_symbol`` filter; otherwise
  :class:`FoldMismatchError` names the counts and the first differing rows. With
  ``align: intersection`` the common rows are evaluated and the dropped counts reported.
- **Per arm.** RMSE and MAE (USD, on the close reconstructed from the forecast return), the
  directional accuracy with its binomial p against 50 %, the same for zero-return persistence on
  the same rows, Diebold-Mariano against persistence, the backtest after costs (from the run, or
  recomputed on the evaluated rows when rows were filtered out), train seconds and parameters.
- **Per treatment vs the baseline.** RMSE change (%), Diebold-Mariano (squared loss on the
  log-return errors, two-sided, HLN-corrected; :func:`~cryptoforecast.evaluation.stats.dm_vs`),
  the 95 % interval of the return-RMSE change obtained by inverting that test, and the change in
  directional accuracy; a plain-words conclusion (:func:`conclusion`) and, when the study states
  the claim it tests, a verdict on it (:func:`claim_verdict`).

With ``seeds: [0, 1, 2]`` each arm runs once per seed; the per-arm metrics are means over seeds
and the tests use the seed-averaged forecasts. Outputs per study: ``<study>.csv``, ``.md``,
``.json``, ``.png``, and a section of the output folder's ``README.md`` between marker comments
(rewritten on every run), written by :mod:`cryptoforecast.pipelines.ablation_report`, which also
runs whole study files (``experiments/ablations/run_ablations.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml  # type: ignore[import-untyped]
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from scipy import stats as sps

from cryptoforecast.backtest.engine import run_backtest
from cryptoforecast.data.loader import load_candles
from cryptoforecast.evaluation.predictions import score
from cryptoforecast.evaluation.stats import DMResult, direction_test, dm_vs
from cryptoforecast.paths import CONF_DIR, PROJECT_ROOT
from cryptoforecast.pipelines.train import backtest_spec

log = logging.getLogger(__name__)

ALPHA = 0.05
ALIGN_MODES = ("exact", "intersection")
KEYS = ["symbol", "horizon", "timestamp"]
NO_EPOCHS = {"lightgbm", "naive"}  # models without trainer epochs
DONE_FILE = "ablation_done.json"
FILE_KEYS = {"shared", "smoke", "seeds", "studies"}
STUDY_KEYS = {
    "question",
    "arms",
    "baseline",
    "overrides",
    "evaluate_symbol",
    "align",
    "seeds",
    "claim",
    "note",
}
CLAIM_KEYS = {"text", "rmse_change_pct", "arm"}
# arm metrics shown in <study>.csv / .md, in order
ARM_COLUMNS = [
    "rmse",
    "rmse_vs_persistence_pct",
    "mae",
    "directional_accuracy",
    "dir_p_value",
    "dm_vs_persistence_stat",
    "dm_vs_persistence_p",
    "backtest_total_return",
    "backtest_sharpe",
    "n_trades",
    "backtest_rule",
    "train_seconds",
    "params",
]


class StudyConfigError(ValueError):
    """A study file is malformed (the message names the file and the key)."""


class StudyNotReady(RuntimeError):
    """An arm's config does not compose or instantiate (yet): the study is skipped."""


class FoldMismatchError(ValueError):
    """Arms of a study were evaluated on different test rows."""


# ----------------------------------------------------------------------------- study file


@dataclass(frozen=True)
class Claim:
    """A published claim a study tests, e.g. "wavelet denoising cuts RMSE by 15 %".

    Attributes:
        text: the claim in words.
        rmse_change_pct: the claimed RMSE change of ``arm`` vs the baseline, in percent
            (negative: a reduction).
        arm: the treatment arm the claim is about.
    """

    text: str
    rmse_change_pct: float
    arm: str


@dataclass(frozen=True)
class Study:
    """One ablation: a baseline arm and treatments, each a list of Hydra overrides."""

    name: str
    question: str
    arms: dict[str, tuple[str, ...]]
    baseline: str
    overrides: tuple[str, ...] = ()
    evaluate_symbol: str | None = None
    align: str = "exact"
    seeds: tuple[int, ...] | None = None
    claim: Claim | None = None
    note: str | None = None

    @property
    def treatments(self) -> list[str]:
        """The non-baseline arms, in file order."""
        return [a for a in self.arms if a != self.baseline]


@dataclass(frozen=True)
class StudyFile:
    """A parsed study file: shared overrides, smoke overrides, default seeds, studies."""

    path: Path
    shared: tuple[str, ...]
    smoke: tuple[str, ...]
    seeds: tuple[int, ...] | None
    studies: dict[str, Study]


def _overrides(value: Any, where: str) -> tuple[str, ...]:
    """A list of Hydra override strings (None -> empty), or a StudyConfigError naming ``where``."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StudyConfigError(
            f"{where} must be a list of Hydra override strings like 'data.days=365', got "
            f"{value!r} (quote overrides that YAML would read as a mapping)"
        )
    return tuple(value)


def _seeds(value: Any, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or len(set(value)) != len(value)
    ):
        raise StudyConfigError(f"{where} must be null or a list of distinct ints, got {value!r}")
    return tuple(value)


def _unknown(given: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(given) - allowed)
    if extra:
        raise StudyConfigError(f"{where}: unknown key(s) {extra}; allowed: {sorted(allowed)}")


def _claim(value: Any, arms: dict[str, tuple[str, ...]], baseline: str, where: str) -> Claim:
    if not isinstance(value, dict):
        raise StudyConfigError(f"{where} must be a mapping {{text, rmse_change_pct[, arm]}}")
    _unknown(value, CLAIM_KEYS, where)
    treatments = [a for a in arms if a != baseline]
    arm = value.get("arm", treatments[0] if len(treatments) == 1 else None)
    if arm not in treatments:
        raise StudyConfigError(f"{where}.arm must name one treatment arm {treatments}, got {arm}")
    pct = value.get("rmse_change_pct")
    if not isinstance(value.get("text"), str) or not isinstance(pct, int | float):
        raise StudyConfigError(f"{where} needs text (str) and rmse_change_pct (number)")
    return Claim(text=value["text"], rmse_change_pct=float(pct), arm=str(arm))


def _study(name: str, raw: Any, where: str) -> Study:
    """Validate one study mapping (see the module docstring for the keys)."""
    if not isinstance(raw, dict):
        raise StudyConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    _unknown(raw, STUDY_KEYS, where)
    if not isinstance(raw.get("question"), str):
        raise StudyConfigError(f"{where}.question is required (the question the study answers)")
    arms_raw = raw.get("arms")
    if not isinstance(arms_raw, dict) or len(arms_raw) < 2:
        raise StudyConfigError(f"{where}.arms must map at least two arm names to override lists")
    arms = {str(a): _overrides(o, f"{where}.arms.{a}") for a, o in arms_raw.items()}
    baseline = str(raw.get("baseline", next(iter(arms))))
    if baseline not in arms:
        raise StudyConfigError(f"{where}.baseline={baseline!r} is not one of {list(arms)}")
    align = raw.get("align", "exact")
    if align not in ALIGN_MODES:
        raise StudyConfigError(f"{where}.align={align!r}; choose one of {list(ALIGN_MODES)}")
    symbol = raw.get("evaluate_symbol")
    if symbol is not None and not isinstance(symbol, str):
        raise StudyConfigError(f"{where}.evaluate_symbol must be a symbol or null, got {symbol!r}")
    claim = raw.get("claim")
    return Study(
        name=name,
        question=raw["question"].strip(),
        arms=arms,
        baseline=baseline,
        overrides=_overrides(raw.get("overrides"), f"{where}.overrides"),
        evaluate_symbol=symbol,
        align=align,
        seeds=_seeds(raw.get("seeds"), f"{where}.seeds"),
        claim=None if claim is None else _claim(claim, arms, baseline, f"{where}.claim"),
        note=raw.get("note"),
    )


def load_study_file(path: Path | str) -> StudyFile:
    """Parse and validate a study file.

    Raises:
        StudyConfigError: on a malformed file; the message names the file and the key.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise StudyConfigError(f"{path}: cannot read the study file: {exc}") from exc
    if not isinstance(raw, dict):
        raise StudyConfigError(f"{path}: expected a mapping with keys {sorted(FILE_KEYS)}")
    _unknown(raw, FILE_KEYS, str(path))
    studies_raw = raw.get("studies")
    if not isinstance(studies_raw, dict) or not studies_raw:
        raise StudyConfigError(f"{path}: 'studies' must map study names to studies")
    studies = {str(n): _study(str(n), s, f"{path}: studies.{n}") for n, s in studies_raw.items()}
    return StudyFile(
        path=path,
        shared=_overrides(raw.get("shared"), f"{path}: shared"),
        smoke=_overrides(raw.get("smoke"), f"{path}: smoke"),
        seeds=_seeds(raw.get("seeds"), f"{path}: seeds"),
        studies=studies,
    )


# ----------------------------------------------------------------------------- running arms


@dataclass
class ArmRun:
    """One (arm, seed) run: its composed config, folder and whether it was reused."""

    arm: str
    seed: int
    run_dir: Path
    cfg: DictConfig
    overrides: tuple[str, ...]
    reused: bool = False
    wall_seconds: float = float("nan")


def compose_arm(overrides: Sequence[str], run_dir: Path) -> DictConfig:
    """Compose ``conf/train.yaml`` with ``overrides`` as ``python train.py`` would.

    ``paths.output_dir`` (``${hydra:runtime.output_dir}`` under Hydra) is set to ``run_dir``.
    """
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="train"):
        return compose(
            config_name="train", overrides=[*overrides, f"paths.output_dir='{run_dir}'"]
        )


def config_digest(cfg: DictConfig) -> str:
    """SHA-256 of the resolved config: equal digests mean the same run."""
    text = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _preflight(cfg: DictConfig) -> None:
    """Build the cheap objects (data spec, features, split, backtest).

    So a config whose classes or keys do not exist yet fails now, not after other arms trained.
    """
    for key in ("data", "features", "split", "backtest"):
        instantiate(cfg[key])


def plan_study(study: Study, spec: StudyFile, runs_dir: Path, smoke: bool = False) -> list[ArmRun]:
    """Compose every (arm, seed) of a study; run folders are ``runs_dir/<study>/<arm>/seed<k>``.

    Override order: shared, smoke (with ``smoke``), the study's, the arm's, ``seed=k``.

    Raises:
        StudyNotReady: an arm's config does not compose or its data/features/split/backtest do
            not instantiate (e.g. a config group another change has not added yet).
    """
    seeds = study.seeds if study.seeds is not None else spec.seeds
    runs: list[ArmRun] = []
    for arm, arm_overrides in study.arms.items():
        for seed in seeds if seeds is not None else (None,):
            overrides = (
                *spec.shared,
                *(spec.smoke if smoke else ()),
                *study.overrides,
                *arm_overrides,
                *(() if seed is None else (f"seed={seed}",)),
            )
            try:
                cfg = compose_arm(overrides, runs_dir / "pending")
                cfg_seed = int(cfg.seed)
                run_dir = (runs_dir / study.name / arm / f"seed{cfg_seed}").resolve()
                cfg = compose_arm(overrides, run_dir)
                _preflight(cfg)
            except (HydraException, OmegaConfBaseException, ImportError, TypeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise StudyNotReady(f"arm {arm!r}: {type(exc).__name__}: {first}") from exc
            runs.append(ArmRun(arm, cfg_seed, run_dir, cfg, overrides))
    return runs


def _finished(run: ArmRun, digest: str) -> bool:
    done = run.run_dir / DONE_FILE
    if not done.is_file():
        return False
    record = json.loads(done.read_text())
    have = all((run.run_dir / f).is_file() for f in ("predictions.parquet", "metrics.json"))
    return have and record.get("config_sha256") == digest


def execute_arm(
    run: ArmRun, train: Callable[[DictConfig], Any] | None = None, force: bool = False
) -> ArmRun:
    """Run one arm through ``pipelines.train.run``, or reuse its finished run.

    A run is reused when its folder holds a finished run (``ablation_done.json``) whose resolved
    config has the same digest. Otherwise the folder is cleared if an earlier ablation run wrote
    it, and the arm trains. Writes ``.hydra/config.yaml`` (the composed config, so inspection and
    export tools read the folder like a ``train.py`` run) and, once finished,
    ``ablation_done.json`` with the config digest and wall time.

    Args:
        run: the planned run; ``reused`` and ``wall_seconds`` are set on it.
        train: the training function (default :func:`cryptoforecast.pipelines.train.run`).
        force: retrain even when the run could be reused.

    Returns:
        ``run``.
    """
    digest = config_digest(run.cfg)
    if not force and _finished(run, digest):
        record = json.loads((run.run_dir / DONE_FILE).read_text())
        run.reused, run.wall_seconds = True, float(record.get("wall_seconds", float("nan")))
        return run
    if (run.run_dir / DONE_FILE).is_file() or (run.run_dir / ".hydra" / "ablation").is_file():
        shutil.rmtree(run.run_dir)  # a stale run of ours: start clean, no leftover fold folders
    hydra_dir = run.run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    (hydra_dir / "ablation").write_text("run folder written by pipelines/ablation.py\n")
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(run.cfg))
    (hydra_dir / "overrides.yaml").write_text(OmegaConf.to_yaml(list(run.overrides)))
    if train is None:
        from cryptoforecast.pipelines import train as train_pipeline

        train = train_pipeline.run
    start = time.perf_counter()
    train(run.cfg)
    run.wall_seconds = time.perf_counter() - start
    record = {"config_sha256": digest, "wall_seconds": round(run.wall_seconds, 2)}
    (run.run_dir / DONE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return run


# ----------------------------------------------------------------------------- evaluation


@dataclass
class ArmData:
    """An arm's evaluated test rows: one frame per seed (filtered, aligned) and the average."""

    name: str
    runs: list[ArmRun]
    frames: list[pd.DataFrame]
    n_rows_run: list[int] = field(default_factory=list)
    averaged: pd.DataFrame = field(default_factory=pd.DataFrame)


def trade_horizon(cfg: DictConfig, frame: pd.DataFrame) -> int:
    """The horizon the backtest trades (``backtest.horizon``; null = the smallest)."""
    given = cfg.backtest.get("horizon")
    return int(given) if given is not None else int(frame["horizon"].min())


def load_arm_frame(run: ArmRun, symbol: str | None) -> tuple[pd.DataFrame, int]:
    """The run's predictions at the trade horizon, filtered to ``symbol``.

    Returns:
        The sorted frame and the row count before filtering (so dropped rows are known).

    Raises:
        ValueError: a classifier's frame, or ``symbol`` not among the frame's symbols.
    """
    path = run.run_dir / "predictions.parquet"
    frame = pd.read_parquet(path)
    if "p_up" in frame.columns:
        raise ValueError(
            f"{path}: a classifier's PredictionFrame (p_up); ablations compare regression "
            "forecasts (task=regression)"
        )
    h = trade_horizon(run.cfg, frame)
    frame = frame[frame["horizon"] == h]
    n_before = len(frame)
    if symbol is not None:
        have = sorted(frame["symbol"].unique())
        if symbol not in have:
            raise ValueError(f"{path}: evaluate_symbol={symbol} not among the symbols {have}")
        frame = frame[frame["symbol"] == symbol]
    return frame.sort_values(KEYS).reset_index(drop=True), n_before


def _key_index(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(frame[KEYS])


def _mismatch_message(study: str, labelled: dict[str, pd.DataFrame]) -> str:
    """Counts per run and the first rows that are not in every run."""
    indexes = {k: _key_index(f) for k, f in labelled.items()}
    common = None
    for idx in indexes.values():
        common = idx if common is None else common.intersection(idx)
    assert common is not None
    lines = [
        f"study {study!r}: the arms were not evaluated on identical test rows "
        f"({', '.join(KEYS)}); {len(common)} rows are common to all:"
    ]
    for label, idx in indexes.items():
        extra = idx.difference(common)
        first = ", ".join(f"{s} h{h} {t}" for s, h, t in list(extra[:3]))
        lines.append(
            f"  {label}: {len(idx)} rows, {len(extra)} not in every arm"
            + (f" (first: {first})" if len(extra) else "")
        )
    lines.append(
        "Check data.end/days, split, target and evaluate_symbol of the arms, or set "
        "'align: intersection' in the study to evaluate on the common rows."
    )
    return "\n".join(lines)


def align_frames(
    study: str, labelled: dict[str, pd.DataFrame], align: str
) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Check that every frame has the same ``(symbol, horizon, timestamp)`` rows.

    Args:
        study: study name (for messages).
        labelled: ``{"arm/seed": frame}``.
        align: ``exact`` (a mismatch raises) or ``intersection`` (keep the common rows).

    Returns:
        The frames restricted to the common rows (sorted by key), with the first frame's
        ``fold`` labels (each run's own in ``fold_run``), and the rows dropped per label.

    Raises:
        FoldMismatchError: ``align == "exact"`` and the row sets differ, or nothing is common.
        ValueError: ``y_true`` differs between frames on a common row (different targets).
    """
    indexes = {k: _key_index(f) for k, f in labelled.items()}
    common = next(iter(indexes.values()))
    for idx in indexes.values():
        common = common.intersection(idx)
    same = all(len(idx) == len(common) for idx in indexes.values())
    if not same and align == "exact":
        raise FoldMismatchError(_mismatch_message(study, labelled))
    if len(common) == 0:
        raise FoldMismatchError(_mismatch_message(study, labelled))
    out: dict[str, pd.DataFrame] = {}
    dropped: dict[str, int] = {}
    for label, frame in labelled.items():
        keep = indexes[label].isin(common)
        out[label] = frame[keep].sort_values(KEYS).reset_index(drop=True)
        dropped[label] = int((~keep).sum())
    first_label, first = next(iter(out.items()))
    for label, frame in out.items():
        if not np.allclose(frame["y_true"], first["y_true"], rtol=1e-9, atol=1e-12):
            raise ValueError(
                f"study {study!r}: y_true of {label} differs from {first_label} on the same "
                "rows; the arms do not forecast the same target"
            )
        # Shifted spans number the same rows' folds differently; the tests join on the fold
        # too, so every frame carries the first frame's fold labels (the run's are kept).
        out[label] = frame.assign(fold_run=frame["fold"], fold=first["fold"].to_numpy())
    return out, dropped


def seed_average(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The forecast averaged over seeds on aligned frames (the first frame's other columns)."""
    out = frames[0].copy()
    out["y_pred"] = np.mean([f["y_pred"].to_numpy(float) for f in frames], axis=0)
    return out


def _symbol_candles(cfg: DictConfig, symbol: str) -> pd.DataFrame:
    """The candles of ``symbol`` over the run's data span (for a recomputed backtest)."""
    spec = instantiate(cfg.data)
    for one in spec.per_symbol():
        if one.symbol == symbol:
            return load_candles(one).frame
    raise ValueError(f"symbol {symbol} is not among the run's data symbols")


def _backtest(run: ArmRun, frame: pd.DataFrame, rows_changed: bool) -> dict[str, float]:
    """Total return, Sharpe and trades after costs.

    The run's own backtest when the evaluated rows are the run's rows, else recomputed with the
    run's backtest settings on the evaluated rows (one symbol).
    """
    if not rows_changed:
        metrics = json.loads((run.run_dir / "metrics.json").read_text())
        return {k: metrics.get(f"backtest/{k}") for k in ("total_return", "sharpe", "n_trades")}
    symbols = frame["symbol"].unique()
    if len(symbols) != 1:
        log.warning(
            "%s: rows were filtered and %d symbols remain; set evaluate_symbol to backtest",
            run.run_dir,
            len(symbols),
        )
        return {"total_return": np.nan, "sharpe": np.nan, "n_trades": np.nan}
    candles = _symbol_candles(run.cfg, str(symbols[0]))
    result = run_backtest(frame, candles, backtest_spec(run.cfg, "return"))
    return {k: result.metrics[k] for k in ("total_return", "sharpe", "n_trades")}


def backtest_rule(cfg: DictConfig) -> str:
    """The rule a run's ``backtest/*`` figures trade (its saved config; classifiers trade p_up)."""
    return str(backtest_spec(cfg, "return").rule)


def _nan_if_none(v: Any) -> float:
    return float("nan") if v is None else float(v)


def arm_metrics(data: ArmData, persistence_rmse: float) -> dict[str, Any]:
    """Mean over seeds of the arm's accuracy, direction, backtest and ops figures.

    The Diebold-Mariano test against zero-return persistence uses the seed-averaged forecast.
    """
    per_seed: list[dict[str, float]] = []
    for run, frame, n_run in zip(data.runs, data.frames, data.n_rows_run, strict=True):
        s = {k.split("/", 1)[1]: v for k, v in score(frame, "m").items()}
        h = int(frame["horizon"].iloc[0])
        metrics = json.loads((run.run_dir / "metrics.json").read_text())
        bt = _backtest(run, frame, rows_changed=len(frame) != n_run)
        per_seed.append(
            {
                "rmse": s["rmse"],
                "mae": s["mae"],
                "directional_accuracy": s["directional_accuracy"],
                "dir_p_value": direction_test(frame)[h].p_value,
                "backtest_total_return": _nan_if_none(bt["total_return"]),
                "backtest_sharpe": _nan_if_none(bt["sharpe"]),
                "n_trades": _nan_if_none(bt["n_trades"]),
                "train_seconds": _nan_if_none(metrics.get("ops/train_seconds")),
                "params": _nan_if_none(metrics.get("ops/params")),
                "val_loss_best": _nan_if_none(metrics.get("val/loss_best")),
            }
        )
    row: dict[str, Any] = {k: float(np.mean([p[k] for p in per_seed])) for k in per_seed[0]}
    row["rmse_seed_std"] = float(np.std([p["rmse"] for p in per_seed], ddof=0))
    # the trading rule behind the backtest columns (runs trained before the cost rule: sign)
    row["backtest_rule"] = "/".join(sorted({backtest_rule(r.cfg) for r in data.runs}))
    row["rmse_vs_persistence_pct"] = 100.0 * (row["rmse"] / persistence_rmse - 1.0)
    avg = data.averaged
    h = int(avg["horizon"].iloc[0])
    dm = dm_vs(avg, avg.assign(y_pred=0.0), loss="squared", horizon=h)[h]
    row["dm_vs_persistence_stat"], row["dm_vs_persistence_p"] = dm.statistic, dm.p_value
    row["seeds"] = [r.seed for r in data.runs]
    row["reused"] = [r.reused for r in data.runs]
    row["run_dirs"] = [_rel(r.run_dir) for r in data.runs]
    return row


def rmse_change_interval(
    dm: DMResult, mse_ref: float, level: float = 0.95
) -> tuple[float, float] | None:
    """Interval for the % change in return RMSE, by inverting the DM test.

    The HLN-corrected DM statistic is ``mean(d) / se`` with ``d`` the squared-error differential,
    referred to Student-t(n-1); so ``mean(d) +- t * se`` with ``se = mean(d) / statistic`` is
    the set of mean differences the test does not reject, and ``sqrt(1 + d / mse_ref) - 1``
    maps it to the RMSE ratio. None when the statistic is not finite or zero.
    """
    if not math.isfinite(dm.statistic) or dm.statistic == 0.0 or mse_ref <= 0.0:
        return None
    se = abs(dm.mean_loss_diff / dm.statistic)
    q = float(sps.t.ppf(0.5 + level / 2.0, df=dm.n - 1))

    def pct(diff: float) -> float:
        return 100.0 * (math.sqrt(max(1.0 + diff / mse_ref, 0.0)) - 1.0)

    return pct(dm.mean_loss_diff - q * se), pct(dm.mean_loss_diff + q * se)


def compare_arms(treat: ArmData, base: ArmData, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Treatment vs baseline: RMSE change, DM on the seed-averaged forecasts, DA difference."""
    t, b = treat.averaged, base.averaged
    h = int(t["horizon"].iloc[0])
    dm = dm_vs(t, b, loss="squared", horizon=h)[h]
    y = b["y_true"].to_numpy(float)
    per_ts_mse = pd.Series((b["y_pred"].to_numpy(float) - y) ** 2).groupby(
        b["timestamp"].to_numpy()
    )
    mse_ref = float(per_ts_mse.mean().mean())  # the DM statistic averages symbols per timestamp
    ci = rmse_change_interval(dm, mse_ref)
    rt, rb = rows[treat.name], rows[base.name]
    return {
        "treatment": treat.name,
        "baseline": base.name,
        "horizon": h,
        "rmse_change_pct": 100.0 * (rt["rmse"] / rb["rmse"] - 1.0),
        "return_rmse_change_pct": 100.0 * (math.sqrt(1.0 + dm.mean_loss_diff / mse_ref) - 1.0),
        "return_rmse_change_ci95": list(ci) if ci else None,
        "dm_stat": dm.statistic,
        "dm_p": dm.p_value,
        "dm_n": dm.n,
        "da_diff": rt["directional_accuracy"] - rb["directional_accuracy"],
        "mae_change_pct": 100.0 * (rt["mae"] / rb["mae"] - 1.0),
    }


# ----------------------------------------------------------------------------- wording


def fmt_p(p: float) -> str:
    """A p-value for prose: ``< 0.001``, three significant digits below 0.1, else two decimals.

    So 0.0499 never prints as 0.05.
    """
    if not math.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3g}" if p < 0.1 else f"{p:.2f}"


def _p_phrase(p: float) -> str:
    text = fmt_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def conclusion(
    treatment: str, baseline: str, rmse_change_pct: float, dm_stat: float, dm_p: float
) -> str:
    """One sentence on treatment vs baseline that follows the p-value rule.

    "better" or "worse" only when the DM p-value is below 0.05 (the sign of the statistic says
    which); otherwise "no significant difference", whatever the size of the point estimate.
    """
    change = f"RMSE {rmse_change_pct:+.2f} %"
    treatment, baseline = f"`{treatment}`", f"`{baseline}`"
    if not math.isfinite(dm_stat) and not (math.isfinite(dm_p) and dm_p < ALPHA):
        return (
            f"{treatment} and {baseline} made identical forecasts on these rows, so they cannot "
            f"be told apart ({change})"
        )
    if not dm_p < ALPHA:
        return (
            f"no significant difference between {treatment} and {baseline} "
            f"({change}, DM {_p_phrase(dm_p)})"
        )
    side = "better" if dm_stat < 0 else "worse"
    return f"{treatment} is significantly {side} than {baseline} ({change}, DM {_p_phrase(dm_p)})"


def claim_verdict(
    claim: Claim,
    observed_pct: float,
    ci: Sequence[float] | None,
    dm_stat: float,
    dm_p: float,
) -> str:
    """Whether the data confirm a claimed RMSE change, from the 95 % interval of the change.

    - the interval excludes the claimed change and does not lie beyond it: **refuted**;
    - the claimed change lies inside the interval and the change is significant in the claimed
      direction, or the whole interval lies beyond the claim: **confirmed**;
    - otherwise (the claim lies inside a wide interval that also holds 0): **not confirmed**.
    """
    claimed = claim.rmse_change_pct
    head = f'The claim "{claim.text}" ({claimed:+.1f} % RMSE)'
    observed = f"observed {observed_pct:+.2f} %"
    if ci is None:
        return f"{head} cannot be tested: the forecasts do not differ ({observed})."
    lo, hi = float(ci[0]), float(ci[1])
    interval = f"95 % interval [{lo:+.2f} %, {hi:+.2f} %], DM {_p_phrase(dm_p)}"
    beyond = hi < claimed if claimed < 0 else lo > claimed
    if beyond:
        return f"{head} is confirmed, the change is even larger: {observed} ({interval})."
    if not lo <= claimed <= hi:
        return f"{head} is refuted: {observed} ({interval}) excludes {claimed:+.1f} %."
    same_sign = (dm_stat < 0) == (claimed < 0)
    if dm_p < ALPHA and same_sign:
        return f"{head} is confirmed: {observed} ({interval})."
    return (
        f"{head} is not confirmed: {observed} is not significant ({interval}); the data cannot "
        "tell the claimed change from none."
    )


# ----------------------------------------------------------------------------- study


@dataclass
class StudyResult:
    """Everything a study's reports are written from."""

    study: Study
    arms: dict[str, dict[str, Any]]
    comparisons: list[dict[str, Any]]
    persistence: dict[str, float]
    conclusions: list[str]
    claim_verdict: str | None
    info: dict[str, Any]


def _data_info(study: Study, runs: list[ArmRun], frame: pd.DataFrame) -> dict[str, Any]:
    cfg = runs[0].cfg
    seeds = sorted({r.seed for r in runs})
    return {
        "data_end": cfg.data.get("end"),
        "data_days": cfg.data.get("days"),
        "data_source": cfg.data.get("source"),
        "interval": cfg.data.get("interval"),
        "symbols": sorted(frame["symbol"].unique()),
        "evaluate_symbol": study.evaluate_symbol,
        "align": study.align,
        "n_folds": int(frame["fold"].nunique()),
        "test_bars": cfg.split.get("test_bars"),
        "val_bars": cfg.split.get("val_bars"),
        "n_rows": int(len(frame)),
        "test_start": frame["timestamp"].min().strftime("%Y-%m-%d %H:%M"),
        "test_end": frame["timestamp"].max().strftime("%Y-%m-%d %H:%M"),
        "horizon": int(frame["horizon"].iloc[0]),
        "seeds": seeds,
        "seed_mode": "one seed per arm (cfg.seed)"
        if study.seeds is None and len(seeds) == 1
        else f"averaged over seeds {seeds}",
        "models": sorted({str(r.cfg.model.name) for r in runs}),
        "max_epochs": cfg.trainer.get("max_epochs"),
        "nets": any(str(r.cfg.model.name) not in NO_EPOCHS for r in runs),
    }


def evaluate_study(study: Study, runs: list[ArmRun]) -> StudyResult:
    """Align the arms' test rows and compute the per-arm rows, comparisons and wording."""
    labelled: dict[str, pd.DataFrame] = {}
    n_run: dict[str, int] = {}
    for run in runs:
        label = f"{run.arm}/seed{run.seed}"
        labelled[label], n_run[label] = load_arm_frame(run, study.evaluate_symbol)
    aligned, dropped = align_frames(study.name, labelled, study.align)
    arms: dict[str, ArmData] = {}
    for run in runs:
        label = f"{run.arm}/seed{run.seed}"
        data = arms.setdefault(run.arm, ArmData(run.arm, [], []))
        data.runs.append(run)
        data.frames.append(aligned[label])
        data.n_rows_run.append(n_run[label])
    for data in arms.values():
        data.averaged = seed_average(data.frames)
    base_frame = arms[study.baseline].averaged
    persist = {k.split("/", 1)[1]: v for k, v in score(base_frame.assign(y_pred=0.0), "p").items()}
    h = int(base_frame["horizon"].iloc[0])
    persistence = {
        "rmse": persist["rmse"],
        "mae": persist["mae"],
        "directional_accuracy": persist["directional_accuracy"],
        "dir_p_value": direction_test(base_frame.assign(y_pred=0.0))[h].p_value,
    }
    rows = {name: arm_metrics(data, persistence["rmse"]) for name, data in arms.items()}
    comparisons = [compare_arms(arms[t], arms[study.baseline], rows) for t in study.treatments]
    words = [
        conclusion(c["treatment"], c["baseline"], c["rmse_change_pct"], c["dm_stat"], c["dm_p"])
        for c in comparisons
    ]
    verdict = None
    if study.claim is not None:
        c = next(c for c in comparisons if c["treatment"] == study.claim.arm)
        verdict = claim_verdict(
            study.claim,
            c["return_rmse_change_pct"],
            c["return_rmse_change_ci95"],
            c["dm_stat"],
            c["dm_p"],
        )
    info = _data_info(study, runs, base_frame)
    info["rows_dropped"] = dropped
    return StudyResult(study, rows, comparisons, persistence, words, verdict, info)


def _rel(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside it (for the README)."""
    resolved = path.resolve()
    return (
        str(resolved.relative_to(PROJECT_ROOT))
        if resolved.is_relative_to(PROJECT_ROOT)
        else str(path)
    )
