"""The connections of one file's transfer: workers that fetch ranges, write them at their offsets, and
keep the segment record and the prefix hash going; a coordinator that starts them (within the process's
connection cap), tops them up for work stealing, and stops them all at once on pause, error or the end.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import threading
import time
from typing import TYPE_CHECKING

from app import errors
from app.downloads.hasher import PrefixHasher
from app.downloads.progress import FileStatus
from app.downloads.ranged_get import (
    Body,
    HttpStatus,
    RangeClient,
    TooManyRedirects,
    UnsupportedProxy,
    same_origin,
)
from app.downloads.segments import Segment, SegmentPolicy, SegmentScheduler
from app.downloads.state import PartStateWriter
from app.retry import BackoffPolicy

if TYPE_CHECKING:
    from app.downloads.transfer import FileTransfer


class TransferInterrupted(Exception):
    """The stop event was set (pause or cancel): the ``.part`` and its record are kept."""


class Retryable(Exception):
    """A connection met trouble worth another try (``progressed``: it got bytes before)."""

    def __init__(
        self, error: errors.QuantDeskError, progressed: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.progressed = progressed
        self.retry_after = retry_after  # the server's Retry-After (429/503), in seconds


class Restart(Exception):
    """Throw the bytes away and fetch the file again (validator changed, or ranges are ignored)."""

    def __init__(self, reason: str, single: bool = False) -> None:
        super().__init__(reason)
        self.single = single


class ConnectionRun:
    """One pass over the file: open the part, run the connections until every byte is on disk."""

    def __init__(self, transfer: FileTransfer) -> None:
        self.t = transfer
        s = transfer.settings
        self.size = transfer.planned.size
        connections = 1 if transfer.single_connection else transfer.connections
        policy = SegmentPolicy(
            connections, s.min_piece_bytes, s.max_piece_bytes, s.min_steal_bytes, s.idle_takeover_s
        )
        self.sched = SegmentScheduler(self.size, policy, transfer.adopt_segments())
        self.halt = threading.Event()
        self.lock = threading.Lock()
        # A Retry-After holds every connection of the file, not just the one that was told (monotonic).
        self.quiet_until = 0.0
        self.error: BaseException | None = None
        self.clients: dict[int, RangeClient] = {}
        self.threads: list[threading.Thread] = []
        self.last_record = 0.0
        self.next_id = 0
        # The CDN address the Hub redirected to, and its validator: later ranges go there straight, saving
        # a round trip to the Hub per piece (dropped when the CDN refuses it, e.g. an expired signature).
        self.direct: tuple[str, str] | None = None

    def run(self) -> str | None:
        """Fetch every missing byte; returns the sha256 (None for a file without one). Raises
        TransferInterrupted on stop, Restart, or the first connection's error."""
        t = self.t
        path = t.planned.path
        if t.stop.is_set():
            raise TransferInterrupted
        t.part.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(t.part, os.O_RDWR | os.O_CREAT, 0o644)
        hasher: PrefixHasher | None = None
        self.writer: PartStateWriter | None = None
        try:
            try:
                t.settings.allocate(self.fd, self.size)
            except OSError as exc:
                raise t.disk_error(exc) from exc
            self.writer = PartStateWriter(t.folder, path, t.new_state(self.sched.snapshot()))
            t.hooks.status(path, FileStatus.RUNNING, done_bytes=self.sched.done_bytes())
            if t.planned.sha256 is not None:
                hasher = PrefixHasher(str(t.part), self.size, self.sched.prefix)
            self._run_connections()
            if hasher is None:
                return None
            digest = hasher.digest(t.stop)
            if digest is None:
                raise TransferInterrupted
            return digest
        finally:
            if hasher is not None:
                hasher.close()
            if self.writer is not None:
                with contextlib.suppress(OSError):
                    self.writer.update(self.sched.snapshot())
                self.writer.close()
            os.close(self.fd)

    # -- the connections -----------------------------------------------------------------------------

    def _run_connections(self) -> None:
        t = self.t
        budget = t.settings.budget
        if not self.sched.complete():
            if not budget.acquire(t.stop):
                raise TransferInterrupted
            self._spawn()
        try:
            while not self.halt.is_set():
                if t.stop.is_set() or self.sched.complete():
                    break
                alive = sum(th.is_alive() for th in self.threads)
                # Top up: free pieces at the start, a range to steal or to take over near the end.
                wanted = self.sched.policy.connections
                while alive < wanted and self.sched.can_assign() and budget.try_acquire():
                    self._spawn()
                    alive += 1
                if alive == 0 and not self.sched.complete():
                    if not budget.acquire(t.stop):
                        break
                    self._spawn()
                self.halt.wait(0.05)
        finally:
            self.halt.set()
            for client in list(self.clients.values()):
                client.abort()  # a stalled read must not keep a finished or paused file waiting
            for th in self.threads:
                th.join()
            t.hooks.connections(t.planned.path, 0)
        if self.error is not None:
            raise self.error
        if t.stop.is_set() or not self.sched.complete():
            raise TransferInterrupted

    def _spawn(self) -> None:
        self.next_id += 1
        client = RangeClient(
            connect_timeout_s=self.t.settings.connect_timeout_s,
            read_timeout_s=self.t.settings.stall_timeout_s,
        )
        self.clients[self.next_id] = client
        th = threading.Thread(
            target=self._worker, args=(self.next_id, client), name=f"download-{self.next_id}", daemon=True
        )
        self.threads.append(th)
        th.start()
        self.t.hooks.connections(self.t.planned.path, sum(x.is_alive() for x in self.threads))

    def _worker(self, wid: int, client: RangeClient) -> None:
        t = self.t
        buffer = memoryview(bytearray(t.settings.buffer_bytes))
        failures = 0
        seg: Segment | None = None
        try:
            while not self.halt.is_set():
                pause = self.quiet_until - time.monotonic()
                if pause > 0 and self.halt.wait(pause):
                    return
                seg = self.sched.acquire(wid)
                if seg is None:
                    return
                try:
                    self._fetch(client, seg, wid, buffer)
                    failures = 0
                except Retryable as retry:
                    if self.halt.is_set():
                        return  # stopped (pause, cancel, the file done): the failure is the abort's doing
                    failures = 0 if retry.progressed else failures + 1
                    policy = BackoffPolicy(
                        attempts=t.settings.max_failures + 1,
                        base_s=t.settings.backoff_base_s,
                        max_s=t.settings.backoff_max_s,
                    )
                    wait = 0.05 if retry.progressed else policy.delay(failures, retry.retry_after)
                    if wait is None:
                        if policy.too_long(retry.retry_after):
                            minutes = max(1, round((retry.retry_after or 0) / 60))
                            raise errors.HubServerError(
                                f"The Hub asks to wait {minutes} min before {t.planned.path} can continue.",
                                "What was fetched is kept: resume the download later.",
                            ) from retry
                        raise retry.error from retry
                    self.sched.release(seg, wid)
                    seg = None
                    delay = wait
                    if retry.retry_after is not None:
                        with self.lock:
                            self.quiet_until = max(self.quiet_until, time.monotonic() + wait)
                    t.hooks.status(t.planned.path, FileStatus.RUNNING, f"{retry.error.message} Retrying…")
                    self.halt.wait(delay)
                    continue
                self.sched.release(seg, wid)
                seg = None
        except BaseException as exc:
            with self.lock:
                if self.error is None and not self.halt.is_set():
                    self.error = exc  # the first failure; what others meet while stopping is noise
            self.halt.set()
        finally:
            if seg is not None:
                self.sched.release(seg, wid)
            client.close()
            t.settings.budget.release()
            self.t.hooks.connections(t.planned.path, sum(x.is_alive() for x in self.threads) - 1)

    def _fetch(self, client: RangeClient, seg: Segment, wid: int, buffer: memoryview) -> None:
        """Fetch ``seg`` from its next byte until it is done, shortened or taken over."""
        t = self.t
        start = seg.pos
        try:
            end = None if t.single_connection or seg.end == self.size else seg.end
            body = self._open(client, start, end)
        except HttpStatus as exc:
            if exc.status == 416:
                raise Restart(
                    f"the server has fewer bytes of {t.planned.path} than listed; restarting"
                ) from exc
            raise t.http_error(exc) from exc
        except TooManyRedirects as exc:
            raise errors.DownloadError(f"Too many redirects while fetching {t.planned.path}.") from exc
        except UnsupportedProxy as exc:
            raise errors.DownloadError(
                f"The proxy {exc} is not supported for downloads.", "Use an http:// proxy in HTTPS_PROXY."
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._network_error(exc, False) from exc
        written = 0
        try:
            t.check_validator(body)
            if body.status == 200 and (start > 0 or end is not None):
                raise Restart(
                    f"the server ignores byte ranges; fetching {t.planned.path} over one connection",
                    single=True,
                )
            if body.status == 206 and body.start != start:
                raise Retryable(
                    errors.DownloadError("The server answered a different byte range."), progressed=False
                )
            while True:
                try:
                    n = body.readinto(buffer)
                except (OSError, http.client.HTTPException) as exc:
                    raise self._network_error(exc, written > 0) from exc
                if n == 0:
                    break
                allowed = self.sched.claim(seg, wid, n)
                if allowed:
                    self._write(buffer[:allowed], seg.pos)
                    self.sched.advance(seg, wid, allowed)
                    written += allowed
                    t.hooks.bytes_written(t.planned.path, allowed)
                    self._record()
                if allowed < n or seg.remaining == 0:
                    break  # done, or the rest of this range went to another connection
        except BaseException:
            client.discard(body)
            raise
        if seg.remaining and seg.owner == wid and body.left != 0:
            client.discard(body)
            raise Retryable(
                errors.NetworkError(f"The connection closed early while fetching {t.planned.path}."),
                progressed=written > 0,
            )
        client.finish(body) if body.left == 0 else client.discard(body)

    def _open(self, client: RangeClient, start: int, end: int | None) -> Body:
        """Open bytes ``start..end`` at the CDN address already known, else through the Hub's redirect."""
        t = self.t
        direct = self.direct
        if direct is not None:
            try:
                body = client.open(direct[0], t.endpoint, t.request_headers(), start, end)
            except HttpStatus:
                if self.direct == direct:
                    self.direct = None  # expired or refused: the Hub hands out a fresh address below
            else:
                body.validator = direct[1]  # the address names these very bytes; the Hub vouched for them
                return body
        body = client.open(t.url, t.endpoint, t.request_headers(), start, end)
        if body.status == 206 and body.url != t.url and not same_origin(body.url, t.endpoint):
            self.direct = (body.url, body.validator)
        return body

    def _write(self, data: memoryview, offset: int) -> None:
        while data:
            try:
                n = self.t.settings.pwrite(self.fd, data, offset)
            except OSError as exc:
                raise self.t.disk_error(exc) from exc
            if n <= 0:
                raise self.t.disk_error(OSError(errno.EIO, "short write"))
            data, offset = data[n:], offset + n

    def _record(self) -> None:
        now = time.monotonic()
        if now - self.last_record < self.t.settings.record_every_s:
            return  # the common case, decided without the lock every connection would queue on
        with self.lock:
            if now - self.last_record < self.t.settings.record_every_s or self.writer is None:
                return
            self.last_record = now
            self.writer.state.validator = self.t.validator
            self.writer.update(self.sched.snapshot())

    def _network_error(self, exc: BaseException, progressed: bool) -> Retryable:
        path = self.t.planned.path
        if isinstance(exc, TimeoutError):
            message = f"No data for {self.t.settings.stall_timeout_s:g} s while fetching {path}."
            return Retryable(errors.NetworkError(message), progressed)
        return Retryable(
            errors.NetworkError(
                f"The connection broke while fetching {path}.", detail=f"{exc.__class__.__name__}: {exc}"
            ),
            progressed,
        )
