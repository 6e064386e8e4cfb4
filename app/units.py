"""Byte units. The Hub's "GB" is 10**9 bytes; memory is planned and shown in GiB (2**30)."""

from __future__ import annotations

GIB = 1024**3
MIB = 1024**2
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def gib(value: int) -> float:
    """Bytes as GiB, for display."""
    return value / GIB


def format_size(value: int) -> str:
    """A byte count in the largest binary unit that keeps it >= 1, e.g. '35.33 GiB', '164.0 KiB'."""
    size = float(value)
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
