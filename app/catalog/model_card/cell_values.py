"""Cell values of the branch table: each converter returns None for a cell it cannot read."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

# Size units. The Hub (and TheBloke's tables) use SI units: "40.66 GB" is 40.66 * 10**9 bytes.
_BYTES_PER_UNIT: Final[Mapping[str, int]] = {
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
}

_BOOL_WORDS: Final[Mapping[str, bool]] = {
    "yes": True,
    "y": True,
    "true": True,
    "✓": True,
    "✔": True,
    "✅": True,
    "no": False,
    "n": False,
    "false": False,
    "✗": False,
    "✘": False,
    "❌": False,
}

# Group-size cells that mean "no grouping" (GPTQ's group_size -1).
_NO_GROUP_WORDS: Final = frozenset({"", "none", "-1", "-", "n/a", "na", "no"})

_INT: Final = re.compile(r"[+-]?\d{1,15}")
_BITS: Final = re.compile(r"(\d{1,3})\s*-?\s*(?:bits?)?", re.IGNORECASE)
_GROUP: Final = re.compile(r"(\d{1,9})\s*g?", re.IGNORECASE)
_FLOAT: Final = re.compile(r"[+-]?(?:\d{1,15}(?:\.\d{0,15})?|\.\d{1,15})(?:[eE][+-]?\d{1,3})?")
_SIZE: Final = re.compile(r"(\d{1,15}(?:\.\d{1,15})?)\s*([A-Za-z]{1,5})")


def _to_int(cell: str) -> int | None:
    cell = cell.replace(",", "").replace("_", "")
    return int(cell) if _INT.fullmatch(cell) else None


def _to_bits(cell: str) -> int | None:
    match = _BITS.fullmatch(cell)
    return int(match.group(1)) if match else None


def _to_group_size(cell: str) -> int | None:
    if cell.lower() in _NO_GROUP_WORDS:
        return None
    match = _GROUP.fullmatch(cell)
    value = int(match.group(1)) if match else None
    return value if value else None  # 0 is not a group size either


def _to_bool(cell: str) -> bool | None:
    return _BOOL_WORDS.get(cell.lower())


def _to_float(cell: str) -> float | None:
    cell = cell.rstrip("%").strip()
    value = float(cell) if _FLOAT.fullmatch(cell) else None
    return value if value is not None and math.isfinite(value) else None  # "1e999" is inf


def _to_text(cell: str) -> str | None:
    return cell or None


def _to_description(cell: str) -> str:
    return cell


def _to_size(cell: str) -> int | None:
    match = _SIZE.fullmatch(cell.replace(",", ""))
    if match is None:
        return None
    factor = _BYTES_PER_UNIT.get(match.group(2).lower())
    if factor is None:
        return None
    try:
        # Decimal, not float: "40.66 GB" must be exactly 40_660_000_000 bytes.
        return int((Decimal(match.group(1)) * factor).to_integral_value())
    except InvalidOperation:
        return None


CELL_CONVERTERS: Final[Mapping[str, Callable[[str], Any]]] = {
    "bits": _to_bits,
    "group_size": _to_group_size,
    "act_order": _to_bool,
    "damp_percent": _to_float,
    "dataset": _to_text,
    "seq_len": _to_int,
    "size_bytes": _to_size,
    "exllama": _to_bool,
    "description": _to_description,
}
