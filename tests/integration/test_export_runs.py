"""Tiny real training runs shared by the export, serving and paper-trading tests (no tests here).

Each run goes through ``pipelines.train.run`` with the FAST overrides (30 days of bundled BTCUSDT,
log-return features) and writes ``.hydra/config.yaml`` the way Hydra does, so the export reads a
genuine run folder. Torch runs train one epoch of 3 batches so checkpoints exist.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cryptoforecast.paths import CONF_DIR

from .conftest import FAST

TORCH_SHORT = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "callbacks.progress_bar=null",
)
RUNS: dict[str, tuple[str, ...]] = {
    "attention_lstm": ("model=attention_lstm", *TORCH_SHORT),
    "lightgbm": ("model=lightgbm", "+model.module.n_estimators=30"),
    "lightgbm_cls": ("model=lightgbm", "+model.module.n_estimators=30", "task=classification"),
    "tcn_cls": ("model=tcn", "features.lookback=32", "task=classification", *TORCH_SHORT),
    "lstm_wf": (
        "model=lstm",
        "split=walk_forward",
        "split.n_folds=2",
        "split.val_bars=96",
        "split.test_bars=96",
        "split.train_bars=300",
        *TORCH_SHORT,
    ),
    # stacking ensembles: a net and LightGBM in one graph (mean meta, so the forecasts are not
    # shrunk to ~0 by ridge and the 1e-5 predictions check is meaningful)
    "ensemble": (
        "model=ensemble",
        "model.module.base_models=[attention_lstm,lightgbm]",
        "model.module.meta=mean",
        *TORCH_SHORT,
    ),
    "ensemble_cls_wf": (
        "model=ensemble",
        "model.module.base_models=[lstm,lightgbm]",
        "task=classification",
        "split=walk_forward",
        "split.n_folds=2",
        "split.val_bars=96",
        "split.test_bars=96",
        "split.train_bars=300",
        *TORCH_SHORT,
    ),
    # the default features (RSI-200 warm-up, the windowed wavelet): the serving fast path
    "lightgbm_default": ("model=lightgbm", "+model.module.n_estimators=30", "features=default"),
    "multi_symbol": ("data.symbols=[BTCUSDT,ETHUSDT]",),  # config only: export must refuse it
}
_BASE: list[Path] = []
_DONE: dict[str, Path] = {}


def run_folder(kind: str, train: bool = True) -> Path:
    """The run folder of ``RUNS[kind]``, trained once per test session."""
    if kind in _DONE:
        return _DONE[kind]
    if not _BASE:
        _BASE.append(Path(tempfile.mkdtemp(prefix="cf-runs-")))
        atexit.register(shutil.rmtree, _BASE[0], True)
    out = _BASE[0] / kind
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=[f"paths.output_dir={out}", *FAST, *RUNS[kind]]
        )
    if train:
        from cryptoforecast.pipelines.train import run

        run(cfg)
    (out / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")  # what Hydra writes (unresolved)
    _DONE[kind] = out
    return out
