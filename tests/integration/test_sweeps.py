"""Multiruns, Optuna searches and launchers through the real ``train.py`` (Hydra) app.

The slow tests run ``python train.py -m ...`` in a subprocess on tiny settings (30 days of
bundled candles, log-return features, ``fast_dev_run``); the fast ones compose configs and check
the multirun summary on hand-made job folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cryptoforecast.models.variants import resolve_variant
from cryptoforecast.paths import CONF_DIR, PROJECT_ROOT
from cryptoforecast.utils.hydra_callbacks import (
    FAILED_FILE,
    SUMMARY_FILE,
    job_subdir,
    summarise_sweep,
    swept_keys,
)

TINY = ("data.days=30", "features=minimal", "logger=none", "trainer.fast_dev_run=true")
SEARCHES = sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml"))


def _compose(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=["paths.output_dir=/tmp/unused", *overrides],
            return_hydra_config=True,
        )


def one_thread_env() -> dict[str, str]:
    """The test env for child processes, torch on one thread (2-core CI boxes run them)."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _train(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=one_thread_env(),
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


def _job_dir(sweep: Path, num: int) -> Path:
    """The folder of job ``num``: ``<num>_<swept overrides>`` (or ``<num>`` without any)."""
    found = [p for p in sweep.iterdir() if p.is_dir() and p.name.split("_", 1)[0] == str(num)]
    assert len(found) == 1, sorted(p.name for p in sweep.iterdir())
    return found[0]


def _summary(sweep: Path) -> dict:
    return json.loads((sweep / SUMMARY_FILE).read_text())


# ---------------------------------------------------------------- configs (fast)


def test_every_model_search_is_registered() -> None:
    assert SEARCHES == ["attention_lstm_optuna", "lightgbm_optuna", "tcn_optuna"]


