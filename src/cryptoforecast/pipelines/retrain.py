"""``cryptoforecast retrain NAME``: champion/challenger retraining into the registry.

1. The **champion** is ``NAME@production`` (or, when nothing is in production, the latest
   version, and the report says so). Its bundle's ``config.yaml`` (the resolved config of the run
   that made it) is the starting point of the new run.
2. The **challenger** is that config with the data window moved to the newest candles
   (``data.start``/``data.end`` cleared, ``data.days`` kept), ``split=walk_forward`` (the
   registered walk-forward settings, or ``conf/split/walk_forward.yaml`` when the champion was a
   holdout run), the user's overrides, and a new run folder. It trains through
   :func:`cryptoforecast.pipelines.train.run`, its newest fold is exported as a bundle and
   registered as the next version of ``NAME`` (whatever the comparison says).
3. Both bundles are scored through their ONNX graphs, each with its own feature spec and scaler,
   on the same bars: the challenger's last fold's **validation** segment, read from raw candles.
   Metric: MAE of the log-return forecast (regression) or log loss (classification), beside the
   zero-return persistence (or coin, ``p_up = 0.5``) forecast, directional accuracy and a
   Diebold-Mariano test of challenger against champion.
4. The challenger is promoted to production only if its metric is lower than the champion's by
   more than ``min_improvement`` (a relative margin: 0 means strictly better). The report says
   whether the segment overlaps the champion's training period (then the champion is scored on
   labels it was fitted on, which favours it) and is saved as ``retrain_report.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf

from cryptoforecast.evaluation import metrics
from cryptoforecast.evaluation.stats import diebold_mariano
from cryptoforecast.export.bundle import MANIFEST
from cryptoforecast.paths import CONF_DIR
from cryptoforecast.registry.store import Registry
from cryptoforecast.serving.batch import batch_forecasts
from cryptoforecast.serving.predictor import Predictor

log = logging.getLogger(__name__)

REPORT_FILE = "retrain_report.json"
WALK_FORWARD = "cryptoforecast.data.splits.WalkForwardSplit"
STAGE = "production"
_EPS = 1e-15  # probability clip of the log loss, as metrics.classification_report


class RetrainError(ValueError):
    """A retrain that cannot run as asked: bad overrides, incomparable models, used run folder."""


#: The ``_target_`` values a registered ``config.yaml`` may contain: the project's own config
#: groups' classes (``conf/``, without the Hydra launcher and sweeper ones) and the registered
#: feature transforms. Checked by exact match before anything is instantiated; a new config
#: group's class must be added here (``tests/unit/test_hostile_artefacts.py`` checks ``conf/``).
ALLOWED_TARGETS: frozenset[str] = frozenset(
    {
        "cryptoforecast.backtest.engine.BacktestSpec",
        "cryptoforecast.data.loader.DataSpec",
        "cryptoforecast.data.splits.HoldoutSplit",
        "cryptoforecast.data.splits.WalkForwardSplit",
        "cryptoforecast.features.pipeline.FeatureSet",
        "cryptoforecast.models.baselines.NaiveForecaster",
        "cryptoforecast.models.checkpointing.RunCheckpoint",
        "cryptoforecast.models.ensemble.StackingEnsemble",
        "cryptoforecast.models.lightgbm_forecaster.LightGBMForecaster",
        "cryptoforecast.models.lit_forecaster.LitForecaster",
        "cryptoforecast.models.nets.attention_lstm.AttentionLSTM",
        "cryptoforecast.models.nets.cnn_lstm.CNNLSTM",
        "cryptoforecast.models.nets.rnn.BiLSTMNet",
        "cryptoforecast.models.nets.rnn.GRUNet",
        "cryptoforecast.models.nets.rnn.LSTMNet",
        "cryptoforecast.models.nets.tcn.TCN",
        "cryptoforecast.models.nets.tcn_attention.TCNAttention",
        "cryptoforecast.models.nets.tft.TemporalFusionTransformer",
        "cryptoforecast.tracking.progress.EpochProgress",
        "cryptoforecast.tracking.wandb_setup.make_wandb_logger",
        "lightning.Trainer",
        "lightning.pytorch.callbacks.EarlyStopping",
        "lightning.pytorch.callbacks.ModelCheckpoint",
        "lightning.pytorch.callbacks.RichProgressBar",
        "lightning.pytorch.loggers.CSVLogger",
        "torch.nn.MSELoss",
        "torch.nn.BCEWithLogitsLoss",
        "torch.optim.AdamW",
        "torch.optim.lr_scheduler.ReduceLROnPlateau",
    }
)


def check_targets(cfg: Any, source: str | Path) -> None:
    """Refuse a config that names any ``_target_`` outside :data:`ALLOWED_TARGETS`.

    Walks every mapping and list of the (unresolved) config; run it before anything in the
    config is instantiated. Feature transforms may also be given by their old module paths
    (``features/registry.py``).

    Raises:
        RetrainError: naming ``source``, the key path and the refused target.
    """
    from cryptoforecast.features.registry import LEGACY_PATHS

    allowed = ALLOWED_TARGETS | set(LEGACY_PATHS)
    container = (
        OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
        if isinstance(cfg, DictConfig | ListConfig)
        else cfg
    )

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                where = f"{key}.{k}" if key else str(k)
                if k == "_target_" and (not isinstance(v, str) or v not in allowed):
                    shown = repr(v) if len(repr(v)) <= 100 else repr(v)[:97] + "..."
                    raise RetrainError(
                        f"{source}: {where} = {shown} is not one of the project's own classes; "
                        "a registered config may only name the classes in "
                        "cryptoforecast.pipelines.retrain.ALLOWED_TARGETS (refused before "
                        "anything was built)"
                    )
                walk(v, where)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{key}[{i}]")

    walk(container, "")


@dataclasses.dataclass
class RetrainReport:
    """What a retrain did and why; ``retrain_report.json`` in the run folder.

    Attributes:
        name: the registered model name.
        registry: the registry root.
        created_at: UTC time the report was written.
        champion: ``version``, ``source`` (``production`` or ``latest``), ``bundle``,
            ``model_name``, ``train_end`` of the model compared against.
        challenger: the same for the new model (``version`` None on a dry run) + ``run_dir``.
        segment: the scored bars: ``kind`` (validation), ``fold``, ``start``, ``end``, ``n``,
            ``dropped`` (bars where a model had no valid window), ``horizons``.
        overlap: ``champion_train_end``, ``n_in_champion_training`` (bars the champion trained
            on), ``n_within_purge`` (bars not separated from its training labels by the purge
            gap, those included) and ``in_sample`` (``n_within_purge > 0``).
        task: ``regression`` or ``classification``.
        metric: ``mae`` or ``log_loss`` (lower is better).
        scores: ``champion``, ``challenger``, ``persistence``: the metric, directional accuracy,
            and both per horizon.
        dm: per horizon, Diebold-Mariano of challenger (model 1) vs champion on the metric's
            per-bar loss: ``statistic`` (negative favours the challenger), ``p_value``, ``n``, or
            ``error`` when it could not run (fewer than 10 bars).
        improvement: ``(champion - challenger) / champion`` of the metric.
        min_improvement: the margin the improvement had to exceed.
        decision: ``promote`` or ``keep``.
        promoted: whether production now points at the challenger.
        dry_run: nothing was registered or promoted.
        reason: one sentence for the decision.
        production_before: the production version before the retrain (None: none).
        production_after: the production version after it.
        notes: caveats (fallback to the latest version, split replaced, in-sample segment).
    """

    name: str
    registry: str
    created_at: str
    champion: dict[str, Any]
    challenger: dict[str, Any]
    segment: dict[str, Any]
    overlap: dict[str, Any]
    task: str
    metric: str
    scores: dict[str, dict[str, Any]]
    dm: dict[str, dict[str, Any]]
    improvement: float
    min_improvement: float
    decision: str
    promoted: bool
    dry_run: bool
    reason: str
    production_before: int | None
    production_after: int | None
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (non-finite numbers become None)."""
        return _finite(dataclasses.asdict(self))  # type: ignore[no-any-return]

    def save(self, path: Path) -> Path:
        """Write the report as strict JSON; return the path."""
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        return path


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------- the champion and the new config


