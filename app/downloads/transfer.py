"""One file's transfer: byte ranges over several connections, resumable per segment, sha256 on the fly.

huggingface_hub (2.4.0) deletes its ``*.incomplete`` file on failure and never resumes across calls, so
QuantDesk streams the bytes itself (see :mod:`app.downloads.ranged_get`). A file of at least
``segment_threshold_bytes`` is fetched over ``connections`` connections at once (the CDN caps what one
connection carries); :mod:`app.downloads.segments` decides which bytes each fetches and steals work
for connections that run dry. The ``.part`` is the whole file, reserved at its full size up front (so
a full disk shows at the start) and written at offsets: nothing is reassembled. Its record holds each
segment's progress, refreshed after every chunk, so whatever breaks (FIN, RST, 5xx, a stall, pause, a
crash, kill -9) every segment resumes where its bytes on disk end. The sha256 follows the finished
prefix while the bytes arrive (:mod:`app.downloads.hasher`), so verification ends right after the last
byte. A server that ignores ranges gets one connection; bytes whose validator (X-Linked-Etag/ETag)
changed since they were fetched are thrown away and the file starts over.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx2
from huggingface_hub import hf_hub_url, hf_raise_for_status
from huggingface_hub.utils._headers import build_hf_headers

from app import errors
from app.catalog.hub_client import HubClient
from app.downloads.hasher import PrefixHasher
from app.downloads.progress import FileStatus
from app.downloads.ranged_get import Body, HttpStatus, RangeClient, TooManyRedirects, UnsupportedProxy
from app.downloads.ranged_get import same_origin as same_origin
from app.downloads.segments import MIB, ConnectionBudget, Segment, SegmentPolicy, SegmentScheduler
from app.downloads.state import FolderState, PartState, PartStateWriter, PlannedFile

DEFAULT_CONNECTIONS = 8
MAX_CONNECTIONS = 16  # per file
PROCESS_MAX_CONNECTIONS = 32  # across files: the default 4 jobs x 8 connections, no more
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NO_FALLOCATE_ERRNOS = {errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS}
# Every transfer of the process shares this cap, so jobs x connections stays within what is sane.
PROCESS_CONNECTIONS = ConnectionBudget(PROCESS_MAX_CONNECTIONS)


def preallocate(fd: int, size: int) -> None:
    """Reserve ``size`` bytes for the file (ENOSPC now rather than at 90 %); sparse where unsupported."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in _NO_FALLOCATE_ERRNOS:
                raise
    if os.fstat(fd).st_size < size:
        os.ftruncate(fd, size)


@dataclass
class TransferSettings:
    """Knobs of one file transfer (tests shrink the sizes and timings)."""

    stall_timeout_s: float = 30.0  # no byte for this long on a connection: drop it and resume
    connect_timeout_s: float = 15.0
    max_failures: int = 6  # consecutive attempts of a connection that got no byte at all
    backoff_base_s: float = 0.5  # doubled per failure without progress
    backoff_max_s: float = 15.0
    verify_retries: int = 1  # after a sha256 mismatch: start over from zero this many times
    fsync: bool = True  # flush the verified file to disk before it is renamed into place
    segment_threshold_bytes: int = 16 * MIB  # smaller files use one connection
    min_piece_bytes: int = 4 * MIB
    max_piece_bytes: int = 64 * MIB
    min_steal_bytes: int = 1 * MIB
    idle_takeover_s: float = 5.0  # a connection without a byte this long loses its range to a free one
    buffer_bytes: int = 1 * MIB  # one reused receive buffer per connection
    record_every_s: float = 0.01  # refresh the segment record at most this often
    budget: ConnectionBudget = field(default_factory=lambda: PROCESS_CONNECTIONS)
    pwrite: Callable[[int, memoryview, int], int] = os.pwrite  # seams for disk-full tests
    allocate: Callable[[int, int], None] = preallocate


class TransferInterrupted(Exception):
    """The stop event was set (pause or cancel): the ``.part`` and its record are kept."""


class TransferHooks(Protocol):
    """Where a transfer reports to (the manager's progress tracker)."""

    def bytes_written(self, path: str, nbytes: int) -> None:
        """``nbytes`` more bytes of ``path`` are on disk."""

    def status(self, path: str, status: FileStatus, message: str = "", done_bytes: int | None = None) -> None:
        """The file's status changed (``done_bytes`` resets the count, e.g. after a restart from zero)."""

    def connections(self, path: str, count: int) -> None:
        """``count`` connections are fetching ``path`` now."""


