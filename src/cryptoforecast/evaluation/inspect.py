"""Rebuild a trained attention model from its run folder and read its attention (for notebooks).

Everything comes from what ``train.py`` saved: ``.hydra/config.yaml`` (data, features, split,
model), ``scaler.json`` (the train-only feature scaler and target scale) and the best checkpoint
in ``checkpoints/``. The candles and features are recomputed from the same config, so the test
windows are exactly the ones the run scored; :func:`attention_on_test` also returns the
forecasts, which reproduce the run's ``predictions.parquet``.

    run = load_run("outputs/train/runs/2026-03-20_12-00-00_attention_lstm")
    res = attention_on_test(run)            # res.attn [S, heads, L, L]
    by_lag = attention_by_lag(res.attn)     # [heads, L], lag 0 = bar t

Walk-forward runs keep one model per fold (``fold_<k>/``); ``fold=None`` picks the last.
"""

from __future__ import annotations

import inspect as _inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from cryptoforecast.data.datamodule import SampleSet
    from cryptoforecast.data.splits import Fold
    from cryptoforecast.models.lit_forecaster import LitForecaster


class RunModel(NamedTuple):
    """A trained run rebuilt from its folder.

    Attributes:
        cfg: the run's config (``paths.output_dir`` set to the run folder).
        samples: features, targets and windows recomputed from the config.
        fold: the train/val/test positions of the chosen fold.
        module: the ``LitForecaster`` with the best checkpoint's weights, in eval mode.
        model_dir: where its ``scaler.json`` and ``checkpoints/`` are (``fold_<k>/`` or the run).
    """

    cfg: DictConfig
    samples: SampleSet
    fold: Fold
    module: LitForecaster
    model_dir: Path


class TestAttention(NamedTuple):
    """Attention and forecasts of a run's model on its test windows (time order).

    Attributes:
        attn: ``[S, heads, L, L]`` weights; row ``i`` (query step) sums to 1 over key steps
            ``<= i``; step ``L-1`` is bar ``t``, the last input bar.
        timestamps: ``[S]`` open time of each window's last bar ``t``.
        y_true: ``[S, H]`` targets (log returns, or 0/1 direction labels).
        y_pred: ``[S, H]`` forecasts in target units (returns, or ``p_up`` for classifiers).
        ends: ``[S]`` row of bar ``t`` in the run's samples (``samples.close[ends]`` ...).
    """

    attn: np.ndarray
    timestamps: pd.DatetimeIndex
    y_true: np.ndarray
    y_pred: np.ndarray
    ends: np.ndarray


def load_run_config(run_dir: Path | str) -> DictConfig:
    """The run's ``.hydra/config.yaml`` with ``paths.output_dir`` pointing at ``run_dir``."""
    from omegaconf import OmegaConf, open_dict

    run_dir = Path(run_dir)
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no .hydra/config.yaml (not a train.py run folder?)")
    cfg = OmegaConf.load(path)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)  # was ${hydra:runtime.output_dir}
    return cfg  # type: ignore[return-value]


def best_checkpoint(ckpt_dir: Path) -> Path:
    """The best ``epoch_XXX.ckpt``: ModelCheckpoint's record in ``last.ckpt``, else the only one.

    Raises:
        FileNotFoundError: no checkpoint to choose (``fast_dev_run`` writes none).
    """
    import torch

    last = ckpt_dir / "last.ckpt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        for key, cb in state.get("callbacks", {}).items():
            best = cb.get("best_model_path") if key.startswith("ModelCheckpoint") else None
            if best and (ckpt_dir / Path(best).name).is_file():  # the folder may have moved
                return ckpt_dir / Path(best).name
    epochs = sorted(ckpt_dir.glob("epoch_*.ckpt"))
    if len(epochs) == 1:
        return epochs[0]
    raise FileNotFoundError(
        f"{ckpt_dir}: cannot tell the best checkpoint ({len(epochs)} epoch_*.ckpt files, no "
        "ModelCheckpoint record in last.ckpt); fast_dev_run runs write no checkpoints"
    )


def _model_dir(run_dir: Path, fold: int | None) -> tuple[int, Path]:
    fold_dirs = sorted(run_dir.glob("fold_*"), key=lambda p: int(p.name.split("_")[1]))
    if not fold_dirs:
        if fold not in (None, 0):
            raise ValueError(f"{run_dir} is not a walk-forward run; it has no fold {fold}")
        return 0, run_dir
    number = int(fold_dirs[-1].name.split("_")[1]) if fold is None else fold
    if not (run_dir / f"fold_{number}").is_dir():
        raise ValueError(f"{run_dir}: no fold_{number}/ ({len(fold_dirs)} folds)")
    return number, run_dir / f"fold_{number}"