def find_champion(registry: Registry, name: str) -> tuple[int, str]:
    """``(version, source)``: the production version, else the latest (``source="latest"``).

    Raises:
        RegistryError: nothing is registered under ``name``.
    """
    registry.resolve(name)  # raises "no model named ..." when there is none
    current = registry.stages(name)["current"].get(STAGE)
    if current is not None:
        return int(current), STAGE
    return registry.resolve(name)[1], "latest"


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Apply Hydra-style ``key=value`` overrides to a plain (already resolved) config.

    ``key=value`` must name an existing key (a misspelt key fails loudly), ``+key=value`` adds a
    new one, ``++key=value`` sets either way, ``~key`` deletes. Config-group choices such as
    ``model=tcn`` cannot be applied to a resolved config and are refused.

    Raises:
        RetrainError: unparseable override, unknown key, group choice or sweep.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise RetrainError(f"cannot parse the overrides {list(overrides)}: {exc}") from exc
    missing = object()
    for ov in parsed:
        key, text = ov.key_or_group, ov.input_line
        if ov.is_sweep_override():
            raise RetrainError(f"override {text!r}: sweeps are not supported by retrain")
        current = OmegaConf.select(cfg, key, default=missing, throw_on_missing=False)
        if ov.is_delete():
            if current is missing:
                raise RetrainError(f"override {text!r}: the registered config has no key {key}")
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            del node[leaf]
            continue
        value = ov.value()
        if current is missing and not (ov.is_add() or ov.is_force_add()):
            raise RetrainError(
                f"override {text!r}: the registered config has no key {key} (use +{text} to add "
                "one)"
            )
        if ov.is_add() and current is not missing:
            raise RetrainError(f"override {text!r}: {key} exists; use {key}=... to change it")
        if isinstance(current, DictConfig) and not isinstance(value, dict):
            raise RetrainError(
                f"override {text!r}: {key} is a config group of the registered run; retrain "
                f"reuses the champion's choice (change its keys, e.g. {key}.<field>=...)"
            )
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    return cfg