class _Retryable(Exception):
    def __init__(self, error: errors.QuantDeskError, progressed: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.progressed = progressed


class _Restart(Exception):
    """Throw the bytes away and fetch the file again (validator changed, or ranges are ignored)."""

    def __init__(self, reason: str, single: bool = False) -> None:
        super().__init__(reason)
        self.single = single


class FileTransfer:
    """Downloads one planned file into ``.part``, verifies it, and moves it into place."""

    def __init__(
        self,
        *,
        repo_id: str,
        branch: str,
        commit: str,
        planned: PlannedFile,
        folder: FolderState,
        client: HubClient,
        hooks: TransferHooks,
        stop: threading.Event,
        settings: TransferSettings | None = None,
        connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        self.repo_id = repo_id
        self.branch = branch
        self.commit = commit
        self.planned = planned
        self.folder = folder
        self.client = client
        self.hooks = hooks
        self.stop = stop
        self.settings = settings or TransferSettings()
        self.endpoint = client.endpoint
        self.url = hf_hub_url(repo_id, planned.path, revision=commit, endpoint=self.endpoint)
        self.part = folder.part_path(planned.path)
        self.final = folder.final_path(planned.path)
        big = planned.size >= self.settings.segment_threshold_bytes
        self.connections = max(1, min(MAX_CONNECTIONS, connections)) if big else 1
        self._single = False  # the server ignores ranges: one connection, no Range header
        self._validator = ""

    # -- public ---------------------------------------------------------------------------------------

    def run(self) -> None:
        """Fetch, verify and place the file. Raises a QuantDeskError, or TransferInterrupted on stop."""
        fresh_starts = restarts = 0
        while True:
            try:
                digest = _Attempt(self).run()
            except _Restart as restart:
                restarts += 1
                if restarts > 3:
                    raise errors.DownloadError(
                        f"{self.planned.path} of {self.repo_id} kept changing on the server.",
                        "Try again later.",
                    ) from restart
                self._single = self._single or restart.single
                self.folder.discard_part(self.planned.path)
                self.hooks.status(self.planned.path, FileStatus.RUNNING, str(restart), 0)
                continue
            self.hooks.status(self.planned.path, FileStatus.VERIFYING)
            problem = self._verify(digest)
            if problem is None:
                self._place()
                self.hooks.status(self.planned.path, FileStatus.DONE, done_bytes=self.planned.size)
                return
            # Bytes on disk are wrong somewhere: no way to know where, so start over from zero.
            self.folder.discard_part(self.planned.path)
            fresh_starts += 1
            if fresh_starts > self.settings.verify_retries:
                raise errors.VerificationError(
                    f"{self.planned.path} of {self.repo_id} failed verification twice ({problem}).",
                    "The download or the Hub's copy is corrupt; the partial file was deleted. "
                    "Try again later.",
                )
            self.hooks.status(
                self.planned.path, FileStatus.RUNNING, f"verification failed ({problem}); retrying", 0
            )

    # -- resume bookkeeping ---------------------------------------------------------------------------

    def adopt_segments(self) -> list[Segment] | None:
        """The segments of a ``.part`` from an earlier run, if its record says it holds these very bytes;
        otherwise the part is discarded and None returned."""
        state = self.folder.load_part_state(self.planned.path)
        try:
            have = self.part.stat().st_size
        except FileNotFoundError:
            return None
        if state is None or not state.matches(self.planned) or have > self.planned.size:
            self.folder.discard_part(self.planned.path)
            return None
        self._validator = state.validator
        if not state.segments:  # the single-connection format: the part's length is the progress
            return [Segment(0, self.planned.size, have)]
        # A segment's bytes count only where the part really has them (a truncated part loses the rest).
        return [Segment(s, e, max(0, min(d, have - s))) for s, e, d in state.segments]

    def new_state(self, segments: list[tuple[int, int, int]]) -> PartState:
        """The record for this file with these segments."""
        p = self.planned
        state = PartState(self.url, self.commit, p.path, p.size, p.sha256, validator=self._validator)
        state.segments = [list(s) for s in segments]
        state.bytes_done = sum(s[2] for s in segments)
        return state

    def check_validator(self, body: Body) -> None:
        """Raise _Restart when the bytes now come with another validator than the ones on disk."""
        if not body.validator:
            return
        if not self._validator:
            self._validator = body.validator
        elif body.validator != self._validator:
            old, self._validator = self._validator, body.validator
            raise _Restart(
                f"{self.planned.path} changed on the server ({old} -> {body.validator}); restarting"
            )

    def request_headers(self) -> dict[str, str]:
        """User agent and token (the token is stripped for other origins); identity encoding so offsets
        are offsets into the file."""
        headers = dict(build_hf_headers(token=self.client.token or False))
        headers["Accept-Encoding"] = "identity"
        return headers

    def http_error(self, exc: HttpStatus) -> Exception:
        """The QuantDesk error for an HTTP error answer, wrapped in _Retryable when worth retrying."""
        request = httpx2.Request("GET", exc.url)
        response = httpx2.Response(exc.status, headers=exc.headers, content=exc.body, request=request)
        try:
            hf_raise_for_status(response)
        except Exception as raised:
            mapped, transient = self.client.map_error(raised, self.repo_id, self.branch)
            if transient and isinstance(mapped, errors.QuantDeskError):
                return _Retryable(mapped, progressed=False)
            return mapped
        return errors.DownloadError(f"Unexpected answer {exc.status} for {self.planned.path}.")

    def disk_error(self, exc: OSError) -> errors.QuantDeskError:
        """The error for a failed write or reservation of the part."""
        if exc.errno in _DISK_FULL_ERRNOS:
            return errors.DiskFullError(
                f"The disk is full (while writing {self.planned.path} to {self.part.parent}).",
                "Free some space, then resume: the bytes already downloaded are kept.",
                detail=str(exc),
            )
        return errors.DownloadError(
            f"Could not write {self.planned.path}: {exc.strerror or exc}.", detail=str(exc)
        )

    # -- verification ---------------------------------------------------------------------------------

    def _verify(self, digest: str | None) -> str | None:
        """None when the part is right, else what is wrong (for the error message)."""
        size = self.part.stat().st_size
        if size != self.planned.size:
            return f"{size} bytes instead of {self.planned.size}"
        if self.planned.sha256 is not None and digest != self.planned.sha256:
            return f"sha256 {(digest or '?')[:12]}… instead of {self.planned.sha256[:12]}…"
        return None

    def _place(self) -> None:
        """Atomically move the verified part to its final name (fsync first, so a crash right after
        the rename cannot leave a file of the right name with missing bytes)."""
        if self.settings.fsync:
            fd = os.open(self.part, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.part, self.final)
        with contextlib.suppress(FileNotFoundError):
            self.folder.part_state_path(self.planned.path).unlink()


class _Attempt:
    """One pass over the file: open the part, run the connections until every byte is on disk."""

    def __init__(self, transfer: FileTransfer) -> None:
        self.t = transfer
        s = transfer.settings
        self.size = transfer.planned.size
        connections = 1 if transfer._single else transfer.connections
        policy = SegmentPolicy(
            connections, s.min_piece_bytes, s.max_piece_bytes, s.min_steal_bytes, s.idle_takeover_s
        )
        self.sched = SegmentScheduler(self.size, policy, transfer.adopt_segments())
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.clients: dict[int, RangeClient] = {}
        self.threads: list[threading.Thread] = []
        self.last_record = 0.0
        self.next_id = 0

    def run(self) -> str | None:
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
                seg = self.sched.acquire(wid)
                if seg is None:
                    return
                try:
                    self._fetch(client, seg, wid, buffer)
                    failures = 0
                except _Retryable as retry:
                    failures = 0 if retry.progressed else failures + 1
                    if failures > t.settings.max_failures:
                        raise retry.error from retry
                    self.sched.release(seg, wid)
                    seg = None
                    delay = (
                        0.05
                        if retry.progressed
                        else min(t.settings.backoff_max_s, t.settings.backoff_base_s * 2 ** (failures - 1))
                    )
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
            end = None if t._single or seg.end == self.size else seg.end
            body = client.open(t.url, t.endpoint, t.request_headers(), start, end)
        except HttpStatus as exc:
            if exc.status == 416:
                raise _Restart(
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
                raise _Restart(
                    f"the server ignores byte ranges; fetching {t.planned.path} over one connection",
                    single=True,
                )
            if body.status == 206 and body.start != start:
                raise _Retryable(
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
            raise _Retryable(
                errors.NetworkError(f"The connection closed early while fetching {t.planned.path}."),
                progressed=written > 0,
            )
        client.finish(body) if body.left == 0 else client.discard(body)

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
        with self.lock:
            if now - self.last_record < self.t.settings.record_every_s or self.writer is None:
                return
            self.last_record = now
            self.writer.state.validator = self.t._validator
            self.writer.update(self.sched.snapshot())

    def _network_error(self, exc: BaseException, progressed: bool) -> _Retryable:
        path = self.t.planned.path
        if isinstance(exc, TimeoutError):
            message = f"No data for {self.t.settings.stall_timeout_s:g} s while fetching {path}."
            return _Retryable(errors.NetworkError(message), progressed)
        return _Retryable(
            errors.NetworkError(
                f"The connection broke while fetching {path}.", detail=f"{exc.__class__.__name__}: {exc}"
            ),
            progressed,
        )
