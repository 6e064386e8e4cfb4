"""Small text helpers shared by the chat components."""

from __future__ import annotations

import time


def escape(text: str) -> str:
    """``text`` safe inside Qt rich text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def short_date(timestamp: float, now: float | None = None) -> str:
    """``14:05`` today, ``Mon 14:05`` this week, ``3 Nov`` this year, ``3 Nov 2025`` before."""
    now = time.time() if now is None else now
    then, today = time.localtime(timestamp), time.localtime(now)
    if then.tm_year == today.tm_year and then.tm_yday == today.tm_yday:
        return time.strftime("%H:%M", then)
    if 0 <= now - timestamp < 6 * 86_400:
        return time.strftime("%a %H:%M", then)
    day = str(then.tm_mday)
    if then.tm_year == today.tm_year:
        return f"{day} {time.strftime('%b', then)}"
    return f"{day} {time.strftime('%b %Y', then)}"