def _repoint(value: Any, old: str, new: str) -> Any:
    """Replace the old run folder prefix in every string (checkpoint dirs, logger dirs)."""
    if isinstance(value, dict):
        return {k: _repoint(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_repoint(v, old, new) for v in value]
    base = old.rstrip("/")
    if isinstance(value, str) and base and (value in (old, base) or value.startswith(base + "/")):
        return new + value[len(base) :]
    return value


def challenger_config(
    champion_cfg: DictConfig, out_dir: Path, overrides: Sequence[str] = ()
) -> tuple[DictConfig, list[str]]:
    """The new run's config from the champion's resolved config; also the notes it implies.

    Same model, features, target, backtest and trainer; ``data.start``/``data.end`` cleared so
    the last ``data.days`` end at the newest candle; ``split`` walk-forward; no resume
    checkpoint; every path under the old run folder moved to ``out_dir``; then ``overrides``.
    """
    notes: list[str] = []
    old = str(champion_cfg.paths.get("output_dir") or "")
    container = OmegaConf.to_container(champion_cfg, resolve=False, throw_on_missing=False)
    cfg = OmegaConf.create(_repoint(container, old, str(out_dir)))
    assert isinstance(cfg, DictConfig)
    cfg.paths.output_dir = str(out_dir)
    cfg.data.start = None
    cfg.data.end = None
    if cfg.get("ckpt_path"):
        notes.append(f"the registered run resumed from {cfg.ckpt_path}; the retrain starts fresh")
        cfg.ckpt_path = None
    if str(cfg.split.get("_target_", "")) != WALK_FORWARD:
        cfg.split = OmegaConf.load(CONF_DIR / "split" / "walk_forward.yaml")
        notes.append(
            "the registered run used a holdout split; the retrain uses the walk-forward defaults "
            "of conf/split/walk_forward.yaml (override split.* to change them)"
        )
    return apply_overrides(cfg, overrides), notes


def check_comparable(champion_spec: dict[str, Any], cfg: DictConfig) -> None:
    """Refuse a challenger config that forecasts something else than the champion.

    Raises:
        RetrainError: naming the differing setting (symbol, interval, horizons, lag, task).
    """
    from cryptoforecast.data.from_config import target_spec

    target = target_spec(cfg)
    ours = {
        "symbol": str(cfg.data.symbol),
        "interval": str(cfg.data.interval),
        "horizons": list(target.horizons),
        "execution_lag": int(target.execution_lag),
        "task": str(cfg.get("task", "regression")),
    }
    for key, value in ours.items():
        theirs = champion_spec[key]
        if (list(theirs) if isinstance(theirs, list) else theirs) != value:
            raise RetrainError(
                f"the challenger's {key} would be {value!r} but the champion's is {theirs!r}: "
                "the two would forecast different things and cannot be compared"
            )


# ---------------------------------------------------------------- scoring


def overlap_with_training(
    stamps: pd.DatetimeIndex, train_end: pd.Timestamp, reach: int, step: pd.Timedelta
) -> dict[str, Any]:
    """How much of the segment the champion saw while training.

    Args:
        stamps: the segment's decision bars ``t`` ``[S]``.
        train_end: the champion's last training sample ``t`` (``training_stats.json``).
        reach: ``execution_lag + max(horizon)`` of the champion's labels, in bars.
        step: the bar length.

    Returns:
        ``champion_train_end``, ``n_in_champion_training`` (``t <= train_end``),
        ``n_within_purge`` (``t <= train_end + reach`` bars: the splitter would have purged these
        between the champion's training rows and a later segment) and ``in_sample``.
    """
    within = int((stamps <= train_end + reach * step).sum())
    return {
        "champion_train_end": str(train_end),
        "n_in_champion_training": int((stamps <= train_end).sum()),
        "n_within_purge": within,
        "in_sample": within > 0,
    }


def point_losses(y_true: np.ndarray, y_pred: np.ndarray, task: str) -> np.ndarray:
    """Per-bar loss of the decision metric: ``|error|`` (regression) or log loss (``p_up``)."""
    if task == "classification":
        p = np.clip(y_pred, _EPS, 1.0 - _EPS)
        out: np.ndarray = -np.where(y_true > 0.5, np.log(p), np.log1p(-p))
        return out
    return np.abs(y_pred - y_true)


def score(
    y_true: np.ndarray, y_pred: np.ndarray, horizons: Sequence[int], task: str
) -> dict[str, Any]:
    """The metric and directional accuracy, per horizon and averaged over horizons.

    Shapes: ``[S, H], [S, H] -> dict``.
    """
    per: dict[str, dict[str, float]] = {}
    for j, h in enumerate(horizons):
        y, p = y_true[:, j], y_pred[:, j]
        if task == "classification":
            rep = metrics.classification_report(y, p)
            per[str(h)] = {"log_loss": rep["log_loss"], "directional_accuracy": rep["accuracy"]}
        else:
            per[str(h)] = {
                "mae": metrics.mae(y, p),
                "directional_accuracy": metrics.directional_accuracy(y, p),
            }
    name = metric_name(task)
    return {
        name: float(np.mean([v[name] for v in per.values()])),
        "directional_accuracy": float(np.mean([v["directional_accuracy"] for v in per.values()])),
        "per_horizon": per,
    }


def metric_name(task: str) -> str:
    """``log_loss`` for classifiers, ``mae`` (of the log-return forecast) otherwise."""
    return "log_loss" if task == "classification" else "mae"


def dm_tests(
    y_true: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    horizons: Sequence[int],
    task: str,
) -> dict[str, dict[str, Any]]:
    """Diebold-Mariano of challenger (model 1) vs champion per horizon, on the per-bar loss.

    The per-bar losses are passed as "errors" with ``loss="absolute"`` (they are >= 0), so the
    loss differential is exactly challenger loss minus champion loss.
    """
    out: dict[str, dict[str, Any]] = {}
    for j, h in enumerate(horizons):
        l1 = point_losses(y_true[:, j], challenger[:, j], task)
        l2 = point_losses(y_true[:, j], champion[:, j], task)
        try:
            res = diebold_mariano(l1, l2, horizon=int(h), loss="absolute")
        except ValueError as exc:  # e.g. fewer than 10 bars
            out[str(h)] = {"error": str(exc)}
            continue
        out[str(h)] = {
            "statistic": res.statistic,
            "p_value": res.p_value,
            "mean_loss_diff": res.mean_loss_diff,
            "n": res.n,
        }
    return out


def decide(
    champion: float, challenger: float, min_improvement: float, metric: str
) -> tuple[bool, float, str]:
    """``(promote, improvement, reason)``; promote iff the relative improvement > the margin."""
    improvement = (champion - challenger) / champion if champion > 0 else 0.0
    verdict = (
        f"challenger {metric} {challenger:.6g} vs champion {champion:.6g}: "
        f"{improvement:+.2%} relative improvement"
    )
    if improvement > min_improvement:
        return True, improvement, f"{verdict} > required {min_improvement:.2%}"
    return False, improvement, f"{verdict} <= required {min_improvement:.2%}; production unchanged"


# ---------------------------------------------------------------- the pipeline


def default_out_dir(cfg: DictConfig, name: str) -> Path:
    """``<paths.log_dir>/retrain/runs/<UTC time>_<name>``."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H-%M-%S")
    return Path(str(cfg.paths.get("log_dir", "outputs"))) / "retrain" / "runs" / f"{stamp}_{name}"


def train_challenger(cfg: DictConfig, out_dir: Path) -> Path:
    """Write ``.hydra/config.yaml`` (what ``export_run`` reads), train, export the newest fold."""
    from cryptoforecast.export.bundle import export_run
    from cryptoforecast.pipelines.train import run

    (out_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / ".hydra" / "config.yaml")
    run(cfg)
    return export_run(out_dir)


def retrain(
    name: str,
    registry_root: Path | None = None,
    overrides: Sequence[str] = (),
    out_dir: Path | None = None,
    min_improvement: float = 0.0,
    dry_run: bool = False,
) -> RetrainReport:
    """Retrain ``name`` on the newest data; register the challenger; promote it if it wins.

    Args:
        name: a registered model name.
        registry_root: the registry (default ``$CRYPTOFORECAST_REGISTRY``).
        overrides: Hydra-style ``key=value`` overrides of the registered config, e.g.
            ``data.source=file data.path=new.csv`` or ``split.n_folds=2``.
        out_dir: the new run folder (default ``outputs/retrain/runs/<time>_<name>``); it must
            not exist yet, or be empty.
        min_improvement: relative margin in ``[0, 1]`` the challenger's metric must beat the
            champion's by (0: strictly better; 1: never promote).
        dry_run: train, export and score, but neither register nor promote.

    Returns:
        The :class:`RetrainReport` (also saved as ``retrain_report.json`` in ``out_dir``).

    Raises:
        RegistryError: nothing registered under ``name``.
        RetrainError: bad overrides, a used ``out_dir``, or a challenger that forecasts
            something else than the champion.
        DataError / BundleError / ExportError: from loading, training or export.
    """
    if not 0.0 <= min_improvement <= 1.0:
        raise RetrainError(f"min_improvement must lie in [0, 1], got {min_improvement}")
    registry = Registry(registry_root)
    champ_version, champ_source = find_champion(registry, name)
    champ_dir = registry.path(f"{name}:{champ_version}")
    champ_cfg = OmegaConf.load(champ_dir / "config.yaml")
    if not isinstance(champ_cfg, DictConfig):
        raise RetrainError(f"{champ_dir / 'config.yaml'}: not a mapping")
    check_targets(champ_cfg, champ_dir / "config.yaml")  # before anything is built from it
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(champ_cfg, name)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RetrainError(f"{out_dir}: already exists and is not empty; pass another --out")
    out_dir = out_dir.resolve()
    cfg, notes = challenger_config(champ_cfg, out_dir, overrides)
    champion = Predictor.from_bundle(champ_dir, verify=False, source=f"{name}:{champ_version}")
    check_comparable(champion.spec, cfg)
    if champ_source == "latest":
        notes.insert(0, f"{name} has no production version: the champion is the latest version")

    bundle = train_challenger(cfg, out_dir)
    challenger = Predictor.from_bundle(bundle)
    comparison = compare(cfg, champion, challenger)
    notes += comparison.pop("notes")
    task = str(cfg.get("task", "regression"))
    metric = metric_name(task)
    promote, improvement, reason = decide(
        comparison["scores"]["champion"][metric],
        comparison["scores"]["challenger"][metric],
        min_improvement,
        metric,
    )
    before = registry.stages(name)["current"].get(STAGE)
    version: int | None = None
    if not dry_run:
        version = registry.register(bundle, name)
        if promote:
            registry.promote(name, version, STAGE)
    else:
        would = "would promote" if promote else "would keep"
        reason = f"dry run, nothing registered ({would}): {reason}"
    report = RetrainReport(
        name=name,
        registry=str(registry.root),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        champion=_describe(champ_version, champ_source, champ_dir),
        challenger={
            **_describe(version, "retrain", bundle),
            "run_dir": str(out_dir),
        },
        task=task,
        metric=metric,
        improvement=improvement,
        min_improvement=min_improvement,
        decision="promote" if promote else "keep",
        promoted=promote and not dry_run,
        dry_run=dry_run,
        reason=reason,
        production_before=None if before is None else int(before),
        production_after=registry.stages(name)["current"].get(STAGE),
        notes=notes,
        **comparison,
    )
    report.save(out_dir / REPORT_FILE)
    log.info("retrain of %s: %s", name, reason)
    return report


def _describe(version: int | None, source: str, folder: Path) -> dict[str, Any]:
    """Version, source, bundle folder, model name and ``train_end`` of one side."""
    stats = json.loads((folder / "training_stats.json").read_text())
    manifest = json.loads((folder / MANIFEST).read_text())
    return {
        "version": version,
        "source": source,
        "bundle": str(folder),
        "model_name": manifest.get("model_name"),
        "train_end": stats.get("train_end"),
    }


def compare(cfg: DictConfig, champion: Predictor, challenger: Predictor) -> dict[str, Any]:
    """Score both predictors on the challenger's last validation segment, from raw candles.

    Returns:
        ``segment``, ``overlap``, ``scores`` (champion, challenger, persistence), ``dm`` and
        ``notes`` (for :class:`RetrainReport`).

    Raises:
        RetrainError: no bar of the segment has a valid window for both models.
    """
    from hydra.utils import instantiate

    from cryptoforecast.data.from_config import run_data
    from cryptoforecast.data.loader import load_candles

    data = run_data(cfg)  # exactly the samples and folds the challenger's training built
    fold = data.folds[-1]
    samples = data.samples
    stamps = samples.windows.timestamps[fold.val]
    y_true = samples.targets[samples.windows.ends[fold.val]]  # [S, H]
    history = max(champion.min_history, challenger.min_history)
    frame = load_candles(instantiate(cfg.data), history_bars=history).frame
    y_champ, ok_champ = batch_forecasts(champion, frame, stamps)
    y_chall, ok_chall = batch_forecasts(challenger, frame, stamps)
    keep = ok_champ & ok_chall & np.isfinite(y_true).all(axis=1)
    if not keep.any():
        raise RetrainError(
            f"no bar of the validation segment {stamps[0]} -> {stamps[-1]} has a valid window "
            "for both models (champion history/lookback longer than the loaded candles?)"
        )
    task = str(cfg.get("task", "regression"))
    horizons = list(samples.target.horizons)
    y, stamps = y_true[keep], stamps[keep]
    naive = np.full_like(y, 0.5 if task == "classification" else 0.0)
    notes = [
        f"the segment is the validation segment of the challenger's fold {fold.number}: it also "
        "picked the challenger's early-stopping point, which favours the challenger slightly"
    ]
    stats = json.loads((champion.folder / "training_stats.json").read_text())
    train_end = pd.Timestamp(stats["train_end"])
    reach = int(champion.spec["execution_lag"]) + max(champion.horizons)
    overlap = overlap_with_training(stamps, train_end, reach, champion.step)
    if overlap["in_sample"]:
        notes.append(
            f"{overlap['n_within_purge']} of {len(stamps)} segment bars are not separated from "
            f"the champion's training period (train_end {train_end}, "
            f"{overlap['n_in_champion_training']} of them training samples): on those bars the "
            "champion is scored in-sample, which favours it"
        )
    name = metric_name(task)
    scores = {
        "champion": score(y, y_champ[keep], horizons, task),
        "challenger": score(y, y_chall[keep], horizons, task),
        "persistence": score(y, naive, horizons, task),
    }
    if min(scores["champion"][name], scores["challenger"][name]) >= scores["persistence"][name]:
        baseline = "coin (p_up = 0.5)" if task == "classification" else "zero-return persistence"
        notes.append(f"neither model beats the {baseline} forecast's {name} on this segment")
    dropped = int((~keep).sum())
    if dropped:
        notes.append(f"{dropped} segment bar(s) lacked a valid window for one model; dropped")
    return {
        "segment": {
            "kind": "validation",
            "fold": fold.number,
            "start": str(stamps[0]),
            "end": str(stamps[-1]),
            "n": int(len(stamps)),
            "dropped": dropped,
            "horizons": horizons,
        },
        "overlap": overlap,
        "scores": scores,
        "dm": dm_tests(y, y_chall[keep], y_champ[keep], horizons, task),
        "notes": notes,
    }
