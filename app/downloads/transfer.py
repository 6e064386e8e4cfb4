"""One file's transfer: byte ranges over several connections, resumable per segment, sha256 on the fly.

huggingface_hub (2.4.0) deletes its ``*.incomplete`` file on failure and never resumes across calls, so
QuantDesk streams the bytes itself (see :mod:`app.downloads.ranged_get`). A file of at least
``segment_threshold_bytes`` is fetched over ``connections`` connections at once (the CDN caps what one
connection carries); :mod:`app.downloads.segments` decides which bytes each fetches and steals work
for connections that run dry; :mod:`app.downloads.connections` runs them. The ``.part`` is the whole
file, reserved at its full size up front (so a full disk shows at the start) and written at offsets:
nothing is reassembled. Its record holds each
segment's progress, refreshed after every chunk, so whatever breaks (FIN, RST, 5xx, a stall, pause, a
crash, kill -9) every segment resumes where its bytes on disk end. The sha256 follows the finished
prefix while the bytes arrive (:mod:`app.downloads.hasher`), so verification ends right after the last
byte. A server that ignores ranges gets one connection; bytes whose validator (X-Linked-Etag/ETag)
changed since they were fetched are thrown away and the file starts over.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx2
from huggingface_hub import hf_hub_url, hf_raise_for_status
from huggingface_hub.utils._headers import build_hf_headers

from app import errors
from app.catalog.hub_client import HubClient
from app.downloads.connections import ConnectionRun, Restart, Retryable, TransferInterrupted
from app.downloads.progress import FileStatus
from app.downloads.ranged_get import Body, HttpStatus
from app.downloads.ranged_get import same_origin as same_origin
from app.downloads.segments import MIB, ConnectionBudget, Segment
from app.downloads.state import FolderState, PartState, PlannedFile
from app.retry import retry_after_from

__all__ = ["FileTransfer", "TransferHooks", "TransferInterrupted", "TransferSettings", "preallocate"]

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


class TransferHooks(Protocol):
    """Where a transfer reports to (the manager's progress tracker)."""

    def bytes_written(self, path: str, nbytes: int) -> None:
        """``nbytes`` more bytes of ``path`` are on disk."""

    def status(self, path: str, status: FileStatus, message: str = "", done_bytes: int | None = None) -> None:
        """The file's status changed (``done_bytes`` resets the count, e.g. after a restart from zero)."""

    def connections(self, path: str, count: int) -> None:
        """``count`` connections are fetching ``path`` now."""


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
        self.single_connection = False  # the server ignores ranges: one connection, no Range header
        self.validator = ""
        self._headers: dict[str, str] | None = None

    # -- public ---------------------------------------------------------------------------------------

    def run(self) -> None:
        """Fetch, verify and place the file. Raises a QuantDeskError, or TransferInterrupted on stop."""
        fresh_starts = restarts = 0
        while True:
            try:
                digest = ConnectionRun(self).run()
            except Restart as restart:
                restarts += 1
                if restarts > 3:
                    raise errors.DownloadError(
                        f"{self.planned.path} of {self.repo_id} kept changing on the server.",
                        "Try again later.",
                    ) from restart
                self.single_connection = self.single_connection or restart.single
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
        self.validator = state.validator
        if not state.segments:  # the single-connection format: the part's length is the progress
            return [Segment(0, self.planned.size, have)]
        # A segment's bytes count only where the part really has them (a truncated part loses the rest).
        return [Segment(s, e, max(0, min(d, have - s))) for s, e, d in state.segments]

    def new_state(self, segments: list[tuple[int, int, int]]) -> PartState:
        """The record for this file with these segments."""
        p = self.planned
        state = PartState(self.url, self.commit, p.path, p.size, p.sha256, validator=self.validator)
        state.segments = [list(s) for s in segments]
        state.bytes_done = sum(s[2] for s in segments)
        return state

    def check_validator(self, body: Body) -> None:
        """Raise Restart when the bytes now come with another validator than the ones on disk."""
        if not body.validator:
            return
        if not self.validator:
            self.validator = body.validator
        elif body.validator != self.validator:
            old, self.validator = self.validator, body.validator
            raise Restart(
                f"{self.planned.path} changed on the server ({old} -> {body.validator}); restarting"
            )

    def request_headers(self) -> dict[str, str]:
        """User agent and token (the token is stripped for other origins); identity encoding so offsets
        are offsets into the file."""
        if self._headers is None:  # built once: huggingface_hub takes about a millisecond per call
            headers = dict(build_hf_headers(token=self.client.token or False))
            headers["Accept-Encoding"] = "identity"
            self._headers = headers
        return dict(self._headers)

    def http_error(self, exc: HttpStatus) -> Exception:
        """The QuantDesk error for an HTTP error answer, wrapped in Retryable when worth retrying."""
        request = httpx2.Request("GET", exc.url)
        response = httpx2.Response(exc.status, headers=exc.headers, content=exc.body, request=request)
        try:
            hf_raise_for_status(response)
        except Exception as raised:
            mapped, transient = self.client.map_error(raised, self.repo_id, self.branch)
            if transient and isinstance(mapped, errors.QuantDeskError):
                asked = retry_after_from({name.lower(): value for name, value in exc.headers})
                return Retryable(mapped, progressed=False, retry_after=asked)
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