@pytest.mark.parametrize("search", SEARCHES)
def test_optuna_search_composes_and_names_real_keys(search: str) -> None:
    cfg = _compose(f"hparams_search={search}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert cfg.optimized_metric == "val/loss_best"  # a validation metric, never test (R7)
    assert sweeper.direction == "minimize" and sweeper.study_name == search
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert isinstance(sweeper.sampler.seed, int)
    storage = OmegaConf.to_container(cfg.hydra, resolve=False)["sweeper"]["storage"]
    assert storage == "sqlite:///${hydra.sweep.dir}/optuna.db"
    assert cfg.model.name == search.removesuffix("_optuna")
    # every searched key exists in the composed config (a misspelt key would be silently
    # added by Hydra), except explicit "++" additions
    for key, space in sweeper.params.items():
        if not key.startswith("+"):
            assert OmegaConf.select(cfg, key) is not None, key
        if key == "model.variant":
            for variant in space.split("(", 1)[1].rstrip(")").split(","):
                resolve_variant(cfg.model.name, variant.strip())  # raises if unknown


@pytest.mark.filterwarnings("ignore:.*Distribution has been deprecated:FutureWarning")
@pytest.mark.parametrize("search", SEARCHES)
def test_optuna_search_samples_the_config_types(search: str) -> None:
    """An int key must get int samples (LightGBM refuses min_data_in_leaf=51.07)."""
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    cfg = _compose(f"hparams_search={search}")
    params = cfg.hydra.sweeper.params
    spaces, fixed = create_params_from_overrides([f"{k}={v}" for k, v in params.items()])
    assert set(spaces) == set(params) and not fixed
    for key, space in spaces.items():
        current = OmegaConf.select(cfg, key.lstrip("+"))
        if isinstance(space, optuna.distributions.CategoricalDistribution):
            kinds = {type(c) for c in space.choices}
            assert len(kinds) == 1 and (current is None or kinds == {type(current)}), key
        elif isinstance(current, int):
            assert isinstance(space, optuna.distributions.IntDistribution), key
        else:
            assert isinstance(current, float), key
            assert isinstance(space, optuna.distributions.FloatDistribution), key


def test_launcher_configs_compose() -> None:
    # conf/hydra/launcher/submitit_slurm.yaml shares its name with the plugin's schema: Hydra
    # validates it against that schema and warns that the matching is deprecated
    with pytest.warns(UserWarning, match="validated against ConfigStore schema"):
        slurm = _compose("hydra/launcher=submitit_slurm").hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher")
    for key in ("partition", "timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb"):
        assert key in slurm
    assert _compose("hydra/launcher=submitit_local").hydra.launcher._target_.endswith(
        "LocalLauncher"
    )
    joblib = _compose("hydra/launcher=joblib", "hydra.launcher.n_jobs=2").hydra.launcher
    assert joblib._target_.endswith("JoblibLauncher") and joblib.n_jobs == 2


def test_ddp_trainer_config(make_cfg: Callable[..., DictConfig]) -> None:
    """No GPU here: check the composition, then that every key is a real Trainer argument."""
    trainer = make_cfg("trainer=ddp").trainer
    assert trainer.strategy == "ddp" and trainer.devices == "auto"
    assert trainer.accelerator == "gpu" and trainer.sync_batchnorm is False
    cpu = make_cfg(
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true"
    ).trainer
    built = instantiate(cpu, logger=False, enable_progress_bar=False)
    assert type(built.strategy).__name__ == "DDPStrategy"


def _job(sweep: Path, name: str, num: int, *, metric: float | None, error: str | None) -> None:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {num}\n")
    (job / ".hydra" / "overrides.yaml").write_text(f"- seed={num}\n")
    (job / ".hydra" / "config.yaml").write_text("model:\n  name: tcn\n")
    if metric is not None:
        (job / "metrics.json").write_text(json.dumps({"val/loss_best": metric}))
    if error is not None:
        (job / FAILED_FILE).write_text(json.dumps({"error_type": "ValueError", "error": error}))


def test_summary_of_hand_made_job_folders(tmp_path: Path) -> None:
    _job(tmp_path, "0", 0, metric=0.9, error=None)
    _job(tmp_path, "1", 1, metric=None, error="boom")
    _job(tmp_path, "2", 2, metric=0.7, error=None)
    _job(tmp_path, "10", 10, metric=None, error=None)  # killed: no result, no error
    summary = summarise_sweep(tmp_path, "val/loss_best")
    assert [j["num"] for j in summary["jobs"]] == [0, 1, 2, 10]
    assert (summary["n_ok"], summary["n_failed"], summary["n_incomplete"]) == (2, 1, 1)
    assert summary["failed"] == [
        {"num": 1, "dir": "1", "overrides": ["seed=1"], "error": "ValueError: boom"}
    ]
    assert summary["best"]["num"] == 2
    assert summarise_sweep(tmp_path, "val/loss_best", "maximize")["best"]["num"] == 0


@pytest.mark.parametrize(
    ("num", "dirname", "expected"),
    [
        (0, "model=tcn", "0_model=tcn"),
        (3, "", "3"),
        (1, "model=lstm,model.variant=deep", "1_model=lstm,model.variant=deep"),
        (
            2,
            "data.path=/data/c c.csv,target.horizon=[1,4]",
            "2_data.path=_data_c_c.csv,target.horizon=1,4",
        ),
        (4, "+x='a/b'", "4_+x=a_b"),
        (5, "../..", "5"),
    ],
)
def test_job_subdir_is_one_safe_folder_name(num: int, dirname: str, expected: str) -> None:
    assert job_subdir(num, dirname) == expected


def test_job_subdir_is_cut() -> None:
    name = job_subdir(7, "model.module.optimizer.lr=" + "1" * 300)
    assert name.startswith("7_model.module.optimizer.lr=11") and len(name) == 102


def test_swept_keys() -> None:
    swept, fixed = swept_keys(
        ["model=lstm,tcn", "data.days=30", "+x=range(1,3)", "target.horizon=[1,4]", "seed=1,2"]
    )
    assert swept == ["model", "x", "seed"] and fixed == ["data.days", "target.horizon"]


@pytest.mark.slow
def test_sweep_job_folders_are_named_and_compared(tmp_path: Path) -> None:
    """``-m`` over two persistence methods: folders name the swept value only, and the sweep
    ends with the ``compare`` table, printed and written into the sweep folder."""
    sweep = tmp_path / "sweep"
    res = _train(
        "-m",
        "model=naive",
        "model.module.method=zero,last",
        "data.days=30",
        "features=minimal",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    )
    jobs = sorted(p.name for p in sweep.iterdir() if (p / "metrics.json").exists())
    assert jobs == ["0_model.module.method=zero", "1_model.module.method=last"]
    table = (sweep / "comparison.md").read_text()
    assert "| 0_model.module.method=zero | naive |" in table
    assert "| 1_model.module.method=last | naive |" in table
    assert (sweep / "comparison.csv").exists()
    out = res.stdout
    assert "2 job(s) of sweep by test/rmse" in out and "1_model.module.method=last" in out
    assert "model.module.method" in out  # the differing config key is a column


# ---------------------------------------------------------------- real sweeps (slow)


@pytest.mark.slow
def test_model_multirun_keeps_going_past_failed_jobs(tmp_path: Path) -> None:
    """The canonical ``-m model=attention_lstm,tcn,lightgbm``; a bad variant in half the jobs."""
    sweep = tmp_path / "sweep"
    res = _train(
        "-m",
        "model=attention_lstm,tcn,lightgbm",
        "model.variant=lightweight,huge",
        *TINY,
        f"hydra.sweep.dir={sweep}",
    )
    ok = {0: "attention_lstm", 2: "tcn", 4: "lightgbm"}
    names = {p.name for p in sweep.iterdir() if (p / ".hydra").is_dir()}
    pairs = [
        (m, v) for m in ("attention_lstm", "tcn", "lightgbm") for v in ("lightweight", "huge")
    ]
    # Hydra sorts the overrides in the name (model.variant before model: "." < "=")
    assert names == {f"{n}_model.variant={v},model={m}" for n, (m, v) in enumerate(pairs)}
    for num, model in ok.items():
        metrics = json.loads((_job_dir(sweep, num) / "metrics.json").read_text())
        assert "test/rmse" in metrics and "val/loss_best" in metrics
        saved = OmegaConf.load(_job_dir(sweep, num) / ".hydra" / "config.yaml")
        assert saved.model.name == model and not (_job_dir(sweep, num) / FAILED_FILE).exists()
    for num in (1, 3, 5):  # model.variant=huge: every model refuses it
        failed = json.loads((_job_dir(sweep, num) / FAILED_FILE).read_text())
        assert failed["error_type"] == "ValueError" and "huge" in failed["error"]
        assert "model.variant=huge" in failed["overrides"] and "Traceback" in failed["traceback"]
        assert not (_job_dir(sweep, num) / "metrics.json").exists()
    summary = _summary(sweep)
    assert (summary["n_jobs"], summary["n_ok"], summary["n_failed"]) == (6, 3, 3)
    assert [f["num"] for f in summary["failed"]] == [1, 3, 5]
    assert summary["best"] is None  # losses of different models are not comparable
    log = res.stdout + res.stderr
    assert "6 job(s), 3 ok, 3 failed" in log
    for num in (1, 3, 5):
        assert f"FAILED job {num} (" in log


@pytest.mark.slow
def test_a_failing_single_run_still_fails(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "train.py", *TINY, "model.variant=huge", f"hydra.run.dir={tmp_path}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=one_thread_env(),
    )
    assert res.returncode == 1 and "unknown variant 'huge'" in res.stderr
    # a single run that did not finish is marked too (its error is not a sweep's failed trial)
    assert "unknown variant 'huge'" in json.loads((tmp_path / FAILED_FILE).read_text())["error"]


def _trials(db: Path, study: str) -> list:
    import optuna

    return optuna.load_study(study_name=study, storage=f"sqlite:///{db}").trials


@pytest.mark.filterwarnings("ignore:.*Distribution has been deprecated:FutureWarning")
@pytest.mark.slow
def test_optuna_search_stores_trials_and_resumes(tmp_path: Path) -> None:
    sweep = tmp_path / "search"
    args = (
        "-m",
        "hparams_search=attention_lstm_optuna",
        "hydra.sweeper.n_trials=2",
        *TINY,
        f"hydra.sweep.dir={sweep}",
    )
    _train(*args)
    first = _trials(sweep / "optuna.db", "attention_lstm_optuna")
    assert [t.state.name for t in first] == ["COMPLETE", "COMPLETE"]
    assert (sweep / "optimization_results.yaml").exists()
    res = _train(*args)  # same sweep folder: the study resumes
    trials = _trials(sweep / "optuna.db", "attention_lstm_optuna")
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert "resuming Optuna study 'attention_lstm_optuna' (2 trials" in res.stdout + res.stderr
    # a resumed call must not replay the first call's random start-up trials
    assert {t.params["model.module.optimizer.lr"] for t in trials[2:]}.isdisjoint(
        {t.params["model.module.optimizer.lr"] for t in trials[:2]}
    )
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(jobs) == 4  # the second call did not overwrite the first call's job folders
    values = {t.value for t in trials}
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["val/loss_best"] in values
    summary = _summary(sweep)
    assert summary["n_ok"] == 4 and summary["best"]["val/loss_best"] == min(values)


@pytest.mark.slow
def test_a_search_whose_trials_all_fail_still_leaves_a_summary(tmp_path: Path) -> None:
    """The Optuna sweeper itself raises when no trial completed (no best trial): exit code 1.

    The jobs' FAILED.json files and the summary (rewritten after every job) are still there.
    """
    sweep = tmp_path / "broken"
    res = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "hparams_search=lightgbm_optuna",
            "hydra.sweeper.n_trials=1",
            "+model.module.no_such_key=1",
            *TINY,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=one_thread_env(),
    )
    assert res.returncode == 1 and "Record does not exist" in res.stderr
    summary = _summary(sweep)
    assert summary["n_failed"] == 1 and "no_such_key" in summary["failed"][0]["error"]


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path: Path) -> None:
    """Two jobs in joblib worker processes, one failing; fail_on_error makes the exit code 1."""
    sweep = tmp_path / "joblib"
    res = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "hydra.callbacks.multirun_summary.fail_on_error=true",
            "model.variant=lightweight,huge",
            *TINY,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=one_thread_env(),
    )
    log = res.stdout + res.stderr
    assert res.returncode == 1 and "1 job(s) of the multirun failed: 1" in log
    assert "Joblib.Parallel(n_jobs=2" in log
    assert (_job_dir(sweep, 0) / "metrics.json").exists()
    assert "huge" in json.loads((_job_dir(sweep, 1) / FAILED_FILE).read_text())["error"]
    summary = _summary(sweep)  # written before the error
    assert (summary["n_ok"], summary["n_failed"]) == (1, 1)


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path: Path) -> None:
    """The SLURM launcher's code path, with jobs as local processes (no SLURM here)."""
    sweep = tmp_path / "submitit"
    _train(
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "model=attention_lstm,lightgbm",
        *TINY,
        f"hydra.sweep.dir={sweep}",
    )
    for num in (0, 1):
        assert (_job_dir(sweep, num) / "metrics.json").exists()
    task_logs = list((sweep / ".submitit").rglob("*_log.out"))
    assert len(task_logs) == 2  # each job ran as its own submitit task
    assert _summary(sweep)["n_ok"] == 2
