"""The W&B logger behind ``conf/logger/wandb.yaml``: online when logged in, else offline.

Mode selection never prompts and never touches the network: credentials are looked up locally
(``WANDB_API_KEY``, an identity-token file, this process's ``wandb.login`` session, or the netrc
entry for ``WANDB_BASE_URL``), the same places ``wandb.api.api_key`` reads, without calling it
(deprecated in wandb 0.31).

An online run whose server cannot be reached never costs the training run: ``wandb.init`` waits
at most ``init_timeout`` seconds (W&B's own default is 90), then the run starts offline with a
warning naming the ``wandb sync`` command, and later runs of the process go straight offline.
"""

from __future__ import annotations

import functools
import logging
import netrc
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
DEFAULT_BASE_URL = "https://api.wandb.ai"
INIT_TIMEOUT_S = 10.0  # wandb.init's own wait; wandb-core adds ~10 s of start-up and retries

# W&B servers this process could not reach: later runs go offline at once instead of waiting.
_unreachable: set[str] = set()


def base_url() -> str:
    """The W&B server runs talk to (``WANDB_BASE_URL``, else W&B's cloud)."""
    return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


def has_wandb_credentials() -> bool:
    """Whether W&B could authenticate without asking: API key, token file, session or netrc."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = base_url()
    try:
        from wandb.sdk.lib import wbauth
    except ImportError:  # older/newer wandb layout: read the netrc file ourselves
        return _netrc_has(host)
    try:
        if wbauth.session_credentials(host=host) is not None:
            return True
        return wbauth.read_netrc_auth(host=host) is not None
    except Exception as err:  # a malformed key or netrc: treat as not logged in
        log.warning("ignoring W&B credentials that cannot be read: %s", err)
        return False


def _netrc_has(host: str) -> bool:
    path = os.environ.get("NETRC") or str(Path("~/.netrc").expanduser())
    try:
        creds = netrc.netrc(path).authenticators(urlsplit(host).netloc)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(creds and creds[2])


def resolve_mode(mode: str | None = None) -> str:
    """The W&B mode to use: ``mode`` if given, else from ``WANDB_MODE`` and the credentials.

    ``online`` only when credentials exist (:func:`has_wandb_credentials`), ``WANDB_MODE``
    (or ``WANDB_DISABLED``) does not ask for offline/disabled and the server did not already time
    out in this process; otherwise ``offline``, so a run never waits for a login prompt or the
    network.

    Raises:
        ValueError: ``mode`` is not one of ``online``, ``offline``, ``disabled``.
    """
    if mode is not None:
        mode = "offline" if mode == "dryrun" else mode
        if mode not in MODES:
            raise ValueError(f"logger.wandb.mode={mode!r}; choose one of {', '.join(MODES)}")
        return mode
    env = (os.environ.get("WANDB_MODE") or "").strip().lower()
    if env == "disabled" or os.environ.get("WANDB_DISABLED", "").lower() in ("true", "1"):
        return "disabled"
    if env in ("offline", "dryrun"):
        return "offline"
    if not has_wandb_credentials():
        return "offline"
    if base_url() in _unreachable:
        log.info(
            "W&B server %s was unreachable earlier in this process: logging offline", base_url()
        )
        return "offline"
    return "online"


def make_wandb_logger(
    project: str = "cryptoforecast",
    group: str | None = None,
    tags: list[str] | None = None,
    name: str | None = None,
    save_dir: str = ".",
    mode: str | None = None,
    log_model: bool = False,
    job_type: str | None = None,
    init_timeout: float | None = INIT_TIMEOUT_S,
) -> WandbLogger:
    """A Lightning ``WandbLogger``; the run starts lazily, on first use of ``.experiment``.

    An online start that fails (server unreachable or slow past ``init_timeout``, credentials
    refused) falls back to an offline run with a warning naming its ``wandb sync`` command.

    Args:
        project: W&B project.
        group: run group (``${task_name}``; walk-forward folds and their aggregate share it).
        tags: run tags.
        name: run display name (the pipeline fills it from the config when null).
        save_dir: the run files go to ``<save_dir>/wandb/<online|offline>-run-*``.
        mode: ``online``, ``offline``, ``disabled``, or None for :func:`resolve_mode`.
        log_model: upload checkpoints as artifacts (Lightning's ``log_model``).
        job_type: W&B job type (``train``, ``fold``, ``aggregate``).
        init_timeout: seconds ``wandb.init`` may wait for the server before the run goes
            offline; None keeps W&B's own (``WANDB_INIT_TIMEOUT``, else 90 s).

    Returns:
        The logger (no W&B run yet).

    Raises:
        ValueError: ``mode`` is unknown or ``init_timeout`` is not a positive number.
    """
    import wandb

    resolved = resolve_mode(mode)
    extra: dict[str, Any] = {}
    if init_timeout is not None:
        if isinstance(init_timeout, bool) or not isinstance(init_timeout, (int, float)):
            raise ValueError(f"logger.wandb.init_timeout={init_timeout!r}; give seconds (> 0)")
        if not init_timeout > 0:
            raise ValueError(f"logger.wandb.init_timeout={init_timeout!r}; give seconds (> 0)")
        extra["settings"] = wandb.Settings(init_timeout=float(init_timeout))
    # The mode goes to wandb.init; Lightning's own offline=True would set WANDB_MODE for the
    # whole process and so decide the mode of every later run too.
    logger = _fallback_logger_class()(
        name=name,
        save_dir=save_dir,
        project=project,
        log_model=log_model,
        group=group,
        tags=list(tags or []),
        job_type=job_type,
        mode=resolved,
        **extra,
    )
    # Lightning always passes anonymous=None, which wandb 0.31 warns about on every run.
    logger._wandb_init.pop("anonymous", None)
    return logger


@functools.cache
def _fallback_logger_class() -> type[WandbLogger]:
    """``WandbLogger`` whose failed online start becomes an offline run.

    Defined on first use, so importing this module does not import Lightning.
    """
    from lightning.pytorch.loggers import WandbLogger

    class FallbackWandbLogger(WandbLogger):  # type: ignore[misc]
        @property
        def experiment(self) -> Any:
            """The W&B run; an online start that fails is retried offline (warning logged)."""
            if self._experiment is not None or self._wandb_init.get("mode") != "online":
                return super().experiment
            import wandb

            start = time.monotonic()
            try:
                return super().experiment
            except (wandb.Error, TimeoutError, ConnectionError) as err:
                waited = time.monotonic() - start
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            _unreachable.add(base_url())
            self._experiment = None
            self._wandb_init["mode"] = "offline"
            run = super().experiment
            log.warning(
                "W&B: could not start the online run at %s after %.0f s (%s); logging offline to "
                "%s (later runs of this process too); upload later with: wandb sync %s",
                base_url(),
                waited,
                reason,
                run.settings.sync_dir,
                run.settings.sync_dir,
            )
            return run

    return FallbackWandbLogger


def active_run_logger(save_dir: str, model_name: str | None = None) -> WandbLogger | None:
    """A ``WandbLogger`` writing into the W&B run already open in this process, or None.

    The pipeline opens one run per job (per fold under walk-forward) before training; the
    Trainer's logger must write into that run rather than start another.

    Args:
        save_dir: the fold's output folder (what ``Trainer.log_dir`` reports).
        model_name: the model being trained; when it is not the run's model (a base model of
            an ensemble) its metrics are prefixed with it (``tcn-train/loss``).
    """
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    run = wandb.run
    if run is None:
        return None
    run_model = run.config.get("model.name")
    prefix = model_name if model_name and run_model not in (None, model_name) else ""
    return WandbLogger(save_dir=save_dir, experiment=run, prefix=prefix or "")


def is_wandb_logger(node: Any) -> bool:
    """Whether a logger config node builds a W&B logger (this factory or Lightning's)."""
    target = str(node.get("_target_", "")) if hasattr(node, "get") else ""
    return target.endswith((".make_wandb_logger", ".WandbLogger"))


_WANDB_HEADER = b":W&B"
_BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log of protobuf records in 32 KiB blocks
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if data[:4] != _WANDB_HEADER:
        raise ValueError(f"{path} is not a W&B transaction log")
    pos, parts, out = 7, b"", []  # 7 = ':W&B' + 2-byte magic + 1-byte version
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a record header is zero padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        if pos + 7 + length > len(data):  # a record still being written
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            parts = chunk
        elif kind == _MIDDLE:
            parts += chunk
        elif kind == _LAST:
            out.append(parts + chunk)
        else:  # zeros: the rest of a block that was never written
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0
    return out


def _set(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        child = tree.get(key)
        tree[key] = child = child if isinstance(child, dict) else {}
        tree = child
    tree[keys[-1]] = value


def read_offline_run(sync_dir: str | Path, wait_s: float = 0.0) -> dict[str, Any]:
    """What an offline run holds before ``wandb sync``, read from its ``run-<id>.wandb`` file.

    wandb 0.31 offline runs keep config, summary and history only in that transaction log
    (no ``wandb-summary.json``); media files land under ``files/media``. ``wandb sync`` replays
    the same records, so this is what the W&B UI shows after syncing.

    ``run.finish()`` can return a moment before wandb-core has flushed the file (seen in 0.31:
    only the 7-byte header for a few milliseconds); ``wait_s`` re-reads until the run's exit
    record is there or that many seconds have passed.

    Args:
        sync_dir: the ``offline-run-<time>-<id>`` folder (``run.settings.sync_dir``).
        wait_s: how long to wait for a finished run's file to be complete.

    Returns:
        ``{"run": {id, name, group, job_type, tags, project}, "config": {...}, "summary": {...},
        "history": [rows], "files": [media paths relative to files/], "exit_code": int | None}``
        (None: the run was never finished); values JSON-decoded.
    """
    import time

    deadline = time.monotonic() + wait_s
    while True:
        out = _read_offline_run(Path(sync_dir))
        if out["exit_code"] is not None or time.monotonic() >= deadline:
            return out
        time.sleep(0.05)


def _read_offline_run(folder: Path) -> dict[str, Any]:
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    logs = sorted(folder.glob("run-*.wandb"))
    if not logs:
        raise FileNotFoundError(f"no run-*.wandb file in {folder}")
    out: dict[str, Any] = {
        "run": {},
        "config": {},
        "summary": {},
        "history": [],
        "files": [],
        "exit_code": None,
    }

    def items(updates: Any) -> list[tuple[list[str], Any]]:
        return [
            (list(u.nested_key) or [u.key], json.loads(u.value_json) if u.value_json else None)
            for u in updates
        ]

    for raw in _records(logs[0]):
        record = pb.Record()  # type: ignore[attr-defined]  # generated protobuf module
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out["run"] = {
                "id": r.run_id,
                "name": r.display_name,
                "group": r.run_group,
                "job_type": r.job_type,
                "tags": list(r.tags),
                "project": r.project,
            }
            for keys, value in items(r.config.update):
                _set(out["config"], keys, value)
        elif kind == "config":
            for keys, value in items(record.config.update):
                _set(out["config"], keys, value)
        elif kind == "summary":
            for keys, value in items(record.summary.update):
                _set(out["summary"], keys, value)
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
        elif kind == "history":
            row: dict[str, Any] = {}
            for keys, value in items(record.history.item):
                _set(row, keys, value)
            out["history"].append(row)
    files = folder / "files"
    out["files"] = sorted(
        str(p.relative_to(files)) for p in files.glob("media/**/*") if p.is_file()
    )
    return out
