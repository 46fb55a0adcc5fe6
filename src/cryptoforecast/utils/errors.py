"""One clear paragraph, not a traceback, for the errors a user can fix (``python train.py``).

The project's own errors (:class:`~cryptoforecast.data.schema.DataError`,
:class:`~cryptoforecast.data.schema.DataSourceError`, :class:`ConfigError`) and Hydra's
config-composition errors (a misspelt key, an unknown config group option) are printed as one
paragraph that names the key and suggests the fix in the project's own terms, with exit code 1.
``HYDRA_FULL_ERROR=1`` shows the full traceback instead. Any other exception keeps its traceback.

Hydra prints composition errors itself before the task function runs, so :func:`clean_errors`
wraps the whole Hydra app: it asks Hydra to re-raise (``HYDRA_FULL_ERROR=1`` for the duration of
the call) and formats what comes out.

Light imports only: this module is imported by every ``python train.py``.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cryptoforecast.data.schema import DataError, DataSourceError

FULL_ERROR_ENV = "HYDRA_FULL_ERROR"


class ConfigError(DataError):
    """A config value that would run but mislead (e.g. ``trainer.max_epochs=0``); names the key."""


# errors whose message is the whole story: printed as one paragraph, exit code 1
USER_ERRORS: tuple[type[BaseException], ...] = (DataError, DataSourceError)


def full_error_requested() -> bool:
    """Whether the user asked for full tracebacks (``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get(FULL_ERROR_ENV) == "1" and not os.environ.get(_OURS)


# set while :func:`clean_errors` has set HYDRA_FULL_ERROR itself (so it is not the user's)
_OURS = "_CRYPTOFORECAST_FULL_ERROR_SET"
_task: dict[str, bool] = {"started": False}


def mark_task_started() -> None:
    """Called first by the task function: errors from now on are the run's, not Hydra's.

    The task function reports the project's errors itself (with the run folder's
    ``FAILED.json``); :func:`clean_errors` then lets anything else through with its traceback.
    """
    _task["started"] = True


def user_error(exc: BaseException) -> BaseException | None:
    """The project error behind ``exc`` (itself or a cause, e.g. inside Hydra's instantiate)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, USER_ERRORS):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def paragraph(message: str, command: str, details: str | None = None) -> str:
    """The printed form: ``error: <message>`` then where to look for more, as one paragraph."""
    more = f"details in {details}; " if details else ""
    return (
        f"error: {message.strip()}\n({more}for the full traceback run "
        f"{FULL_ERROR_ENV}=1 {command})"
    )


def print_error(text: str) -> None:
    """Write ``text`` to stderr (flushed, so it follows any logged lines)."""
    sys.stdout.flush()
    sys.stderr.write(text.rstrip() + "\n")
    sys.stderr.flush()


def flat_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config (inner nodes too), without the ``hydra`` node."""
    from omegaconf import DictConfig

    out: list[str] = []
    if not isinstance(cfg, DictConfig):
        return out
    for key in cfg.keys():
        name = f"{prefix}{key!s}"
        if name == "hydra":
            continue
        out.append(name)
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
            out.extend(flat_keys(node, f"{name}."))
    return out


def closest_keys(key: str, keys: Sequence[str], n: int = 3) -> list[str]:
    """The valid keys closest to a misspelt ``key`` (difflib), best first."""
    return difflib.get_close_matches(key, list(keys), n=n, cutoff=0.75)


def _compose_keys(config_name: str, overrides: Sequence[str]) -> list[str]:
    """Keys of the config composed with ``overrides`` (the defaults if those fail)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from cryptoforecast.paths import CONF_DIR

    for attempt in (list(overrides), []):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                return flat_keys(compose(config_name=config_name, overrides=attempt))
        except Exception:  # noqa: BLE001, S112 - the other overrides may be bad too
            continue
    return []


def _override_key(text: str) -> str:
    return text.split("=", 1)[0].lstrip("+~")


def composition_message(exc: BaseException, config_name: str, overrides: Sequence[str]) -> str:
    """A composition error in the project's terms: closest keys or options, no ``+key`` hint."""
    text = str(exc)
    bad = re.search(r"Could not override '([^']+)'", text)
    if bad:
        key = bad.group(1)
        others = [o for o in overrides if _override_key(o) != key and "," not in o]
        keys = _compose_keys(config_name, others)
        close = closest_keys(key, keys)
        hint = (
            f"did you mean {' or '.join(close)}?"
            if close
            else "list the valid keys with `--cfg job`"
        )
        return f"{key} is not a key of the {config_name} config: {hint}"
    group = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if group:
        name, value = group.group(1), group.group(2)
        options = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        close = closest_keys(value, options)
        hint = f"did you mean {name}={close[0]}? " if close else ""
        return f"{name}={value} is not a config option; {hint}choose one of {', '.join(options)}"
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("To append")]
    cause = exc.__cause__
    if cause is not None and str(cause).splitlines():
        lines.append(str(cause).splitlines()[0])
    return " ".join(ln.strip() for ln in lines)


@contextmanager
def clean_errors(command: str, config_name: str, overrides: Sequence[str]) -> Iterator[None]:
    """Around a Hydra app: config-composition and project errors -> one paragraph, exit 1.

    Args:
        command: how the user ran it (``python train.py``), for the traceback hint.
        config_name: the primary config, to suggest the closest keys of.
        overrides: the command-line overrides, to compose the config the user meant.

    Raises:
        SystemExit: code 1 after printing a composition or project error.
    """
    if full_error_requested():
        yield
        return
    from hydra.errors import CompactHydraException
    from omegaconf.errors import OmegaConfBaseException

    os.environ[FULL_ERROR_ENV] = os.environ[_OURS] = "1"
    _task["started"] = False
    try:
        yield
    except (CompactHydraException, OmegaConfBaseException) as exc:
        if _task["started"]:
            raise
        found = user_error(exc)
        message = str(found) if found else composition_message(exc, config_name, overrides)
        print_error(paragraph(message, command))
        raise SystemExit(1) from None
    except USER_ERRORS as exc:  # raised outside the task function (e.g. a Hydra callback)
        if _task["started"]:
            raise
        print_error(paragraph(str(exc), command))
        raise SystemExit(1) from None
    finally:
        os.environ.pop(FULL_ERROR_ENV, None)
        os.environ.pop(_OURS, None)
