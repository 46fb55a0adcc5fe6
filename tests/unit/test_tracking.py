"""W&B mode selection, offline run files, run naming, figures and attention maps (no network)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cryptoforecast.data.datamodule import ForecastDataModule
from cryptoforecast.models.nets.attention_lstm import AttentionLSTM
from cryptoforecast.paths import CONF_DIR
from cryptoforecast.tracking import report
from cryptoforecast.tracking.plots import (
    plot_attention_by_lag,
    plot_attention_heads,
    plot_pred_vs_actual,
)
from cryptoforecast.tracking.wandb_setup import (
    has_wandb_credentials,
    make_wandb_logger,
    read_offline_run,
    resolve_mode,
)

PNG = b"\x89PNG\r\n\x1a\n"
KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 characters, the shape of a W&B key


@pytest.fixture
def no_login(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No API key, token file or netrc entry: W&B has no credentials. Returns the netrc path."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_DISABLED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))  # not the user's ~/.netrc
    return netrc


def test_mode_is_offline_without_credentials(no_login: Path) -> None:
    assert not has_wandb_credentials()
    assert resolve_mode() == "offline"


def test_mode_is_online_with_an_api_key(no_login: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert has_wandb_credentials() and resolve_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")  # WANDB_MODE wins over the key
    assert resolve_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode() == "disabled"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert resolve_mode() == "online"


def test_mode_reads_the_netrc_login_for_the_configured_host(
    no_login: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_login.write_text(f"machine api.wandb.ai\n  login user\n  password {KEY}\n")
    no_login.chmod(0o600)
    assert resolve_mode() == "online"  # what `wandb login` writes
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert resolve_mode() == "offline"  # a self-hosted server without a login


def test_explicit_mode_wins_and_is_checked(no_login: Path) -> None:
    assert resolve_mode("online") == "online" and resolve_mode("dryrun") == "offline"
    with pytest.raises(ValueError, match="choose one of online, offline, disabled"):
        resolve_mode("upload")


def test_logger_factory_starts_no_run_and_leaves_the_env_alone(
    no_login: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    logger = make_wandb_logger(group="g", tags=["a"], name="n", save_dir="/tmp/x")
    assert logger._wandb_init["mode"] == "offline" and wandb.run is None
    assert logger._wandb_init["group"] == "g" and logger._wandb_init["tags"] == ["a"]
    assert "WANDB_MODE" not in os.environ  # Lightning's offline=True would set it for good
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert make_wandb_logger()._wandb_init["mode"] == "online"  # never started: no network


def test_logger_bounds_the_wait_for_the_server(no_login: Path) -> None:
    assert make_wandb_logger()._wandb_init["settings"].init_timeout == 10.0
    assert make_wandb_logger(init_timeout=25)._wandb_init["settings"].init_timeout == 25.0
    assert "settings" not in make_wandb_logger(init_timeout=None)._wandb_init  # W&B's own 90 s
    for bad in (0, -5, "soon", True):
        with pytest.raises(ValueError, match=r"logger\.wandb\.init_timeout=.*give seconds"):
            make_wandb_logger(init_timeout=bad)  # type: ignore[arg-type]


def test_a_server_that_timed_out_is_not_waited_for_again(
    no_login: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptoforecast.tracking import wandb_setup

    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(wandb_setup, "_unreachable", {"http://127.0.0.1:9"})
    assert resolve_mode() == "offline"
    assert make_wandb_logger()._wandb_init["mode"] == "offline"
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:10")  # another server: still tried
    assert resolve_mode() == "online"


def test_offline_run_file_round_trip(tmp_path: Path) -> None:
    """Summary, config, history, media and exit code read back from the .wandb log."""
    import wandb

    run = wandb.init(project="p", group="g", name="n", dir=str(tmp_path), tags=["t"])
    big = "x" * 100_000  # spans several 32 KiB blocks (FIRST/MIDDLE/LAST records)
    run.config.update({"model.module.net.dropout": 0.1, "big": big})
    run.log({"train/loss": 1.0})
    run.log({"train/loss": 0.5})
    run.summary.update({"test/rmse": 2.5})
    sync_dir = Path(run.settings.sync_dir)
    run.finish()
    saved = read_offline_run(sync_dir, wait_s=10)
    assert saved["run"]["name"] == "n" and saved["run"]["group"] == "g"
    assert saved["run"]["tags"] == ["t"] and saved["exit_code"] == 0
    assert saved["config"]["model.module.net.dropout"] == 0.1 and saved["config"]["big"] == big
    assert [h["train/loss"] for h in saved["history"]] == [1.0, 0.5]
    assert saved["summary"]["test/rmse"] == 2.5 and saved["summary"]["train/loss"] == 0.5


def _cfg(*overrides: str) -> OmegaConf:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=["paths.output_dir=/tmp/out", *overrides])


def test_run_names_tags_and_flat_config() -> None:
    cfg = _cfg("logger=wandb", "tags=[study1]", "data.days=90")
    assert report.run_name(cfg) == "attention_lstm-default-BTCUSDT-1h-90d-holdout"
    assert report.run_name(cfg, fold=2).endswith("-holdout-fold2")
    assert report.run_name(cfg, aggregate=True).endswith("-aggregate")
    wf = _cfg("logger=wandb", "split=walk_forward", "model=lightgbm", "model.variant=deep")
    assert report.run_name(wf, fold=0) == "lightgbm-deep-BTCUSDT-1h-365d-walk_forward-fold0"
    assert report.run_tags(cfg) == [
        "study1",
        "attention_lstm",
        "variant:default",
        "BTCUSDT",
        "1h",
        "90d",
        "holdout",
    ]
    named = _cfg("logger=wandb", "logger.wandb.name=mine")
    assert report.run_name(named, fold=1) == "mine-fold1"
    flat = report.flatten_config(cfg)
    assert flat["model.module.net.dropout"] == 0.1 and flat["data.days"] == 90
    assert flat["logger.wandb.group"] == "train" and flat["tags"] == ["study1"]
    assert flat["model.module.net.n_features"] == "???"  # filled at runtime, not an error
    assert not any(isinstance(v, dict) for v in flat.values())
    assert report.wandb_node(_cfg("logger=csv")) is None
    assert report.wandb_node(_cfg("logger=none")) is None


def test_flatten_keeps_unresolvable_interpolations() -> None:
    cfg = OmegaConf.create({"a": {"b": 1, "c": "${hydra:runtime.output_dir}"}, "d": [1, 2]})
    flat = report.flatten_config(cfg)
    assert flat == {"a.b": 1, "a.c": "${hydra:runtime.output_dir}", "d": [1, 2]}


def test_consecutive_runs_are_separate(tmp_path: Path) -> None:
    """start_run finishes a run left open; finish_run leaves no run behind."""
    import wandb

    cfg = _cfg("logger=wandb", f"paths.output_dir={tmp_path}")
    first = report.start_run(cfg)
    assert first is not None and wandb.run is first
    second = report.start_run(cfg, fold=0)  # the first was left open: it gets finished
    assert second is not None and second.id != first.id
    report.finish_run(second, failed=True)
    assert wandb.run is None
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    saved = {r["run"]["name"]: r for r in (read_offline_run(d, wait_s=10) for d in runs)}
    assert len(saved) == 2
    fold = saved["attention_lstm-default-BTCUSDT-1h-365d-holdout-fold0"]
    assert fold["exit_code"] == 1 and fold["config"]["fold"] == 0
    assert fold["run"]["job_type"] == "fold" and fold["run"]["group"] == "train"
    assert report.start_run(_cfg("logger=csv")) is None


def test_table_sample_caps_rows_and_stringifies_times() -> None:
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=1200, freq="h", tz="UTC"),
            "symbol": "BTCUSDT",
            "y_pred": np.arange(1200.0),
        }
    )
    out = report.table_sample(frame, rows=500)
    assert len(out) == 500 and out["y_pred"].iloc[0] == 0 and out["y_pred"].iloc[-1] == 1199
    assert isinstance(out["timestamp"].iloc[0], str) and out["symbol"].dtype == object
    assert len(report.table_sample(frame.head(10))) == 10


def test_figures_are_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "timestamp": np.tile(pd.date_range("2024-01-01", periods=50, freq="h"), 2),
            "horizon": np.repeat([1, 4], 50),
            "y_true": rng.normal(size=100),
            "y_pred": rng.normal(size=100),
        }
    )
    attn = torch.softmax(torch.randn(3, 8, 8), dim=-1).numpy()
    paths = [
        plot_pred_vs_actual(frame, tmp_path / "a" / "pva.png", "t"),
        plot_pred_vs_actual(frame.assign(p_up=0.5), tmp_path / "cls.png", "t"),
        plot_attention_heads(attn, tmp_path / "heads.png", "t"),
        plot_attention_by_lag(attn[:, -1, :], tmp_path / "lag.png", "t"),
    ]
    assert all(p.read_bytes()[:8] == PNG for p in paths)
    with pytest.raises(ValueError, match=r"\[heads, L, L\]"):
        plot_attention_heads(attn[0], tmp_path / "bad.png", "t")


def _fitted_attention_forecaster(n: int = 40, lookback: int = 8) -> tuple[object, object]:
    torch.manual_seed(0)
    net = AttentionLSTM(n_features=3, horizon=1, hidden_size=8, num_layers=1, num_heads=2)
    samples = SimpleNamespace(
        windows=SimpleNamespace(ends=np.arange(lookback - 1, n), lookback=lookback)
    )
    dm = SimpleNamespace(x=torch.randn(n, 3), y=torch.zeros(n, 1), batch_size=16, samples=samples)
    dm.windows_loader = lambda positions: ForecastDataModule.windows_loader(dm, positions)
    forecaster = SimpleNamespace(module=SimpleNamespace(net=net), dm=dm)
    return forecaster, samples


def test_attention_maps_of_an_attention_net() -> None:
    forecaster, samples = _fitted_attention_forecaster()
    positions = np.arange(20)
    full = report.attention_maps(forecaster, samples, positions)
    assert full is not None and full.shape == (20, 2, 8, 8)
    np.testing.assert_allclose(full.sum(axis=-1), 1.0, atol=1e-5)  # rows are distributions
    assert np.all(np.triu(full, k=1) == 0)  # causal: no weight on later steps
    last = report.attention_maps(forecaster, samples, positions, last_step_only=True)
    assert last is not None and last.shape == (20, 2, 8)
    np.testing.assert_allclose(last, full[:, :, -1, :], atol=1e-6)
    # the window ending at row t is rows [t-L+1, t] of the scaled features, as in predict()
    t = int(samples.windows.ends[5])
    assert forecaster.module.net.training  # attention_maps evaluates in eval mode, then restores
    forecaster.module.net.eval()
    _, attn = forecaster.module.net(forecaster.dm.x[t - 7 : t + 1][None], return_attention=True)
    np.testing.assert_allclose(full[5], attn[0].detach().numpy(), atol=1e-6)


def test_attention_maps_is_none_for_other_models() -> None:
    forecaster, samples = _fitted_attention_forecaster()
    lstm = SimpleNamespace(module=SimpleNamespace(net=torch.nn.LSTM(3, 4)), dm=forecaster.dm)
    assert report.attention_maps(lstm, samples, np.arange(3)) is None
    assert report.attention_maps(SimpleNamespace(), samples, np.arange(3)) is None


def test_disabled_mode_writes_nothing(tmp_path: Path) -> None:
    import wandb

    cfg = _cfg("logger=wandb", f"paths.output_dir={tmp_path}", "logger.wandb.mode=disabled")
    run = report.start_run(cfg)
    assert run is not None
    report.log_results(run, {"test/rmse": 1.0}, {}, None)
    report.finish_run(run)
    assert wandb.run is None and not (tmp_path / "wandb").exists()
