"""Sentences the download stores want a person to read (a damaged record set aside, a folder gone).

The stores are read deep inside listing and download code that returns models, not messages; they
add a sentence here and the front end that started the work takes them (CLI: stderr; GUI: the error
banner). Thread-safe; each sentence is delivered once.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_pending: list[str] = []


def add(sentence: str) -> None:
    """Queue a sentence for the user (duplicates still waiting are dropped)."""
    with _lock:
        if sentence not in _pending:
            _pending.append(sentence)


def take() -> list[str]:
    """Every sentence queued so far, oldest first; the queue is empty afterwards."""
    with _lock:
        taken = list(_pending)
        _pending.clear()
        return taken
