"""``retrain``: champion/challenger retraining into the registry, and batch scoring of bundles.

The champion is a tiny walk-forward LSTM trained on 30 days of bundled BTCUSDT ending
2026-03-06; each retrain moves the window to the newest bundled candle (2026-03-20). Outcomes
are made deterministic by construction: a margin no challenger can reach (``min_improvement=1``:
its MAE would have to be below zero) and a champion whose forecasts are scaled up 1000x.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cryptoforecast.cli import main
from cryptoforecast.data.sources import bundled_path, read_candle_file
from cryptoforecast.export.bundle import MANIFEST, export_run, write_manifest
from cryptoforecast.paths import CONF_DIR
from cryptoforecast.pipelines.retrain import REPORT_FILE, RetrainError, retrain
from cryptoforecast.registry.store import Registry, RegistryError
from cryptoforecast.serving.batch import batch_forecasts
from cryptoforecast.serving.predictor import PredictionError, Predictor

from .conftest import FAST

CHAMPION_END = "2026-03-06"
SMALL_WF = (
    "split=walk_forward",
    "split.n_folds=2",
    "split.val_bars=96",
    "split.test_bars=96",
    "split.train_bars=300",
)
TINY = (
    "model=lstm",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "callbacks.progress_bar=null",
)


@pytest.fixture(scope="module")
def champion_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real exported bundle of a 2-fold walk-forward LSTM run on older candles."""
    from cryptoforecast.pipelines.train import run

    out = tmp_path_factory.mktemp("champion") / "run"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                f"paths.output_dir={out}",
                *FAST,
                *SMALL_WF,
                *TINY,
                f"data.end={CHAMPION_END}",
            ],
        )
    run(cfg)
    (out / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")  # what Hydra writes
    return export_run(out)


def sabotaged(bundle: Path, folder: Path, factor: float = 1000.0) -> Path:
    """A copy of ``bundle`` whose decoded forecasts are ``factor`` times too large."""
    shutil.copytree(bundle, folder)
    spec_path = folder / "feature_spec.json"
    spec = json.loads(spec_path.read_text())
    assert spec["model"]["output"] == "scaled_return"  # decoded as y_hat * target_scale
    spec["target_scale"] = [s * factor for s in spec["target_scale"]]
    spec_path.write_text(json.dumps(spec))
    manifest = json.loads((folder / MANIFEST).read_text())
    write_manifest(folder, {k: v for k, v in manifest.items() if k not in ("files",)})
    return folder


def test_retrain_keeps_production_when_the_margin_cannot_be_reached(
    champion_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    registry = Registry(root)
    registry.register(champion_bundle, "btc")
    registry.promote("btc", 1, "production")
    out = tmp_path / "retrain"
    capsys.readouterr()
    code = main(
        ["retrain", "btc", "--registry", str(root), "--data", str(bundled_path("BTCUSDT")),
         "--out", str(out), "--min-improvement", "1", "--json"]
    )  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)  # stdout holds only the report
    assert printed == json.loads((out / REPORT_FILE).read_text())

    assert registry.versions("btc") == [1, 2]  # registered regardless...
    assert registry.stages("btc")["current"] == {"production": 1}  # ...but not promoted
    assert printed["decision"] == "keep" and printed["promoted"] is False
    assert "production unchanged" in printed["reason"]
    assert printed["champion"]["version"] == 1 and printed["champion"]["source"] == "production"
    assert printed["challenger"]["version"] == 2
    assert printed["production_before"] == printed["production_after"] == 1

    # the new run used the newest data through the override, with the registered model
    new_cfg = OmegaConf.load(registry.path("btc:2") / "config.yaml")
    assert new_cfg.data.source == "file" and new_cfg.data.end is None
    assert new_cfg.data.days == 30 and new_cfg.model.name == "lstm"
    assert new_cfg.split.n_folds == 2 and new_cfg.paths.output_dir == str(out.resolve())
    champ_end = pd.Timestamp(printed["champion"]["train_end"])
    assert pd.Timestamp(printed["challenger"]["train_end"]) > champ_end + pd.Timedelta(days=10)

    # the segment: the challenger's last validation fold, after the champion's training period
    seg = printed["segment"]
    assert seg["kind"] == "validation" and seg["fold"] == 1 and seg["dropped"] == 0
    assert 80 <= seg["n"] <= 96 and seg["horizons"] == [1]
    assert pd.Timestamp(seg["start"]) > champ_end and seg["end"] > seg["start"]
    assert printed["overlap"]["in_sample"] is False
    assert printed["overlap"]["n_in_champion_training"] == 0
    scores = printed["scores"]
    for side in ("champion", "challenger", "persistence"):
        assert 0.0 < scores[side]["mae"] < 0.05
        assert 0.0 <= scores[side]["directional_accuracy"] <= 1.0
    assert scores["champion"]["mae"] != scores["challenger"]["mae"]
    expected = (scores["champion"]["mae"] - scores["challenger"]["mae"]) / scores["champion"][
        "mae"
    ]
    assert printed["improvement"] == pytest.approx(expected)
    assert printed["dm"]["1"]["n"] == seg["n"]
    assert 0.0 <= printed["dm"]["1"]["p_value"] <= 1.0

    # the persistence MAE is the mean |y| of the segment's realised log returns
    raw = read_candle_file(bundled_path("BTCUSDT")).set_index("timestamp")["close"]
    stamps = pd.date_range(seg["start"], seg["end"], freq="1h")
    assert len(stamps) == seg["n"]  # no gap in this segment
    log_close = np.log(raw)
    y = log_close.shift(-2).loc[stamps] - log_close.shift(-1).loc[stamps]  # lag 1, horizon 1
    assert scores["persistence"]["mae"] == pytest.approx(float(np.abs(y).mean()), rel=1e-9)


@pytest.mark.slow
def test_dry_run_cli_prints_the_table_and_leaves_the_registry_alone(
    champion_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    registry = Registry(root)
    registry.register(champion_bundle, "btc")
    registry.promote("btc", 1, "production")
    out = tmp_path / "dry"
    capsys.readouterr()
    argv = ["retrain", "btc", "--registry", str(root), "--out", str(out), "--days", "25",
            "--dry-run", "split.val_bars=90"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    table = "\n".join(lines[:-1])
    assert "champion v1" in table and "challenger (dry run)" in table
    assert "mae" in table and "Diebold-Mariano h=1" in table and "would" in table
    summary = json.loads(lines[-1])
    assert summary["dry_run"] is True and summary["challenger"] is None
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["reason"].startswith("dry run, nothing registered")
    assert not report["promoted"] and 80 <= report["segment"]["n"] <= 90
    run_cfg = OmegaConf.load(out / ".hydra" / "config.yaml")
    assert run_cfg.data.days == 25 and run_cfg.split.val_bars == 90
    assert registry.versions("btc") == [1]
    assert registry.stages("btc")["current"] == {"production": 1}


def test_retrain_promotes_a_challenger_that_beats_a_bad_champion(
    champion_bundle: Path, tmp_path: Path
) -> None:
    root = tmp_path / "registry"
    registry = Registry(root)
    registry.register(sabotaged(champion_bundle, tmp_path / "bad"), "btc")  # v1, not promoted
    report = retrain("btc", root, out_dir=tmp_path / "retrain")

    assert report.champion["version"] == 1 and report.champion["source"] == "latest"
    assert "no production version" in report.notes[0]
    assert report.decision == "promote" and report.promoted
    assert report.challenger["version"] == 2
    assert registry.stages("btc")["current"] == {"production": 2}
    assert report.production_before is None and report.production_after == 2
    mae = {side: report.scores[side]["mae"] for side in ("champion", "challenger")}
    assert mae["champion"] > 50 * mae["challenger"]
    assert report.improvement > 0.9 and "> required 0.00%" in report.reason
    assert report.dm["1"]["statistic"] < 0  # negative favours the challenger
    assert report.dm["1"]["p_value"] < 1e-6
    saved = json.loads((tmp_path / "retrain" / REPORT_FILE).read_text())
    assert saved["segment"] == report.segment and saved["decision"] == "promote"

    # a used run folder is refused before anything is trained
    with pytest.raises(RetrainError, match="already exists"):
        retrain("btc", root, out_dir=tmp_path / "retrain")


def test_retrain_of_an_unknown_name_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    with pytest.raises(RegistryError, match="no model named 'nope'"):
        retrain("nope", root)
    capsys.readouterr()
    assert main(["retrain", "nope", "--registry", str(root)]) == 1
    err = capsys.readouterr().err
    assert "no model named 'nope'" in err and "Traceback" not in err


def test_retrain_refuses_overrides_that_break_the_comparison(
    champion_bundle: Path, tmp_path: Path
) -> None:
    root = tmp_path / "registry"
    Registry(root).register(champion_bundle, "btc")
    with pytest.raises(RetrainError, match="no key data.dayz"):
        retrain("btc", root, overrides=["data.dayz=10"], out_dir=tmp_path / "a")
    with pytest.raises(RetrainError, match="horizons would be \\[4\\]"):
        retrain("btc", root, overrides=["target.horizon=4"], out_dir=tmp_path / "b")
    with pytest.raises(RetrainError, match="config group"):
        retrain("btc", root, overrides=["model=tcn"], out_dir=tmp_path / "c")
    assert Registry(root).versions("btc") == [1]
    assert not (tmp_path / "a").exists()  # refused before anything was trained


def test_batch_forecasts_match_the_predictor_bar_by_bar(champion_bundle: Path) -> None:
    predictor = Predictor.from_bundle(champion_bundle)
    raw = read_candle_file(bundled_path("BTCUSDT"))
    raw = raw[raw["timestamp"] < pd.Timestamp("2026-03-10", tz="UTC")].tail(400)
    first = raw["timestamp"].iloc[0]
    stamps = pd.DatetimeIndex(
        [first + pd.Timedelta(hours=10), *raw["timestamp"].iloc[-60::7], raw["timestamp"].iloc[-1]]
    )
    y, valid = batch_forecasts(predictor, raw, stamps)
    assert y.shape == (len(stamps), 1)
    assert not valid[0] and np.isnan(y[0]).all()  # 11 bars of history < min_history
    assert valid[1:].all()
    for t, value in zip(stamps[1:], y[1:, 0], strict=True):
        single = predictor.predict(raw[raw["timestamp"] <= t])
        assert single["timestamp"] == t.isoformat()
        assert value == pytest.approx(single["forecasts"][0]["y_pred"], rel=1e-5, abs=1e-9)
    with pytest.raises(PredictionError, match="have no candle"):
        batch_forecasts(predictor, raw, pd.DatetimeIndex([pd.Timestamp("2030-01-01", tz="UTC")]))
