"""Crash-safe writes and damage-tolerant reads shared by every store that keeps JSON on disk."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Mapping[str, Any], *, sort_keys: bool = True) -> None:
    """Replace ``path`` with ``data`` so a reader (or a crash) sees the old or the new file, never half.

    The temporary file sits in the same folder (``os.replace`` is only atomic within one file system)
    and is fsynced before the rename, so a power cut cannot leave an empty file behind the new name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=sort_keys)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def set_aside(path: Path) -> Path:
    """Rename a damaged file to ``<name>.corrupt-<UTC timestamp>`` next to it and return the new path.

    Never deletes: the bytes stay for the user (or a support request); a name already taken gets a
    counter, so two set-asides in the same second keep both files.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    candidate = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while candidate.exists():
        counter += 1
        candidate = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
    os.replace(path, candidate)
    return candidate


def _identity_of(stat: os.stat_result) -> tuple[int, int, int]:
    """What tells one version of a file from another: inode, size, modification time."""
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _read_with_identity(path: Path) -> tuple[bytes, tuple[int, int, int]]:
    """The file's bytes and the identity of the very file they came from."""
    with path.open("rb") as fh:
        identity = _identity_of(os.fstat(fh.fileno()))  # before reading: a write meanwhile changes it
        return fh.read(), identity


def _identity(path: Path) -> tuple[int, int, int] | None:
    """The identity of the file now at ``path`` (None: there is none)."""
    try:
        return _identity_of(path.stat())
    except OSError:
        return None


def read_json_store(path: Path, *, what: str = "") -> tuple[dict[str, Any] | None, str | None]:
    """Read a JSON-object store: ``(data, None)``, or ``(None, warning)`` when it had to be set aside.

    A missing or empty file is ``(None, None)``: nothing was lost. A file that is not UTF-8, not JSON
    or not a JSON object is renamed by :func:`set_aside` (never deleted) and the warning is one sentence
    a person can act on; the caller starts with a fresh store (and may salvage what it can from the
    set-aside copy, whose path the warning names). ``what`` names the store in that sentence.

    Another reader (a thread, another process) may meet the same damaged file at the same moment. The
    one whose rename wins says so; the others read again what is there now (the fresh store the winner
    wrote, or nothing) instead of renaming a fresh store aside or reporting a rename that lost.
    """
    label = what or path.name
    for _attempt in range(3):
        try:
            raw, identity = _read_with_identity(path)
        except (FileNotFoundError, NotADirectoryError):  # no such store (a parent is a file: none either)
            return None, None
        except OSError as exc:
            return None, f"QuantDesk could not read {label} ({path}): {exc.strerror or exc}."
        if not raw.strip():
            return None, None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None
        if isinstance(data, dict):
            return data, None
        if _identity(path) != identity:
            continue  # replaced (or set aside) since it was read
        try:
            aside = set_aside(path)
        except FileNotFoundError:
            continue  # another reader's rename won
        except OSError as exc:
            return None, (
                f"{label} ({path}) is damaged and could not be set aside ({exc.strerror or exc}); "
                "QuantDesk ignores it for now."
            )
        return None, f"{label} was damaged; QuantDesk set it aside as {aside} and started a fresh one."
    return None, None  # rewritten under us again and again: the writer's next read will judge it
