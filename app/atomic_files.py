"""Crash-safe file writes shared by every store that keeps JSON on disk."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
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
