"""Fault injection settings and the per-emulator counters that make them finite."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class Faults:
    """Network faults to inject into matching requests. Everything is off by default.

    Applied in this order: ``latency_s``, ``fail_first``, then while a GET body is sent: ``throttle_bps``,
    ``stall_after_bytes`` and ``cut_after_bytes``. Each applies per connection (per answer), so with
    ``covering`` or ``ranged_only`` one connection of a segmented download can be singled out: cut the
    one fetching byte N, 503 the first K range requests, stall one while the others run.
    """

    path_contains: str | None = None  # only requests whose URL path contains this (None = all)
    server: str | None = None  # "hub", "cdn" or None for both
    cut_after_bytes: int | None = None  # drop the connection after N body bytes of a GET
    cut_mode: str = "fin"  # "fin": clean close (truncated body); "rst": SO_LINGER 0 then close -> TCP RST
    cut_times: int | None = 1  # how many responses get cut; None = every time
    fail_first: int = 0  # answer the first K matching requests with fail_status
    fail_status: int = 503
    retry_after: str | None = None  # a Retry-After header on the injected failures ("2", an HTTP date)
    throttle_bps: int | None = None  # body bytes per second
    latency_s: float = 0.0  # sleep before answering each matching request
    covering: int | None = None  # only requests whose byte range includes this offset (no Range: all)
    ranged_only: bool = False  # only requests that carry a Range header
    ignore_range: bool = False  # answer 200 with the whole body, as a server without range support
    stall_after_bytes: int | None = None  # after N body bytes of a GET, send nothing for stall_s
    stall_s: float = 0.0
    stall_times: int | None = 1  # how many answers stall; None = every time

    def matches(self, server: str, raw_path: str, decoded_path: str, range_header: str | None = None) -> bool:
        """Whether a request to ``server`` for this path (and byte range) is subject to these faults."""
        if self.server is not None and self.server != server:
            return False
        if self.ranged_only and range_header is None:
            return False
        if self.covering is not None and not _covers(range_header, self.covering):
            return False
        if self.path_contains is None:
            return True
        # Match the decoded path too: callers write "sub/file.txt", clients send "sub%2Ffile.txt".
        return self.path_contains in raw_path or self.path_contains in decoded_path


def _covers(range_header: str | None, offset: int) -> bool:
    """Whether a ``bytes=a-b`` / ``bytes=a-`` request includes ``offset`` (a missing header means all)."""
    if range_header is None:
        return True
    first, _, last = range_header.strip().removeprefix("bytes=").partition("-")
    try:
        start = int(first) if first else 0
        end = int(last) if last and first else None
    except ValueError:
        return False
    return start <= offset and (end is None or offset <= end)


class FaultCounters:
    """Thread-safe counts of failed and cut responses since the last reset."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failed = 0
        self.cut = 0
        self.stalled = 0

    def reset(self) -> None:
        """Forget all counts (a fresh ``Faults`` starts from zero)."""
        with self._lock:
            self.failed = 0
            self.cut = 0
            self.stalled = 0

    def take_stall(self, faults: Faults, body_length: int) -> int | None:
        """Byte offset after which this GET body stalls, or None; counts the stall if there is one."""
        limit = faults.stall_after_bytes
        if limit is None or faults.stall_s <= 0 or body_length <= limit:
            return None
        with self._lock:
            if faults.stall_times is not None and self.stalled >= faults.stall_times:
                return None
            self.stalled += 1
        return max(limit, 0)

    def take_failure(self, faults: Faults) -> bool:
        """Whether this request must be failed; counts it if so."""
        with self._lock:
            if self.failed < faults.fail_first:
                self.failed += 1
                return True
            return False

    def take_cut(self, faults: Faults, body_length: int) -> int | None:
        """Byte offset at which to cut this GET body, or None; counts the cut if there is one.

        A body not longer than ``cut_after_bytes`` cannot be truncated, so it is neither cut nor counted.
        """
        limit = faults.cut_after_bytes
        if limit is None or body_length <= limit:
            return None
        with self._lock:
            if faults.cut_times is not None and self.cut >= faults.cut_times:
                return None
            self.cut += 1
        return max(limit, 0)
