"""The guard against PySide6 6.12.0's lost references to None/True/False (see app/ui/pyside_compat.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_STRESS = """
import sys
import app.ui  # applies the guard
from PySide6.QtCore import QObject, Signal

class S(QObject):
    fired = Signal()

s = S()
for _ in range(200_000):
    s.fired.emit()          # returns True: a lost reference each time with the bug
    s.setObjectName("x")    # returns None: likewise
print("ok")
"""


def test_many_signals_and_void_calls_do_not_abort_the_process() -> None:
    # Without the guard CPython 3.11 aborts with "bool_dealloc" / "none_dealloc" long before 200k.
    result = subprocess.run(
        [sys.executable, "-c", _STRESS], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_the_guard_is_applied_only_where_needed() -> None:
    from app.ui import pyside_compat

    if sys.version_info >= (3, 12):
        assert pyside_compat.apply() is False  # None and the bools are immortal there already
    elif pyside_compat.apply():
        assert sys.getrefcount(None) > 1 << 39
