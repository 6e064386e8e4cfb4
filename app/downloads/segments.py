"""Which bytes of a file each connection fetches: pieces handed out in order, plus work stealing.

The file is a partition of byte ranges (:class:`Segment`), each with the bytes already on disk counted
from its start. A free connection takes the lowest range nobody is working on, cut to one *piece*; when
none is left it *steals*: it splits the running range with the most bytes left and takes the upper
half, so one slow connection never holds the tail. A range whose connection made no progress for a
while is taken over whole. Handing pieces out in order keeps the finished prefix of the file growing,
which is what the streaming sha256 (:mod:`app.downloads.hasher`) follows.

Every method is thread-safe; connections call :meth:`SegmentScheduler.claim` before writing a chunk and
:meth:`SegmentScheduler.advance` after, so a split never hands out bytes a connection is writing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MIB = 1024 * 1024


@dataclass
class Segment:
    """Bytes ``[start, end)`` of the file; ``done`` bytes from ``start`` are on disk."""

    start: int
    end: int
    done: int = 0
    owner: int | None = field(default=None, compare=False)  # connection id (runtime only)
    inflight: int = field(default=0, compare=False)  # bytes being written right now
    touched: float = field(default=0.0, compare=False)  # monotonic time of the last progress

    @property
    def pos(self) -> int:
        """The next byte to fetch."""
        return self.start + self.done

    @property
    def remaining(self) -> int:
        """Bytes still to fetch."""
        return self.end - self.pos


@dataclass(frozen=True)
class SegmentPolicy:
    """How a file is cut up (tests shrink the sizes)."""

    connections: int = 8
    min_piece_bytes: int = 4 * MIB  # a range handed out is at least this long (unless the file ends)
    max_piece_bytes: int = 64 * MIB  # ...and at most this: the prefix hasher trails by about this much
    min_steal_bytes: int = 1 * MIB  # never split off less than this
    idle_takeover_s: float = 5.0  # a range without progress this long is taken over whole

    def piece_bytes(self, size: int) -> int:
        """Length of the ranges handed out for a file of ``size`` bytes (one range for one connection)."""
        if self.connections <= 1:
            return max(size, 1)
        # ~8 pieces per connection: the finished prefix keeps moving, and what is left to hash after the
        # last byte is about one piece per connection.
        eighth = size // (self.connections * 8)
        return max(self.min_piece_bytes, min(self.max_piece_bytes, eighth))


class SegmentScheduler:
    """Hands ranges of one file to connections; knows the bytes done and the finished prefix."""

    def __init__(
        self,
        size: int,
        policy: SegmentPolicy,
        segments: list[Segment] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._piece = policy.piece_bytes(size)
        self._segments = sorted(segments, key=lambda s: s.start) if segments else [Segment(0, size)]
        if not _is_partition(self._segments, size):
            self._segments = [Segment(0, size)]

    # -- handing out work --------------------------------------------------------------------------

    def acquire(self, owner: int) -> Segment | None:
        """A range for connection ``owner`` to fetch, or None when nothing is left to hand out."""
        with self._lock:
            now = self._clock()
            free = [s for s in self._segments if s.owner is None and s.remaining > 0]
            if free:
                seg = free[0]
                if seg.remaining > self._piece:
                    self._split(seg, seg.pos + self._piece)
                return self._give(seg, owner, now)
            running = [s for s in self._segments if s.owner is not None and s.remaining > 0]
            idle = [s for s in running if now - s.touched >= self.policy.idle_takeover_s and not s.inflight]
            if idle:
                return self._give(min(idle, key=lambda s: s.start), owner, now)  # its connection stalled
            if not running:
                return None
            victim = max(running, key=lambda s: s.remaining)
            busy_until = victim.pos + victim.inflight
            left = victim.end - busy_until
            if left < 2 * self.policy.min_steal_bytes:
                return None
            thief = self._split(victim, busy_until + left // 2)
            return self._give(thief, owner, now)

    def can_assign(self) -> bool:
        """Whether :meth:`acquire` would hand out something now (a free, idle or splittable range)."""
        with self._lock:
            now = self._clock()
            for s in self._segments:
                if s.remaining <= 0:
                    continue
                if s.owner is None or (now - s.touched >= self.policy.idle_takeover_s and not s.inflight):
                    return True
                if s.end - (s.pos + s.inflight) >= 2 * self.policy.min_steal_bytes:
                    return True
            return False

    def release(self, seg: Segment, owner: int) -> None:
        """Connection ``owner`` stops working on ``seg`` (done, error or stop); its progress stays."""
        with self._lock:
            if seg.owner == owner:
                seg.owner = None
                seg.inflight = 0
            self._merge_done()

    def claim(self, seg: Segment, owner: int, nbytes: int) -> int:
        """How many of the next ``nbytes`` at ``seg.pos`` connection ``owner`` may write (0: stop,
        the range was finished, shortened below this point or taken over)."""
        with self._lock:
            if seg.owner != owner:
                return 0
            allowed = max(0, min(nbytes, seg.remaining))
            seg.inflight = allowed
            return allowed

    def advance(self, seg: Segment, owner: int, nbytes: int) -> None:
        """``nbytes`` claimed by ``owner`` are now on disk at ``seg.pos``."""
        with self._lock:
            seg.inflight = 0
            if seg.owner == owner:
                seg.done = min(seg.done + nbytes, seg.end - seg.start)
                seg.touched = self._clock()

    def reset(self, connections: int | None = None) -> None:
        """Forget every byte (the file restarts from zero), optionally with another connection count."""
        with self._lock:
            if connections is not None:
                self.policy = SegmentPolicy(
                    connections,
                    self.policy.min_piece_bytes,
                    self.policy.max_piece_bytes,
                    self.policy.min_steal_bytes,
                    self.policy.idle_takeover_s,
                )
                self._piece = self.policy.piece_bytes(self.size)
            self._segments = [Segment(0, self.size)]

    # -- queries -----------------------------------------------------------------------------------

    def prefix(self) -> int:
        """The lowest byte not yet on disk: everything before it is final (what the hasher may read)."""
        with self._lock:
            for seg in self._segments:
                if seg.remaining > 0:
                    return seg.pos
            return self.size

    def done_bytes(self) -> int:
        """Bytes on disk in total."""
        with self._lock:
            return sum(s.done for s in self._segments)

    def complete(self) -> bool:
        """Whether every byte is on disk."""
        return self.done_bytes() == self.size

    def has_work(self) -> bool:
        """Whether some range is unfinished and nobody is fetching it."""
        with self._lock:
            return any(s.owner is None and s.remaining > 0 for s in self._segments)

    def snapshot(self) -> list[tuple[int, int, int]]:
        """``(start, end, done)`` of every range, finished neighbours merged (what the record keeps)."""
        with self._lock:
            return [(s.start, s.end, s.done) for s in self._segments]

    # -- internals (lock held) ---------------------------------------------------------------------

    def _give(self, seg: Segment, owner: int, now: float) -> Segment:
        seg.owner = owner
        seg.inflight = 0
        seg.touched = now
        return seg

    def _split(self, seg: Segment, at: int) -> Segment:
        """Cut ``seg`` at ``at`` (>= its next byte); returns the new, unowned upper range."""
        upper = Segment(at, seg.end)
        seg.end = at
        self._segments.insert(self._segments.index(seg) + 1, upper)
        return upper

    def _merge_done(self) -> None:
        """Fold finished, unowned ranges into a finished neighbour so the record stays short."""
        merged: list[Segment] = []
        for seg in self._segments:
            prev = merged[-1] if merged else None
            finished = seg.remaining == 0 and seg.owner is None
            if prev is not None and finished and prev.remaining == 0 and prev.owner is None:
                prev.end = seg.end
                prev.done = prev.end - prev.start
                continue
            merged.append(seg)
        self._segments = merged


def _is_partition(segments: list[Segment], size: int) -> bool:
    """Whether the ranges cover ``[0, size)`` exactly, in order, with sane progress."""
    at = 0
    for seg in segments:
        if seg.start != at or seg.end <= seg.start or not 0 <= seg.done <= seg.end - seg.start:
            return False
        at = seg.end
    return at == size and (size > 0 or not segments)


class ConnectionBudget:
    """A cap on connections across every file of the process (``jobs x connections`` stays sane).

    Each file takes its first connection with :meth:`acquire` (waits), extra ones with
    :meth:`try_acquire` (never waits), and gives each back with :meth:`release`.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._used = 0
        self._cond = threading.Condition()

    def acquire(self, stop: threading.Event) -> bool:
        """Wait for a connection; False when ``stop`` was set meanwhile."""
        with self._cond:
            while self._used >= self.limit:
                if stop.is_set():
                    return False
                self._cond.wait(0.1)
            self._used += 1
            return True

    def try_acquire(self) -> bool:
        """Take a connection if one is free now."""
        with self._cond:
            if self._used >= self.limit:
                return False
            self._used += 1
            return True

    def release(self) -> None:
        """Give a connection back."""
        with self._cond:
            self._used = max(0, self._used - 1)
            self._cond.notify()

    @property
    def in_use(self) -> int:
        """Connections held right now."""
        with self._cond:
            return self._used
