"""The model bundle: a folder that holds everything serving needs, checksummed.

Layout (``cryptoforecast export RUN_DIR``)::

    model.onnx            x [B, L, F] -> y_hat [B, H] (+ attention for attention nets; a
                          stacking ensemble is one graph of its members and meta-learner,
                          see export/ensemble_onnx.py, with a ``members`` output)
    feature_spec.json     FeatureSet.to_spec() + horizons, lag, interval, symbol, task, target
                          scale, backtest rule, and how to feed / read the graph ("model")
    scaler.json           the run's fitted feature scaler (null for trees and ensembles, whose
                          nets' scalers are inside the graph) and target_scale
    training_stats.json   per-feature decile edges on the training rows (drift monitoring)
    config.yaml           the run's resolved Hydra config
    metrics.json          the run's metrics
    manifest.json         sha256 + size of every file above, the parity record, versions

This module's top level imports only the standard library: the serving path reads manifests
through it and must not import torch. :func:`export_run` imports the heavy parts lazily.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
BUNDLE_FILES = (
    MODEL_FILE,
    "feature_spec.json",
    "scaler.json",
    "training_stats.json",
    "config.yaml",
    "metrics.json",
)
#: Serving parity of the whole export against the run's own predictions.parquet (return units
#: or p_up); the run predicted with torch / LightGBM in other batch sizes.
PREDICTIONS_ATOL = 1e-5


class BundleError(ValueError):
    """A bundle is missing a file, has a wrong checksum, or cannot be read."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Checksum every file in ``folder`` (except the manifest) and write ``manifest.json``."""
    files = {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"format_version": FORMAT_VERSION, **extra, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def verify_bundle(folder: Path) -> dict[str, Any]:
    """Check that every file the manifest lists exists with its sha256; return the manifest.

    Every listed name must be a plain file name inside ``folder``: absolute paths, ``..``,
    sub-folders, and symlinks (which could point outside the bundle) are refused; so is any
    symlink in the folder, listed or not, and a manifest that is itself a symlink.

    Raises:
        BundleError: naming the missing, corrupted or refused file.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if path.is_symlink():
        raise BundleError(f"{path}: is a symlink; a bundle's files must be plain files")
    if not path.is_file():
        raise BundleError(f"{folder}: not a model bundle (no {MANIFEST})")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: the manifest is not a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: unknown bundle format {manifest.get('format_version')!r}")
    for entry in folder.iterdir():  # an unlisted link could still be reached (ONNX external data)
        if entry.is_symlink():
            raise BundleError(f"{entry}: is a symlink; a bundle's files must be plain files")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{path}: 'files' must be an object of file name -> sha256 and bytes")
    for name in BUNDLE_FILES:
        if name not in files:
            raise BundleError(f"{path}: the manifest does not list {name}")
    for name, entry in files.items():
        file = bundle_file(folder, name, path)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise BundleError(f"{path}: files[{name!r}] has no sha256")
        if not file.is_file():
            raise BundleError(f"{file}: missing from the bundle")
        if sha256_file(file) != entry["sha256"]:
            raise BundleError(
                f"{file}: checksum mismatch (corrupted or modified; manifest sha256 "
                f"{entry['sha256'][:12]}..., file {sha256_file(file)[:12]}...)"
            )
    return manifest


def bundle_file(folder: Path, name: Any, manifest: Path | str = MANIFEST) -> Path:
    """``folder / name`` for a name listed in a manifest, refusing anything but a plain file name.

    Args:
        folder: the bundle folder.
        name: the listed name (from untrusted JSON).
        manifest: the manifest path, for the error message.

    Raises:
        BundleError: ``name`` is not a string, is absolute, contains a path separator or ``..``,
            is the manifest or hidden, or is a symlink in ``folder``.
    """
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..", MANIFEST)
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or Path(name).is_absolute()
    ):
        raise BundleError(
            f"{manifest}: refused file name {name!r} (only plain file names inside the bundle)"
        )
    file = Path(folder) / name
    if file.is_symlink():
        raise BundleError(f"{file}: is a symlink; a bundle's files must be plain files")
    return file


# ---------------------------------------------------------------- export of a run folder


def load_run_config(run_dir: Path) -> Any:
    """The run's ``.hydra/config.yaml``, resolved with ``paths.output_dir=run_dir``."""
    from omegaconf import OmegaConf, open_dict

    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise BundleError(f"{run_dir}: no .hydra/config.yaml (not a train.py run folder?)")
    cfg = OmegaConf.load(path)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)  # was ${hydra:runtime.output_dir}
    OmegaConf.resolve(cfg)
    return cfg


