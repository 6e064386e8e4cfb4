"""A guard against reference-counting bugs of PySide6 6.12.0 on CPython 3.11.

This PySide6 treats ``None``, ``True`` and ``False`` as immortal, as they are from CPython 3.12 on: it
hands them back without taking a reference. On 3.11 every such hand-back takes one reference away:
each void Qt call (``widget.setObjectName(...)``, every Python ``paintEvent``) from ``None``, each
``signal.emit()`` from ``True``. Once a count reaches zero CPython aborts ("none_dealloc: deallocating
None" or "bool_dealloc"): seconds to minutes into a session, or at exit.

When, and only when, the bug is detected (and on CPython < 3.12), :func:`apply` does what 3.12 does:
it raises the counts of these singletons far out of reach (2**40), so the lost references can never
bring them to zero. A fixed PySide6, or CPython >= 3.12, is left alone. ``app.ui`` applies it on import,
before any other Qt call, so every Qt code path of QuantDesk (and the tests) is covered.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

_HEADROOM = 1 << 40
_SINGLETONS: tuple[object, ...] = (None, True, False, Ellipsis, NotImplemented)
_applied = False


class _Probe(QObject):
    fired = Signal()


def _counts() -> tuple[int, int]:
    return sys.getrefcount(None), sys.getrefcount(True) + sys.getrefcount(False)


def references_lost() -> bool:
    """Whether void calls and ``emit()`` return their singleton results without a reference."""
    probe = _Probe()
    none_before, bools_before = _counts()
    for _ in range(4):
        probe.setObjectName("probe")  # a void call: returns None
        probe.fired.emit()  # returns True
    none_after, bools_after = _counts()
    lost_none, lost_bools = none_before - none_after, bools_before - bools_after
    # Give the probe's references back before anything else can run.
    if lost_none > 0:
        _raise_count(None, lost_none)
    if lost_bools > 0:
        _raise_count(True, lost_bools)
    return lost_none >= 4 or lost_bools >= 4


def _raise_count(obj: object, amount: int) -> None:
    # ob_refcnt is the first field of every object in a release build of CPython.
    ctypes.c_ssize_t.from_address(id(obj)).value += amount


def apply() -> bool:
    """Protect the singletons if this PySide6 needs it (idempotent); returns whether it did."""
    global _applied
    if _applied:
        return True
    if sys.version_info >= (3, 12) or not references_lost():
        return False
    before = sys.getrefcount(None)
    for obj in _SINGLETONS:
        _raise_count(obj, _HEADROOM)
    _applied = sys.getrefcount(None) - before == _HEADROOM
    return _applied
