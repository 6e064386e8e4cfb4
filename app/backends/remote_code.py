"""A model's own Python code: finding it, and the user's per-folder consent to run it.

A Hub repo can ship Python modules (``modeling_x.py``) and point at them from ``auto_map`` in its
config files; transformers (and GPTQModel, which imports them even with ``trust_remote_code=False``)
then *executes that code* while loading. QuantDesk therefore never hands such a folder to a backend
unless the user has agreed, for that folder and that exact code.

Consent lives in a small store, ``<config dir>/remote_code_consent.json``, not in the model's profile:

- it is keyed by the folder (a profile is keyed by repo and branch, which several folders share: the
  Hugging Face cache snapshot and QuantDesk's own copy), and
- it records a fingerprint of the code (sha256 over every ``*.py`` file and every ``auto_map``), so an
  update that changes the code asks again; a profile would carry consent over to code never seen.

Nothing here imports torch, transformers or a backend: the check runs in milliseconds before the load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.atomic_files import write_json_atomic
from app.paths import app_paths

CONSENT_FILE = "remote_code_consent.json"
_MAX_JSON_BYTES = 1024 * 1024  # config files are small; tokenizer.json (MBs) never carries auto_map
_STORE_VERSION = 1


@dataclass(frozen=True)
class RemoteCode:
    """The code a model folder would make a loader run."""

    model_dir: Path
    python_files: tuple[str, ...]  # paths relative to the folder
    auto_map_files: tuple[str, ...]  # config files that carry an ``auto_map``
    fingerprint: str  # sha256 over the code files and the auto_maps

    @property
    def summary(self) -> str:
        """``modeling_x.py, auto_map in config.json`` (at most four names)."""
        parts = [*self.python_files, *(f"auto_map in {name}" for name in self.auto_map_files)]
        shown = ", ".join(parts[:4])
        return shown + (f" and {len(parts) - 4} more" if len(parts) > 4 else "")


def _auto_maps(model_dir: Path) -> dict[str, Any]:
    """``{file name: auto_map}`` for every small top-level JSON file that has one."""
    found: dict[str, Any] = {}
    for path in sorted(model_dir.glob("*.json")):
        try:
            if not path.is_file() or path.stat().st_size > _MAX_JSON_BYTES:
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable files are reported by the file checks, not here
        if isinstance(data, dict) and data.get("auto_map"):
            found[path.name] = data["auto_map"]
    return found


def _python_files(model_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in model_dir.rglob("*.py")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(model_dir).parts)
    )


def find_remote_code(model_dir: Path) -> RemoteCode | None:
    """The Python code ``model_dir`` ships (``*.py`` files, ``auto_map`` entries); None when none."""
    auto_maps = _auto_maps(model_dir)
    python = _python_files(model_dir)
    if not auto_maps and not python:
        return None
    digest = hashlib.sha256()
    for path in python:
        digest.update(path.relative_to(model_dir).as_posix().encode() + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"unreadable")
    digest.update(json.dumps(auto_maps, sort_keys=True).encode())
    return RemoteCode(
        model_dir=model_dir,
        python_files=tuple(p.relative_to(model_dir).as_posix() for p in python),
        auto_map_files=tuple(auto_maps),
        fingerprint=digest.hexdigest(),
    )


def _folder_key(model_dir: Path) -> str:
    try:
        return str(model_dir.resolve())
    except OSError:
        return str(model_dir.absolute())


class ConsentStore:
    """Which model folders the user allowed to run their own code, and for which code (fingerprint)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or app_paths().config_dir / CONSENT_FILE

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            self._set_aside()
            return {}
        folders = data.get("folders") if isinstance(data, dict) else None
        if not isinstance(folders, dict):
            self._set_aside()
            return {}
        return folders

    def _set_aside(self) -> None:
        """A damaged store is renamed (never deleted): consent is asked again, nothing runs unasked."""
        with contextlib.suppress(OSError):
            self.path.rename(self.path.with_name(f"{self.path.stem}.corrupt-{int(time.time())}.json"))

    def allowed(self, code: RemoteCode) -> bool:
        """Whether the user agreed to run exactly this code in this folder."""
        entry = self._read().get(_folder_key(code.model_dir))
        return isinstance(entry, dict) and entry.get("fingerprint") == code.fingerprint

    def grant(self, code: RemoteCode) -> None:
        """Remember the user's consent for this folder and this code."""
        folders = self._read()
        folders[_folder_key(code.model_dir)] = {
            "fingerprint": code.fingerprint,
            "files": list(code.python_files),
            "granted_at": time.time(),
        }
        write_json_atomic(self.path, {"version": _STORE_VERSION, "folders": folders})

    def revoke(self, model_dir: Path) -> None:
        """Forget the consent given for ``model_dir`` (its code will not run until allowed again)."""
        folders = self._read()
        if folders.pop(_folder_key(model_dir), None) is not None:
            write_json_atomic(self.path, {"version": _STORE_VERSION, "folders": folders})


def remote_code_allowed(model_dir: Path, store: ConsentStore | None = None) -> bool:
    """``trust_remote_code`` for a load of ``model_dir``: True only when it has code the user allowed."""
    code = find_remote_code(model_dir)
    return code is not None and (store or ConsentStore()).allowed(code)


def allow_remote_code(
    model_dir: Path, fingerprint: str | None = None, store: ConsentStore | None = None
) -> bool:
    """Record the user's consent to run ``model_dir``'s code; returns whether consent was recorded.

    With ``fingerprint`` (what a dialog showed the user), nothing is recorded if the code has changed
    since; a folder without code needs no consent (False).
    """
    code = find_remote_code(model_dir)
    if code is None or (fingerprint and fingerprint != code.fingerprint):
        return False
    (store or ConsentStore()).grant(code)
    return True
