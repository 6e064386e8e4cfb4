"""Shared set-up for the GUI scripts (screenshots, latency): an isolated QuantDesk home and the local
Hub emulator with the fixture repos, offscreen Qt unless a display is wanted."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures import build_fixture_hub  # noqa: E402
from tests.fixtures.hub_search_repos import write_search_repos  # noqa: E402
from tests.hub_emulator import Faults, HubEmulator  # noqa: E402


def _isolate(tmp: Path) -> Path:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    os.environ.pop("HF_TOKEN", None)
    home = tmp / "home"
    os.environ["QUANTDESK_HOME"] = str(home)
    os.environ["HF_HOME"] = str(tmp / "hf-home")
    return home


@contextlib.contextmanager
def emulated_hub() -> Iterator[tuple[HubEmulator, Path]]:
    """A running emulator (in this process) over the fixture repos, and a temporary QUANTDESK_HOME."""
    with tempfile.TemporaryDirectory(prefix="quantdesk-gui-") as tmp:
        home = _isolate(Path(tmp))
        root = Path(tmp) / "hub"
        build_fixture_hub(root)
        write_search_repos(root)
        with HubEmulator(root) as hub:
            os.environ["HF_ENDPOINT"] = hub.endpoint
            yield hub, home


def _serve(root: str, conn: multiprocessing.connection.Connection) -> None:
    with HubEmulator(Path(root)) as hub:
        conn.send(hub.endpoint)
        while (faults := conn.recv()) is not None:
            hub.faults = faults
            conn.send("ok")


class RemoteHub:
    """An emulator in its own process: like the real Hub, its threads do not compete with the GUI's."""

    def __init__(self, conn: multiprocessing.connection.Connection, endpoint: str) -> None:
        self._conn = conn
        self.endpoint = endpoint

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults injected into later requests."""
        self._conn.send(faults)
        if not self._conn.poll(30):
            raise RuntimeError("the Hub emulator process does not answer")
        self._conn.recv()


@contextlib.contextmanager
def remote_hub() -> Iterator[tuple[RemoteHub, Path]]:
    """:func:`emulated_hub` with the emulator in a child process."""
    with tempfile.TemporaryDirectory(prefix="quantdesk-gui-") as tmp:
        home = _isolate(Path(tmp))
        root = Path(tmp) / "hub"
        build_fixture_hub(root)
        write_search_repos(root)
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(str(root), child), daemon=True)
        process.start()
        try:
            if not parent.poll(60):
                raise RuntimeError("the Hub emulator process did not start")
            hub = RemoteHub(parent, parent.recv())
            os.environ["HF_ENDPOINT"] = hub.endpoint
            yield hub, home
        finally:
            parent.send(None)
            process.join(timeout=10)


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Process Qt events until ``condition()`` holds; raises TimeoutError."""
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the GUI did not reach the expected state in time")
        QApplication.processEvents()
        time.sleep(0.005)


def pump(seconds: float) -> None:
    """Process events for a while (let layouts, timers and workers settle)."""
    from PySide6.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.005)
