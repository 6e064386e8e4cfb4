"""How search results read as text, shared by the window and the CLI: counts, sizes, dates."""

from __future__ import annotations

import time

from app.catalog.search_query import ModelHit
from app.units import format_size


def format_count(value: int | None) -> str:
    """1234 -> '1.2k', 2_500_000 -> '2.5M'; None -> '—'."""
    if value is None:
        return "—"
    for limit, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if value >= limit:
            return f"{value / limit:.1f}{suffix}"
    return str(value)


def format_parameters(value: int | None) -> str:
    """69_000_000_000 -> '69B', 6_738_000_000 -> '6.7B', 135_000_000 -> '135M'; None -> ''."""
    if not value:
        return ""
    if value >= 10**9:
        billions = value / 10**9
        return f"{billions:.0f}B" if billions >= 10 else f"{billions:.1f}B"
    return f"{value / 10**6:.0f}M"


def format_day(timestamp: float | None) -> str:
    """A POSIX time as 'YYYY-MM-DD' (local time); None -> '—'."""
    return time.strftime("%Y-%m-%d", time.localtime(timestamp)) if timestamp is not None else "—"


def size_or_parameters(hit: ModelHit) -> str:
    """What the Hub says about the model's bulk: its parameter count, else the storage it uses."""
    if hit.parameters:
        return f"{format_parameters(hit.parameters)} params"
    return format_size(hit.size_bytes) if hit.size_bytes else "—"
