"""A file-based model registry: immutable numbered versions of bundles, with stages.

Layout under the root (``$CRYPTOFORECAST_REGISTRY``, default ``~/.cryptoforecast/registry``)::

    .lock                       fcntl.flock'ed by every writer (register, promote, rollback)
    .tmp/                       registrations in progress; a writer holding the lock removes
                                leftovers of killed ones, readers never look here
    <name>/versions/<n>/        a complete bundle (files read-only) + registry.json
    <name>/stages.json          current stage -> version, per-stage history, event log

Guarantees:

- A version appears all at once: the bundle is copied into ``.tmp/``, re-verified, then moved
  into place with one ``os.rename``. A registration killed halfway leaves only a ``.tmp`` folder.
- Versions are numbered 1, 2, ... under the lock, so concurrent writers get distinct numbers.
- Every load verifies the sha256 of every file against the bundle's manifest; a corrupted file
  is refused with an error naming it. Only ONNX and JSON/YAML are stored; nothing is unpickled.
- ``promote`` pushes onto the stage's history; ``rollback`` pops it, restoring the previous
  version of that stage.
- Nothing read from the registry is trusted: manifest names must be plain files inside the
  version (no ``..``, absolute paths or symlinks, see ``verify_bundle``), a version folder may
  not be a symlink, and a corrupt ``stages.json`` or ``registry.json`` is a
  :class:`RegistryError` naming the file. :meth:`Registry.verify` checks everything at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptoforecast.export.bundle import MANIFEST, BundleError, verify_bundle

STAGES = ("staging", "production")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
META = "registry.json"


class RegistryError(ValueError):
    """Unknown model, version or stage, bad name, or a refused operation."""


def default_root() -> Path:
    """``$CRYPTOFORECAST_REGISTRY`` or ``~/.cryptoforecast/registry``."""
    env = os.environ.get("CRYPTOFORECAST_REGISTRY")
    return Path(env).expanduser() if env else Path.home() / ".cryptoforecast" / "registry"


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: ``NAME`` (latest), ``NAME:VERSION`` or ``NAME@STAGE``."""

    name: str
    version: int | None = None
    stage: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse ``NAME``, ``NAME:3`` or ``NAME@production``."""
        if "@" in text:
            name, stage = text.split("@", 1)
            if stage not in STAGES:
                raise RegistryError(f"unknown stage {stage!r} in {text!r}; stages: {STAGES}")
            return cls(_check_name(name), stage=stage)
        if ":" in text:
            name, version = text.split(":", 1)
            if not version.isdigit() or int(version) < 1:
                raise RegistryError(f"bad version {version!r} in {text!r} (1, 2, ...)")
            return cls(_check_name(name), version=int(version))
        return cls(_check_name(text))


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise RegistryError(
            f"bad model name {name!r}: letters, digits, '_', '.', '-' (not first), <= 100 chars"
        )
    return name


class Registry:
    """The store. All writers serialise on ``.lock``; readers need no lock.

    Args:
        root: the registry folder (default :func:`default_root`); created on first write.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    # ------------------------------------------------------------------ locking / layout

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                self._clean_tmp()  # we hold the lock: nobody else is mid-registration
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _clean_tmp(self) -> None:
        tmp = self.root / ".tmp"
        if tmp.is_dir():
            for leftover in tmp.iterdir():
                _rmtree(leftover)

    def _versions_dir(self, name: str) -> Path:
        return self.root / name / "versions"

    # ------------------------------------------------------------------ reading

    def names(self) -> list[str]:
        """Registered model names (with at least one complete version), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and self.versions(p.name)
        )

    def versions(self, name: str) -> list[int]:
        """Complete versions of ``name``, ascending (temp folders are never listed)."""
        folder = self._versions_dir(_check_name(name))
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())

    def stages(self, name: str) -> dict[str, Any]:
        """``{"current": {stage: version}, "history": {stage: [...]}, "events": [...]}``."""
        path = self.root / _check_name(name) / "stages.json"
        if not path.is_file():
            return {"current": {}, "history": {}, "events": []}
        data = read_json(path)
        current, history, events = (data.get(k) for k in ("current", "history", "events"))
        if (
            not isinstance(current, dict)
            or not isinstance(history, dict)
            or not isinstance(events, list)
            or any(s not in STAGES or not _is_version(v) for s, v in current.items())
            or any(
                s not in STAGES or not isinstance(h, list) or not all(map(_is_version, h))
                for s, h in history.items()
            )
        ):
            raise RegistryError(
                f"{path}: malformed stages file (expected current/history of stage -> version "
                "and an events list); fix or restore it from a backup"
            )
        return data

    def resolve(self, ref: str | ModelRef) -> tuple[ModelRef, int]:
        """The version number a reference points at.

        Raises:
            RegistryError: unknown model, version, or a stage with no version.
        """
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        versions = self.versions(ref.name)
        if not versions:
            raise RegistryError(f"no model named {ref.name!r} in {self.root}")
        if ref.stage is not None:
            version = self.stages(ref.name)["current"].get(ref.stage)
            if version is None:
                raise RegistryError(f"{ref.name} has no {ref.stage} version; promote one first")
            return ref, int(version)
        if ref.version is not None:
            if ref.version not in versions:
                raise RegistryError(f"{ref.name} has no version {ref.version} (has {versions})")
            return ref, ref.version
        return ref, versions[-1]

    def path(self, ref: str | ModelRef, verify: bool = True) -> Path:
        """The bundle folder of a reference, its checksums verified (``BundleError`` if not)."""
        parsed, version = self.resolve(ref)
        folder = self._versions_dir(parsed.name) / str(version)
        if folder.is_symlink():
            raise RegistryError(f"{folder}: is a symlink; registry versions must be real folders")
        if verify:
            verify_bundle(folder)
        return folder

    def show(self, ref: str) -> dict[str, Any]:
        """Manifest, registry metadata and stages of one version (checksums verified)."""
        parsed, version = self.resolve(ref)
        folder = self.path(f"{parsed.name}:{version}")
        manifest = read_json(folder / MANIFEST)
        meta = read_json(folder / META) if (folder / META).is_file() else {}
        current = self.stages(parsed.name)["current"]
        return {
            "name": parsed.name,
            "version": version,
            "path": str(folder),
            "stages": sorted(s for s, v in current.items() if v == version),
            "registered": meta,
            "manifest": manifest,
        }

    def list(self) -> list[dict[str, Any]]:
        """One row per model: name, versions, current stages."""
        return [
            {"name": n, "versions": self.versions(n), "stages": self.stages(n)["current"]}
            for n in self.names()
        ]

    def verify(self) -> list[dict[str, Any]]:
        """Check every version of every model: files, checksums, metadata and stages.

        Returns:
            One row per version (and one per unreadable ``stages.json``): ``name``,
            ``version`` (None for a stages row), ``ok`` and ``error`` (None when ok).
        """
        rows: list[dict[str, Any]] = []
        if not self.root.is_dir():
            return rows
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir() or not _NAME.match(folder.name):
                continue
            name = folder.name
            try:
                current = self.stages(name)["current"]
            except RegistryError as exc:
                rows.append({"name": name, "version": None, "ok": False, "error": str(exc)})
                current = {}
            for version in self.versions(name):
                error = None
                try:
                    bundle = self.path(f"{name}:{version}")
                    meta = bundle / META
                    if meta.is_symlink():
                        raise RegistryError(f"{meta}: is a symlink")
                    if meta.is_file():
                        read_json(meta)
                except (RegistryError, BundleError) as exc:
                    error = str(exc)
                row = {"name": name, "version": version, "ok": error is None, "error": error}
                rows.append(row)
            known = set(self.versions(name))
            for stage, version in current.items():
                if int(version) not in known:
                    rows.append(
                        {
                            "name": name,
                            "version": None,
                            "ok": False,
                            "error": f"{folder / 'stages.json'}: {stage} points at missing "
                            f"version {version}",
                        }
                    )
        return rows

    # ------------------------------------------------------------------ writing

    def register(self, bundle: Path, name: str) -> int:
        """Copy a verified bundle in as the next version of ``name``; return the version.

        Raises:
            BundleError: the source bundle fails verification (nothing is registered).
        """
        _check_name(name)
        bundle = Path(bundle)
        manifest = verify_bundle(bundle)
        with self._locked():
            version = (self.versions(name) or [0])[-1] + 1
            tmp = self.root / ".tmp" / f"{name}-{version}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            try:
                for file in sorted(manifest["files"]) + [MANIFEST]:
                    copy_file(bundle / file, tmp / file)
                verify_bundle(tmp)  # what landed is what the manifest promises
                meta = {
                    "name": name,
                    "version": version,
                    "registered_at": _now(),
                    "source": str(bundle.resolve()),
                    "model_name": manifest.get("model_name"),
                }
                (tmp / META).write_text(json.dumps(meta, indent=1) + "\n")
                for file in tmp.iterdir():
                    file.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # immutable version
                target = self._versions_dir(name)
                target.mkdir(parents=True, exist_ok=True)
                os.rename(tmp, target / str(version))
            except BaseException:
                _rmtree(tmp)
                raise
        return version

    def promote(self, name: str, version: int, stage: str) -> None:
        """Make ``version`` the current ``stage`` version (checksums verified first)."""
        if stage not in STAGES:
            raise RegistryError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        with self._locked():
            self.path(f"{name}:{version}")  # exists and intact
            data = self.stages(name)
            previous = data["current"].get(stage)
            data["current"][stage] = version
            history = data["history"].setdefault(stage, [])
            if not history or history[-1] != version:
                history.append(version)
            data["events"].append(
                {"at": _now(), "action": "promote", "stage": stage, "version": version,
                 "previous": previous}
            )  # fmt: skip
            self._write_stages(name, data)

    def rollback(self, name: str, stage: str = "production") -> int:
        """Restore the version that held ``stage`` before the current one; return it.

        Raises:
            RegistryError: the stage has no earlier version.
        """
        with self._locked():
            data = self.stages(name)
            history = data["history"].get(stage, [])
            if len(history) < 2:
                raise RegistryError(f"{name} has no earlier {stage} version to roll back to")
            dropped = history.pop()
            restored = int(history[-1])
            self.path(f"{name}:{restored}")  # refuse to roll back onto a corrupted version
            data["current"][stage] = restored
            data["events"].append(
                {"at": _now(), "action": "rollback", "stage": stage, "version": restored,
                 "previous": dropped}
            )  # fmt: skip
            self._write_stages(name, data)
        return restored

    def _write_stages(self, name: str, data: dict[str, Any]) -> None:
        path = self.root / name / "stages.json"
        tmp = path.with_name(f".stages-{uuid.uuid4().hex[:8]}.json")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)


def copy_file(src: Path, dst: Path) -> None:
    """Copy one bundle file (a module-level hook so tests can interrupt a registration)."""
    if src.is_symlink():
        raise BundleError(f"{src}: is a symlink; a bundle's files must be plain files")
    if not src.is_file():
        raise BundleError(f"{src}: missing from the bundle")
    shutil.copyfile(src, dst)


def _rmtree(path: Path) -> None:
    """Remove a folder even when its files were made read-only."""

    def _writable(func: Any, p: str, _exc: Any) -> None:
        os.chmod(p, stat.S_IWUSR | stat.S_IRUSR)
        func(p)

    if path.is_dir():
        shutil.rmtree(path, onerror=_writable)  # onexc needs 3.12
    elif path.exists():
        path.unlink()


def read_json(path: Path) -> Any:
    """A registry or bundle JSON file that must be an object, or a :class:`RegistryError`."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RegistryError(f"{path}: unreadable or corrupt JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _is_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