def load_run(run_dir: Path | str, fold: int | None = None) -> RunModel:
    """Rebuild a torch run: config, samples, fold and the model with its best weights.

    Args:
        run_dir: a ``train.py`` run folder of a torch model (trained with checkpoints, i.e. not
            ``fast_dev_run``).
        fold: walk-forward fold (default: the last); holdout runs have only fold 0.

    Raises:
        FileNotFoundError: no config or checkpoint. ValueError: not a torch model, or the
        recomputed features differ from the ones the scaler was fitted on.
    """
    import torch

    from cryptoforecast.models.factory import build_model

    run_dir = Path(run_dir).resolve()
    cfg = load_run_config(run_dir)
    if "net" not in cfg.model.module:
        raise ValueError(f"{run_dir}: model {cfg.model.name!r} is not a torch net")
    number, model_dir = _model_dir(run_dir, fold)
    task = cfg.get("task", "regression")
    from cryptoforecast.data.from_config import run_data

    data = run_data(cfg)  # exactly the samples and folds training built
    samples, target = data.samples, data.samples.target
    chosen = next((f for f in data.folds if f.number == number), None)
    if chosen is None:
        raise ValueError(f"{run_dir}: the config yields no fold {number}")
    names = json.loads((model_dir / "scaler.json").read_text())["feature_names"]
    if list(names) != samples.feature_names:
        raise ValueError(f"{model_dir / 'scaler.json'}: feature names differ from the config's")
    module = build_model(cfg.model, samples.n_features, len(target.horizons), task)
    ckpt = best_checkpoint(model_dir / "checkpoints")
    module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    module.eval()
    return RunModel(cfg, samples, chosen, module, model_dir)


def attention_on_test(
    run: RunModel | Path | str, max_samples: int | None = None, batch_size: int = 256
) -> TestAttention:
    """Attention weights and forecasts of an attention model on its test windows.

    Args:
        run: a :class:`RunModel` or a run folder (loaded with :func:`load_run`).
        max_samples: keep only the most recent test windows (memory: ``S * heads * L * L``
            floats, e.g. 1,300 x 4 x 64 x 64 = 85 MB).
        batch_size: windows per forward pass.

    Raises:
        ValueError: the net has no ``forward(x, return_attention=True)``.
    """
    import torch

    from cryptoforecast.features.scalers import scaler_from_dict

    if not isinstance(run, RunModel):
        run = load_run(run)
    net = run.module.net
    if "return_attention" not in _inspect.signature(net.forward).parameters:
        raise ValueError(
            f"model {run.cfg.model.name!r} has no attention weights (attention models: "
            "attention_lstm, tcn_attention, tft)"
        )
    state = json.loads((run.model_dir / "scaler.json").read_text())
    scaled = scaler_from_dict(state["features"]).transform(run.samples.features)  # [N, F]
    target_scale = np.asarray(state["target_scale"], dtype=np.float64)  # [H]
    positions = run.fold.test if max_samples is None else run.fold.test[-max_samples:]
    ends = run.samples.windows.ends[positions]
    lookback = run.samples.windows.lookback
    rows = ends[:, None] + np.arange(1 - lookback, 1)[None, :]  # [S, L]
    attn_parts, pred_parts = [], []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(scaled[rows[i : i + batch_size]], "float32"))
            y_hat, attn = net(x, return_attention=True)  # [B, H], [B, heads, L, L]
            attn_parts.append(attn.numpy())
            pred_parts.append(y_hat.numpy().astype(np.float64))
    y_hat = np.concatenate(pred_parts)  # [S, H]
    if run.module.task == "classification":
        y_pred = 1.0 / (1.0 + np.exp(-y_hat))  # logits -> p_up
    else:
        y_pred = y_hat * target_scale  # scaled returns -> log returns
    return TestAttention(
        attn=np.concatenate(attn_parts),
        timestamps=pd.DatetimeIndex(run.samples.windows.timestamps[positions]),
        y_true=run.samples.targets[ends],
        y_pred=y_pred,
        ends=ends,
    )


def attention_by_lag(attn: np.ndarray) -> np.ndarray:
    """Mean attention of the forecast step (query ``t``) on each lag.

    Shapes: ``[S, heads, L, L] -> [heads, L]``.

    Column ``k`` is the weight on the bar ``k`` bars before ``t`` (``k = 0``: bar ``t``); the
    head reads only step ``t``'s representation, so this is what the forecast attends to.
    """
    return np.asarray(attn[:, :, -1, ::-1].mean(axis=0))  # [S, heads, L] -> [heads, L]


def mean_attention(attn: np.ndarray, index: Any = None) -> np.ndarray:
    """Average attention map per head over windows: ``[S, heads, L, L] -> [heads, L, L]``.

    Args:
        attn: weights from :func:`attention_on_test`.
        index: optional subset of windows (positions or a boolean mask).
    """
    return np.asarray((attn if index is None else attn[index]).mean(axis=0))


def largest_moves(y_true: np.ndarray, k: int = 5, horizon: int = 0) -> np.ndarray:
    """Positions of the ``k`` windows whose target has the largest absolute value, largest first.

    Args:
        y_true: ``[S, H]`` targets from :func:`attention_on_test`.
        k: how many.
        horizon: which target column (horizon index, not bars).
    """
    size = np.abs(np.nan_to_num(y_true[:, horizon]))
    return np.argsort(-size, kind="stable")[:k]
