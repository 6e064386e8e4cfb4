"""One logging set-up for the command line and the window: the libraries' output goes to a log file.

GPTQModel prints banners and INFO lines on stdout, transformers and huggingface_hub attach their own
stderr handlers, torch raises warnings: none of it is what a command promises. After
:func:`setup_logging`, every logger (QuantDesk's and the libraries') and every warning goes to
``<data dir>/logs/quantdesk.log``; with ``verbose`` they are shown on stderr as well.
:func:`library_output` catches what libraries print directly while a backend is imported and loads.

Without :func:`setup_logging` (QuantDesk used as a library, or in tests) nothing is redirected.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from app.paths import app_paths

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LIBRARY_LOGGER = "quantdesk.library"  # where directly printed library output is logged
_MAX_LOG_BYTES = 5 * 1024 * 1024
# HTTP clients log every request URL at INFO; a URL may carry credentials (user:key@host): keep them out.
_URL_LOGGERS = ("httpx", "httpx2", "httpcore", "urllib3")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _State:
    """What :func:`setup_logging` installed, and the streams :func:`library_output` swapped out."""

    def __init__(self) -> None:
        self.configured = False
        self.verbose = False
        self.handlers: list[logging.Handler] = []
        self.lock = threading.Lock()
        self.capturing = 0
        self.saved: tuple[TextIO, TextIO] | None = None


_state = _State()


def log_file() -> Path:
    """The log file: ``<data dir>/logs/quantdesk.log`` (rotated at 5 MiB, two old files kept)."""
    return app_paths().data_dir / "logs" / "quantdesk.log"


def setup_logging(verbose: bool = False) -> Path | None:
    """Send all logging and warnings to the log file (and to stderr when ``verbose``).

    Returns the log file, or None when it cannot be written (a read-only data dir): logging then goes
    nowhere unless ``verbose``, and nothing fails. Calling it again replaces the earlier set-up.
    """
    root = logging.getLogger()
    for handler in _state.handlers:
        root.removeHandler(handler)
        handler.close()
    _state.handlers = []
    formatter = logging.Formatter(LOG_FORMAT)
    path: Path | None = log_file()
    assert path is not None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=_MAX_LOG_BYTES, backupCount=2, encoding="utf-8"
        )
    except OSError:
        path = None
        file_handler = logging.NullHandler()
    _state.handlers.append(file_handler)
    if verbose:
        # Bound to the real stderr now: library_output() swaps sys.stderr later, and must not loop.
        _state.handlers.append(logging.StreamHandler(sys.stderr))
    for handler in _state.handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in _URL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Off then on: logging installs its warnings hook only when it believes none is installed, so a
    # hook replaced since (by a library or a test harness) would otherwise stay replaced.
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    _state.configured = True
    _state.verbose = verbose
    adopt_library_loggers()
    return path


def shutdown_logging() -> None:
    """Undo :func:`setup_logging`: its handlers are closed and warnings are shown as Python shows them."""
    root = logging.getLogger()
    for handler in _state.handlers:
        root.removeHandler(handler)
        handler.close()
    _state.handlers = []
    _state.configured = False
    logging.captureWarnings(False)


def adopt_library_loggers() -> None:
    """Take the libraries' own console handlers off their loggers, so their records reach the log file.

    transformers and huggingface_hub attach a ``StreamHandler`` (stderr) to their root logger when
    first imported and stop propagation in some set-ups; call this after importing such a library.
    Does nothing before :func:`setup_logging`.
    """
    if not _state.configured:
        return
    consoles = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s is not None}
    for logger in list(logging.root.manager.loggerDict.values()):
        if not isinstance(logger, logging.Logger):
            continue
        for handler in list(logger.handlers):
            stream = getattr(handler, "stream", None)
            console = type(handler) is logging.StreamHandler and (
                id(stream) in consoles or isinstance(stream, _LogStream)
            )
            if console:
                logger.removeHandler(handler)
        logger.propagate = True


class _LogStream(io.TextIOBase):
    """A text stream that logs each line written to it (ANSI colours and carriage returns removed)."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        super().__init__()
        self._logger = logger
        self._level = level
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            rest, self._pending = self._pending, ""
        if rest:
            self._emit(rest)

    def _emit(self, line: str) -> None:
        clean = _ANSI.sub("", line).split("\r")[-1].rstrip()
        if clean.strip():
            self._logger.log(self._level, "%s", clean)


@contextlib.contextmanager
def library_output() -> Iterator[None]:
    """While the block runs, what anything prints on stdout/stderr is logged instead (then restored).

    For a backend's import and load: GPTQModel prints its banner and INFO lines straight to stdout.
    Without :func:`setup_logging` this does nothing. Re-entrant; the streams are restored when the
    outermost block ends.
    """
    if not _state.configured:
        yield
        return
    logger = logging.getLogger(LIBRARY_LOGGER)
    with _state.lock:
        _state.capturing += 1
        if _state.capturing == 1:
            _state.saved = (sys.stdout, sys.stderr)
            sys.stdout = _LogStream(logger, logging.INFO)
            sys.stderr = _LogStream(logger, logging.WARNING)
    try:
        yield
    finally:
        with _state.lock:
            _state.capturing -= 1
            if _state.capturing == 0 and _state.saved is not None:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                sys.stdout, sys.stderr = _state.saved
                _state.saved = None
        adopt_library_loggers()
