"""Start-up as a user meets it: `quantdesk` with no arguments opens the window fast, without torch, and
Python's garbage collector runs on the GUI thread only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.hub_emulator import HubEmulator

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "gptqmodel", "exllamav2", "optimum", "auto_gptq")
VISIBLE_WITHIN_S = 1.5

# Runs app.cli.main([]) exactly as the console script does; a probe wrapped around the window's
# start_background (which run_gui schedules right after show()) reports when the window is up, and
# again after the background start-up work (hardware, catalog, unfinished downloads) had time to run.
_CHILD = """
import gc, json, sys, time
from PySide6.QtCore import QTimer
from app.ui import main_window

HEAVY = {heavy!r}
original = main_window.MainWindow.start_background

def probe(self):
    shown = {{"event": "shown", "t": time.time(), "visible": self.isVisible(),
             "heavy": [m for m in HEAVY if m in sys.modules], "gc_automatic": gc.isenabled()}}
    print(json.dumps(shown), flush=True)
    original(self)

    def later():
        print(json.dumps({{"event": "later", "heavy": [m for m in HEAVY if m in sys.modules]}}), flush=True)
        self.close()

    QTimer.singleShot(2500, later)

main_window.MainWindow.start_background = probe
from app.cli import main
sys.exit(main([]))
"""


def test_window_visible_fast_and_no_heavy_imports(hub: HubEmulator) -> None:
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    code = _CHILD.format(heavy=HEAVY)
    times: list[float] = []
    for _ in range(2):  # the first run may pay for a cold disk cache; judge the warm one
        started = time.time()
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
        )
        assert result.returncode == 0, result.stderr
        events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        shown = next(e for e in events if e["event"] == "shown")
        later = next(e for e in events if e["event"] == "later")
        assert shown["visible"] is True
        assert shown["heavy"] == [] and later["heavy"] == []
        assert shown["gc_automatic"] is False  # collected on the GUI thread only (app.ui.gui_gc)
        assert "Traceback" not in result.stderr
        times.append(shown["t"] - started)
    print(f"window visible after {min(times):.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)})")
    assert min(times) < VISIBLE_WITHIN_S


def test_main_py_and_quit_after_ms_exit_cleanly(hub: HubEmulator) -> None:
    env = dict(os.environ, QUANTDESK_QUIT_AFTER_MS="500")
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    result = subprocess.run(
        [sys.executable, "main.py"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


_SIGNAL_CHILD = """
import sys
from app.ui import main_window

original = main_window.MainWindow.start_background

def probe(self):
    print("shown", flush=True)
    original(self)

main_window.MainWindow.start_background = probe
from app.cli import main
sys.exit(main([]))
"""


def test_ctrl_c_in_the_terminal_closes_the_window_cleanly(hub: HubEmulator, isolated_home: Path) -> None:
    import signal

    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    child = subprocess.Popen(
        [sys.executable, "-c", _SIGNAL_CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "shown"
        time.sleep(0.5)  # idle: Qt waits in C++ with no Python running
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    # Closed the way the window's close does: its geometry was saved.
    settings = next(isolated_home.rglob("*.ini")).read_text(errors="replace")
    assert "geometry" in settings
