"""One bounded backoff policy for requests to the Hub: metadata calls and file transfers alike.

A transient failure (5xx, 429, a dropped connection) is retried after a wait that doubles from
``base_s`` up to ``max_s``, at most ``attempts`` tries in all. A server's ``Retry-After`` (seconds or an
HTTP date) replaces the computed wait, up to ``max_retry_after_s``; a longer one is not waited out
silently: the caller gives up at once and says when to try again. Qt-free and network-free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class BackoffPolicy:
    """How often and how long to retry a transient failure."""

    attempts: int = 5  # tries in all: four retries, ~7.5 s of waiting when every try fails
    base_s: float = 0.5  # the first wait; doubled after each failure
    max_s: float = 8.0  # the longest computed wait
    max_retry_after_s: float = 60.0  # the longest Retry-After waited out

    def delay(self, failures: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait after ``failures`` failed tries (1 after the first), or None to give up.

        ``retry_after`` is the server's Retry-After in seconds: honoured as given when it is within
        ``max_retry_after_s``, otherwise the caller gives up (see :meth:`too_long`).
        """
        if failures >= self.attempts or self.too_long(retry_after):
            return None
        if retry_after is not None:
            return max(0.0, retry_after)
        return min(self.max_s, self.base_s * 2.0 ** max(0, failures - 1))

    def too_long(self, retry_after: float | None) -> bool:
        """Whether the server asks for a longer wait than QuantDesk waits out on its own."""
        return retry_after is not None and retry_after > self.max_retry_after_s


DEFAULT_POLICY = BackoffPolicy()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delay-seconds or an HTTP date); None when absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_from(headers: Mapping[str, str] | None) -> float | None:
    """The Retry-After of a response's headers (case-insensitive mapping, e.g. httpx's)."""
    if headers is None:
        return None
    return parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))


class Transient(Exception):
    """Raised by a retried function for a failure worth retrying; ``error`` is what to raise at the end."""

    def __init__(self, error: Exception, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def call_with_backoff(
    fn: Callable[[], _T],
    policy: BackoffPolicy = DEFAULT_POLICY,
    *,
    sleep: Callable[[float], object] = time.sleep,
    on_retry: Callable[[Exception, float], object] | None = None,
    give_up: Callable[[Transient], Exception] | None = None,
) -> _T:
    """``fn()``, retried by ``policy`` while it raises :class:`Transient`.

    When the tries are spent (or the server asks for a wait longer than the policy allows), raises
    ``give_up(transient)`` if given, else the transient's ``error``. ``on_retry(error, wait)`` is called
    before each wait (to show "retrying" in a progress line).
    """
    failures = 0
    while True:
        try:
            return fn()
        except Transient as transient:
            failures += 1
            wait = policy.delay(failures, transient.retry_after)
            if wait is None:
                final = give_up(transient) if give_up is not None else transient.error
                raise final from transient.error
            log.info("retrying in %.1f s after: %s", wait, transient.error)
            if on_retry is not None:
                on_retry(transient.error, wait)
            sleep(wait)