def best_checkpoint(ckpt_dir: Path) -> Path:
    """The best ``epoch_XXX.ckpt`` (ModelCheckpoint's record in ``last.ckpt``, else the only one).

    Raises:
        BundleError: no checkpoints (``fast_dev_run`` writes none) or no way to tell the best.
    """
    import torch

    epochs = sorted(ckpt_dir.glob("epoch_*.ckpt"))
    last = ckpt_dir / "last.ckpt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        for key, cb in state.get("callbacks", {}).items():
            best = cb.get("best_model_path") if key.startswith("ModelCheckpoint") else None
            if best and (ckpt_dir / Path(best).name).is_file():  # the run folder may have moved
                return ckpt_dir / Path(best).name
    if len(epochs) == 1:
        return epochs[0]
    raise BundleError(
        f"{ckpt_dir}: cannot tell the best checkpoint ({len(epochs)} epoch_*.ckpt files, "
        "no ModelCheckpoint record in last.ckpt); fast_dev_run runs write no checkpoints"
    )


def export_run(run_dir: Path, out: Path | None = None, fold: int | None = None) -> Path:
    """Export a ``train.py`` run folder (one fold of a walk-forward run) as a verified bundle.

    Args:
        run_dir: the run folder (``.hydra/config.yaml``, ``metrics.json``, model files).
        out: the bundle folder to create (default ``RUN_DIR/bundle``, or
            ``RUN_DIR/bundle_fold<k>`` for walk-forward runs); it must not exist yet.
        fold: the walk-forward fold to export (default: the last, most recent one).

    Returns:
        The bundle folder. Nothing is left at ``out`` when any check fails.

    Raises:
        BundleError / ExportError: unsupported model, missing files, or failed parity.
    """
    from cryptoforecast.export.onnx import ExportError

    run_dir = Path(run_dir).resolve()
    cfg = load_run_config(run_dir)
    target = cfg.model.module.get("_target_", "")
    if cfg.data.get("symbols"):
        raise ExportError("exporting multi-symbol runs is not supported yet")
    if target.endswith(".NaiveForecaster"):
        raise ExportError("naive baselines have nothing to export")
    fold_dirs = sorted(run_dir.glob("fold_*"), key=lambda p: int(p.name.split("_")[1]))
    if fold_dirs:
        number = int(fold_dirs[-1].name.split("_")[1]) if fold is None else fold
        model_dir = run_dir / f"fold_{number}"
        if not model_dir.is_dir():
            raise BundleError(f"{run_dir}: no fold_{number}/ (folds: {len(fold_dirs)})")
    else:
        if fold not in (None, 0):
            raise BundleError(f"{run_dir}: not a walk-forward run; --fold {fold} does not exist")
        number, model_dir = 0, run_dir
    out = Path(out) if out else run_dir / ("bundle" if not fold_dirs else f"bundle_fold{number}")
    if out.exists():
        raise BundleError(f"{out}: already exists; remove it or pass another --out")

    from cryptoforecast.data.from_config import run_data

    data = run_data(cfg)  # exactly the samples and folds training built
    feature_set, samples, spec = data.feature_set, data.samples, data.samples.target
    chosen = next((f for f in data.folds if f.number == number), None)
    if chosen is None:
        raise BundleError(f"{run_dir}: the config yields no fold {number}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    try:
        info = _export_model(cfg, model_dir, samples, chosen, tmp)
        check = _check_run_predictions(run_dir, samples, chosen, info, tmp)
        _write_side_files(
            cfg, run_dir, samples, chosen, feature_set, spec, info, tmp, data.candles.frame
        )
        write_manifest(
            tmp,
            {
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "model_name": str(cfg.model.name),
                "source_run": str(run_dir),
                "fold": number,
                "parity": info["parity"],
                "predictions_check": check,
                "versions": _versions(info["kinds"]),
            },
        )
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("bundle written to %s", out)
    return out


def _windows(samples: Any, positions: Any, features: Any, dtype: Any) -> Any:
    import numpy as np

    ends = samples.windows.ends[positions]
    rows = ends[:, None] + np.arange(1 - samples.windows.lookback, 1)[None, :]  # [S, L]
    return np.ascontiguousarray(features[rows], dtype=dtype)  # [S, L, F]


def _export_model(cfg: Any, model_dir: Path, samples: Any, fold: Any, out: Path) -> dict[str, Any]:
    """Write model.onnx + scaler.json into ``out``; verify parity; describe the graph."""
    import numpy as np

    if cfg.model.module.get("_target_", "").endswith(".StackingEnsemble"):
        return _export_ensemble(cfg, model_dir, samples, fold, out)
    task = cfg.get("task", "regression")
    n_features, n_out = samples.n_features, len(samples.target.horizons)
    if "net" in cfg.model.module:  # a torch net wrapped in LitForecaster
        from cryptoforecast.export.onnx import export_net, verify_net_parity
        from cryptoforecast.features.scalers import scaler_from_dict
        from cryptoforecast.models.factory import build_model

        net, state, ckpt = _load_net(
            lambda: build_model(cfg.model, n_features, n_out, task), model_dir, samples
        )
        scaled = scaler_from_dict(state["features"]).transform(samples.features)
        graph = export_net(net, samples.windows.lookback, n_features, out / "model.onnx")
        windows = _windows(samples, fold.test, scaled, np.float32)
        parity = verify_net_parity(net, out / "model.onnx", windows)
        (out / "scaler.json").write_text(json.dumps(state, indent=1) + "\n")
        io = {"input_dtype": "float32", "input_scaling": "scaler"}
        output = "logit" if task == "classification" else "scaled_return"
        kind, source = "torch", ckpt.name
    else:
        from cryptoforecast.export.lightgbm_onnx import export_lightgbm, verify_lightgbm_parity

        model = _load_lightgbm(model_dir, samples)
        graph = export_lightgbm(model, n_features, out / "model.onnx")
        windows = _windows(samples, fold.test, samples.features, np.float64)
        parity = verify_lightgbm_parity(model, out / "model.onnx", windows)
        state = {"features": None, "feature_names": samples.feature_names, "target_scale": None}
        state["target_scale"] = [1.0] * n_out
        (out / "scaler.json").write_text(json.dumps(state, indent=1) + "\n")
        io = {"input_dtype": "float64", "input_scaling": "none"}
        output = "p_up" if task == "classification" else "return"
        kind, source = "lightgbm", "lgbm_model.json"
    return {
        "kind": kind,
        "kinds": [kind],
        "parity": parity,
        "model": {**graph, **io, "output": output, "kind": kind, "source": source},
        "target_scale": state["target_scale"],
        "windows": windows,
    }


def _load_net(make_lit: Any, model_dir: Path, samples: Any) -> tuple[Any, dict[str, Any], Path]:
    """The trained net (eval mode), its scaler state and best checkpoint from ``model_dir``."""
    import torch

    from cryptoforecast.export.onnx import ExportError

    path = model_dir / "scaler.json"
    if not path.is_file():
        raise BundleError(f"{path}: missing (the torch model's fitted scaler)")
    state = json.loads(path.read_text())
    if list(state["feature_names"]) != samples.feature_names:
        raise ExportError(f"{path}: feature names differ from the config's")
    lit = make_lit()
    ckpt = best_checkpoint(model_dir / "checkpoints")
    lit.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    return lit.net.eval(), state, ckpt


def _load_lightgbm(model_dir: Path, samples: Any) -> Any:
    from cryptoforecast.export.onnx import ExportError
    from cryptoforecast.models.lightgbm_forecaster import LightGBMForecaster

    model = LightGBMForecaster.load(model_dir)
    if model.feature_names != samples.feature_names:
        raise ExportError(f"{model_dir}: LightGBM feature names differ from the config's")
    return model


def _export_ensemble(
    cfg: Any, model_dir: Path, samples: Any, fold: Any, out: Path
) -> dict[str, Any]:
    """One graph of the ensemble's members and meta-learner (``export/ensemble_onnx.py``).

    Checks, at batch 1 and 7 on the newest test windows: each member inside the graph against
    its own trained model (nets: :data:`~cryptoforecast.export.onnx.NET_ATOL` on the net's
    output scale; LightGBM: ``TREE_RTOL``), and ``y_hat`` against the meta-learner applied to
    the graph's member outputs (``META_ATOL``).
    """
    import numpy as np
    import onnx
    import onnxruntime as ort

    from cryptoforecast.export.ensemble_onnx import (
        MetaLearner,
        ensemble_to_onnx,
        verify_meta_parity,
    )

    task = cfg.get("task", "regression")
    n_out = len(samples.target.horizons)
    meta = MetaLearner.from_json(model_dir / "ensemble.json", n_out)
    windows = _windows(samples, fold.test, samples.features, np.float64)  # unscaled
    loaded = [
        _ensemble_member(cfg, name, model_dir / name, samples, windows, task)
        for name in meta.base_models
    ]
    members = [m["member"] for m in loaded]
    proto = ensemble_to_onnx(members, meta, samples.windows.lookback, samples.n_features)
    onnx.save(proto, str(out / "model.onnx"))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    members_parity = {
        m["name"]: _member_parity(session, i, m, windows) for i, m in enumerate(loaded)
    }
    parity = {
        "members": members_parity,
        "meta": verify_meta_parity(session, meta, windows),
        "outputs": ["y_hat", "members"],
        "passed": True,
    }
    state = {
        "features": None,  # each net's scaler is inside the graph
        "feature_names": samples.feature_names,
        "target_scale": [1.0] * n_out,
        "members": {m["name"]: m["scaler"] for m in loaded if m["scaler"] is not None},
    }
    (out / "scaler.json").write_text(json.dumps(state, indent=1) + "\n")
    opset = next(o.version for o in proto.opset_import if o.domain == "")
    model = {
        "opset": opset,
        "inputs": ["x"],
        "outputs": ["y_hat", "members"],
        "attention": False,
        "input_dtype": "float64",
        "input_scaling": "in_graph",
        "output": "p_up" if task == "classification" else "return",
        "kind": "ensemble",
        "source": "ensemble.json",
        "members": [m["describe"] for m in loaded],
        "meta": meta.describe(),
    }
    return {
        "kind": "ensemble",
        "kinds": sorted({m["describe"]["kind"] for m in loaded}),
        "parity": parity,
        "model": model,
        "target_scale": state["target_scale"],
        "windows": windows,
    }


def _ensemble_member(
    cfg: Any, name: str, folder: Path, samples: Any, windows: Any, task: str
) -> dict[str, Any]:
    """Load base model ``name`` from ``folder``: its graph and its own recent forecasts.

    ``reference`` is what the trained model itself predicts (target units, as the ensemble
    combined them) for the newest 7 unscaled ``windows``: ``[7, H]``.
    """
    import numpy as np
    import onnx

    from cryptoforecast.export.ensemble_onnx import Member
    from cryptoforecast.export.onnx import PARITY_BATCHES, ExportError
    from cryptoforecast.models.factory import ensemble_member
    from cryptoforecast.models.lightgbm_forecaster import LightGBMForecaster
    from cryptoforecast.models.torch_forecaster import TorchForecaster

    if not folder.is_dir():
        raise BundleError(f"{folder}: missing (the ensemble's {name} base model)")
    n_features, n_out = samples.n_features, len(samples.target.horizons)
    recent = windows[-max(PARITY_BATCHES) :]
    forecaster = ensemble_member(cfg, name)  # built exactly as the ensemble built it
    if isinstance(forecaster, TorchForecaster):
        import torch

        from cryptoforecast.export.onnx import export_net
        from cryptoforecast.features.scalers import scaler_from_dict

        net, state, ckpt = _load_net(
            lambda: forecaster.make_module(n_features, n_out), folder, samples
        )
        scaler = scaler_from_dict(state["features"])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "member.onnx"
            export_net(net, samples.windows.lookback, n_features, path, with_attention=False)
            graph = onnx.load(str(path))
        with torch.no_grad():
            y = net(torch.from_numpy(scaler.transform(recent).astype(np.float32)))
            if task == "classification":
                y = torch.sigmoid(y)
        target_scale = None if task == "classification" else np.asarray(state["target_scale"])
        reference = y.numpy().astype(np.float64)
        reference = reference if target_scale is None else reference * target_scale
        member = Member(
            name, graph, scaler.center_, scaler.scale_, task == "classification", target_scale
        )
        kind, source, saved = "torch", f"{name}/checkpoints/{ckpt.name}", state
    elif isinstance(forecaster, LightGBMForecaster):
        from cryptoforecast.export.lightgbm_onnx import lightgbm_reference, lightgbm_to_onnx

        model = _load_lightgbm(folder, samples)
        graph = lightgbm_to_onnx(model, n_features)
        reference = lightgbm_reference(model, recent)
        member = Member(name, graph, None, None, False, None)
        kind, source, saved = "lightgbm", f"{name}/lgbm_model.json", None
    else:
        raise ExportError(
            f"ensemble member {name}: {type(forecaster).__name__} cannot be exported"
        )
    return {
        "name": name,
        "member": member,
        "reference": reference,
        "scaler": saved,
        "describe": {"name": name, "kind": kind, "source": source},
    }


def _member_parity(
    session: Any, index: int, loaded: dict[str, Any], windows: Any
) -> dict[str, Any]:
    """Member ``index`` inside the ensemble graph against its own model, batches 1 and 7."""
    import numpy as np

    from cryptoforecast.export.lightgbm_onnx import TREE_RTOL
    from cryptoforecast.export.onnx import NET_ATOL, PARITY_BATCHES, ExportError

    member, reference = loaded["member"], loaded["reference"]
    record: dict[str, Any] = {"batches": {}}
    for batch in PARITY_BATCHES:
        (members,) = session.run(["members"], {"x": windows[-batch:]})
        got, ref = members[:, :, index], reference[-batch:]
        if member.center is not None:  # a net: compare on its own output scale
            unit = 1.0 if member.target_scale is None else member.target_scale
            diff = float(np.max(np.abs(got - ref) / unit))
            record["atol"], limit = NET_ATOL, NET_ATOL
        else:
            diff = float(np.max(np.abs(got - ref)))
            record["rtol"], limit = TREE_RTOL, TREE_RTOL * max(float(np.max(np.abs(ref))), 1e-12)
        record["batches"][str(batch)] = diff
        if not diff <= limit:
            raise ExportError(
                f"ensemble member {loaded['name']}: ONNX parity failed at batch {batch}: max "
                f"difference {diff:.3g} > {limit:.3g}; not exported"
            )
    return record


def _check_run_predictions(
    run_dir: Path, samples: Any, fold: Any, info: dict[str, Any], out: Path
) -> dict[str, Any]:
    """The exported graph + scaling reproduce the run's predictions.parquet for this fold."""
    import numpy as np
    import onnxruntime as ort
    import pandas as pd

    from cryptoforecast.export.onnx import ExportError

    path = run_dir / "predictions.parquet"
    if not path.is_file():
        return {"checked": False, "reason": "no predictions.parquet"}
    frame = pd.read_parquet(path)
    frame = frame[frame["fold"] == fold.number]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (y_hat,) = session.run(["y_hat"], {"x": info["windows"]})
    y = decode_outputs(y_hat.astype(np.float64), info["model"]["output"], info["target_scale"])
    col = "p_up" if "p_up" in frame.columns else "y_pred"
    worst = 0.0
    times = samples.windows.timestamps[fold.test]
    for j, h in enumerate(samples.target.horizons):
        ref = frame[frame["horizon"] == h].set_index("timestamp")[col]
        ours = pd.Series(y[:, j], index=times)
        common = ref.index.intersection(ours.index)
        if len(common) != len(ref):
            raise ExportError(f"{path}: horizon {h} has timestamps the rebuilt samples lack")
        diff = np.abs(ours[common].to_numpy() - ref[common].to_numpy())
        worst = max(worst, float(np.max(diff, initial=0.0)))
    if not worst <= PREDICTIONS_ATOL:
        raise ExportError(
            f"the exported model does not reproduce {path} (fold {fold.number}): max abs "
            f"difference {worst:.3g} > {PREDICTIONS_ATOL:g}"
        )
    return {"checked": True, "rows": int(len(frame)), "max_abs_diff": worst, "column": col}


def decode_outputs(y_hat: Any, output: str, target_scale: list[float] | None) -> Any:
    """Graph outputs ``[B, H]`` -> returns (``scaled_return``/``return``) or ``p_up``."""
    import numpy as np

    if output == "scaled_return":
        return y_hat * np.asarray(target_scale, dtype=np.float64)
    if output == "logit":
        return 1.0 / (1.0 + np.exp(-y_hat))
    if output in ("return", "p_up"):
        return y_hat
    raise BundleError(f"unknown model output kind {output!r}")


def _write_side_files(
    cfg: Any,
    run_dir: Path,
    samples: Any,
    fold: Any,
    feature_set: Any,
    spec: Any,
    info: dict[str, Any],
    out: Path,
    candles: Any = None,
) -> None:
    import numpy as np
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from cryptoforecast.data.datamodule import train_rows

    task = cfg.get("task", "regression")
    backtest = instantiate(cfg.backtest)
    if task == "classification" and backtest.rule == "sign":
        backtest = dataclasses.replace(backtest, rule="probability")
    if task == "classification" and backtest.rule == "cost" and backtest.typical_move is None:
        # the typical move the training backtest measured for this fold: candles before its test
        from cryptoforecast.backtest.engine import typical_move

        first = samples.windows.timestamps[fold.test[0]]
        horizon = backtest.horizon or min(spec.horizons)
        backtest = dataclasses.replace(
            backtest, typical_move=typical_move(candles, first, int(horizon))
        )
    feature_spec = {
        **feature_set.to_spec(),
        "horizons": list(spec.horizons),
        "execution_lag": spec.execution_lag,
        "target_kind": spec.kind,
        "task": task,
        "interval": str(cfg.data.interval),
        "symbol": samples.symbol,
        "target_scale": info["target_scale"],
        "backtest": dataclasses.asdict(backtest),
        "model": info["model"],
    }
    (out / "feature_spec.json").write_text(json.dumps(feature_spec, indent=1) + "\n")
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    metrics = run_dir / "metrics.json"
    (out / "metrics.json").write_text(metrics.read_text() if metrics.is_file() else "{}\n")
    train = samples.features[train_rows(samples, fold.train)]
    edges = np.nanquantile(train, np.linspace(0.0, 1.0, 11), axis=0).T  # [F, 11]
    stats = {
        "feature_names": samples.feature_names,
        "decile_edges": edges.tolist(),
        "train_rows": int(len(train)),
        "train_end": str(samples.windows.timestamps[fold.train[-1]]),
    }
    (out / "training_stats.json").write_text(json.dumps(stats) + "\n")


def _versions(kinds: list[str]) -> dict[str, str]:
    import onnx
    import onnxruntime

    versions = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    if "torch" in kinds:
        import torch

        versions["torch"] = torch.__version__
    if "lightgbm" in kinds:
        import lightgbm

        versions["lightgbm"] = lightgbm.__version__
    return versions
