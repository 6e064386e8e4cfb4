"""One file's transfer: Range-resume over ``/resolve``, retries, stall detection, streaming sha256.

huggingface_hub (2.4.0) deletes its ``*.incomplete`` file on failure and never resumes across calls, so
QuantDesk streams the bytes itself and uses huggingface_hub for the URL, the headers (user agent,
token) and the HTTP client. The loop below keeps one invariant: the ``.part`` file holds a prefix of
the file's bytes, and nothing on disk is ever fetched twice, whatever breaks (FIN, RST, 5xx, a stall,
pause, a crash).

sha256 on resume: the running hash object cannot be persisted (hashlib has no serialisable state), so
when a transfer starts with bytes already in the ``.part`` (after a pause, a crash or a kill) it re-hashes
that prefix once from disk (~1.5 GB/s), then hashes new bytes as they arrive. Retries inside one run
keep the hash in memory and skip the re-read.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urljoin, urlsplit

import httpx2
from huggingface_hub import get_session, hf_hub_url, hf_raise_for_status
from huggingface_hub.utils._headers import build_hf_headers

from app import errors
from app.catalog.hub_client import HubClient
from app.downloads.progress import FileStatus
from app.downloads.state import FolderState, PartState, PlannedFile

_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 5
_HASH_BLOCK = 4 * 1024 * 1024
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def open_part_for_append(path: Path) -> BinaryIO:
    """Open a ``.part`` for appending, unbuffered: every byte ``write`` accepted is in the file, so its
    length is an exact resume point even after kill -9, and ENOSPC surfaces at the write that hit it."""
    return open(path, "ab", buffering=0)


@dataclass
class TransferSettings:
    """Knobs of one file transfer (tests shrink the timings)."""

    stall_timeout_s: float = 30.0  # no byte for this long: drop the connection and resume
    connect_timeout_s: float = 15.0
    max_failures: int = 6  # consecutive attempts that got no byte at all before giving up
    backoff_base_s: float = 0.5  # doubled per failure without progress
    backoff_max_s: float = 15.0
    state_every_bytes: int = 16 * 1024 * 1024  # refresh bytes_done in the record this often
    verify_retries: int = 1  # after a sha256/size mismatch: start over from zero this many times
    fsync: bool = True  # flush the verified file to disk before it is renamed into place
    open_part: Callable[[Path], BinaryIO] = field(default=open_part_for_append)


class TransferInterrupted(Exception):
    """The stop event was set (pause or cancel): the ``.part`` and its record are kept."""


class TransferHooks(Protocol):
    """Where a transfer reports to (the manager's progress tracker)."""

    def bytes_written(self, path: str, nbytes: int) -> None:
        """``nbytes`` more bytes of ``path`` are on disk."""

    def status(self, path: str, status: FileStatus, message: str = "", done_bytes: int | None = None) -> None:
        """The file's status changed (``done_bytes`` resets the count, e.g. after a restart from zero)."""


class _Retryable(Exception):
    def __init__(self, error: errors.QuantDeskError, progressed: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.progressed = progressed


class _RangeNotSatisfiable(Exception):
    pass


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs share scheme, host and port (the only place a token may be sent)."""
    sa, sb = urlsplit(a), urlsplit(b)
    default = {"http": 80, "https": 443}
    port_a = sa.port or default.get(sa.scheme.lower())
    port_b = sb.port or default.get(sb.scheme.lower())
    return (sa.scheme.lower(), (sa.hostname or "").lower(), port_a) == (
        sb.scheme.lower(),
        (sb.hostname or "").lower(),
        port_b,
    )


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
        self._hasher = hashlib.sha256()
        self._hashed = 0  # bytes of the .part covered by self._hasher
        self._last_state_save = 0

    # -- public ---------------------------------------------------------------------------------------

    def run(self) -> None:
        """Fetch, verify and place the file. Raises a QuantDeskError, or TransferInterrupted on stop."""
        self._adopt_existing_part()
        fresh_starts = 0
        while True:
            self._fetch_until_complete()
            self.hooks.status(self.planned.path, FileStatus.VERIFYING)
            problem = self._verify()
            if problem is None:
                self._place()
                self.hooks.status(self.planned.path, FileStatus.DONE, done_bytes=self.planned.size)
                return
            # Bytes on disk are wrong somewhere: no way to know where, so start over from zero.
            self.folder.discard_part(self.planned.path)
            self._reset_hash()
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

    def _adopt_existing_part(self) -> None:
        """Keep a ``.part`` from an earlier run only if its record says it holds these very bytes."""
        state = self.folder.load_part_state(self.planned.path)
        size = self._part_size()
        if size and (state is None or not state.matches(self.planned) or size > self.planned.size):
            self.folder.discard_part(self.planned.path)
            size = 0
        self.hooks.status(self.planned.path, FileStatus.RUNNING, done_bytes=size)
        self._save_state(size)

    def _part_size(self) -> int:
        try:
            return self.part.stat().st_size
        except FileNotFoundError:
            return 0

    def _save_state(self, done: int) -> None:
        state = PartState(
            self.url, self.commit, self.planned.path, self.planned.size, self.planned.sha256, done
        )
        self.folder.save_part_state(self.planned.path, state)
        self._last_state_save = done

    def _reset_hash(self) -> None:
        self._hasher = hashlib.sha256()
        self._hashed = 0

    def _sync_hash(self, have: int) -> None:
        """Make the running hash cover exactly the ``have`` bytes of the part (re-read once if needed)."""
        if self.planned.sha256 is None or self._hashed == have:
            return
        self._reset_hash()
        with self.part.open("rb") as fh:
            while self._hashed < have:
                block = fh.read(min(_HASH_BLOCK, have - self._hashed))
                if not block:
                    break
                self._hasher.update(block)
                self._hashed += len(block)

    # -- fetching -------------------------------------------------------------------------------------

    def _fetch_until_complete(self) -> None:
        failures = 0
        while True:
            if self.stop.is_set():
                raise TransferInterrupted
            have = self._part_size()
            if have > self.planned.size:
                self.folder.discard_part(self.planned.path)
                self._reset_hash()
                have = 0
            if have == self.planned.size and self.part.exists():
                self._sync_hash(have)
                return
            self._sync_hash(have)
            try:
                self._request(have)
                if self._part_size() == self.planned.size:
                    continue
                # A clean but short body (FIN mid-file): resume like any other cut.
                raise _Retryable(
                    errors.NetworkError(f"The connection closed early while fetching {self.planned.path}."),
                    progressed=self._part_size() > have,
                )
            except _RangeNotSatisfiable:
                # The server says our part is already as long as the file (or longer): check it as is.
                if have < self.planned.size:
                    self.folder.discard_part(self.planned.path)
                    self._reset_hash()
                continue
            except _Retryable as retry:
                failures = 0 if retry.progressed else failures + 1
                if failures > self.settings.max_failures:
                    raise retry.error from retry
                delay = (
                    0.05
                    if retry.progressed
                    else min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (failures - 1))
                )
                self.hooks.status(self.planned.path, FileStatus.RUNNING, f"{retry.error.message} Retrying…")
                if self.stop.wait(delay):
                    raise TransferInterrupted from None

    def _request(self, have: int) -> None:
        headers = dict(build_hf_headers(token=self.client.token or False))
        # Identity encoding: byte offsets must be offsets into the file, not into a compressed stream.
        headers["Accept-Encoding"] = "identity"
        if have:
            headers["Range"] = f"bytes={have}-"
        timeout = httpx2.Timeout(
            connect=self.settings.connect_timeout_s,
            read=self.settings.stall_timeout_s,
            write=self.settings.connect_timeout_s,
            pool=self.settings.connect_timeout_s,
        )
        url = self.url
        written = 0
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                # The token goes to the Hub's origin only, never to the CDN a redirect points at.
                sent = (
                    headers
                    if same_origin(url, self.endpoint)
                    else {k: v for k, v in headers.items() if k.lower() != "authorization"}
                )
                with get_session().stream(
                    "GET", url, headers=sent, follow_redirects=False, timeout=timeout
                ) as response:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code == 416:
                        raise _RangeNotSatisfiable
                    if response.status_code >= 400:
                        response.read()
                        self._raise_http_error(response)
                    start = self._start_offset(response, have)
                    written = self._write_body(response, start)
                    return
            raise errors.DownloadError(f"Too many redirects while fetching {self.planned.path}.")
        except httpx2.TimeoutException as exc:
            raise _Retryable(
                errors.NetworkError(
                    f"No data for {self.settings.stall_timeout_s:g} s while fetching {self.planned.path}."
                ),
                progressed=self._part_size() > have,
            ) from exc
        except httpx2.TransportError as exc:
            raise _Retryable(
                errors.NetworkError(
                    f"The connection broke while fetching {self.planned.path}.",
                    detail=f"{exc.__class__.__name__}: {exc}",
                ),
                progressed=self._part_size() > have or written > 0,
            ) from exc

    def _raise_http_error(self, response: httpx2.Response) -> None:
        try:
            hf_raise_for_status(response)
        except Exception as exc:
            mapped, transient = self.client.map_error(exc, self.repo_id, self.branch)
            if transient and isinstance(mapped, errors.QuantDeskError):
                raise _Retryable(mapped, progressed=False) from exc
            raise mapped from exc
        raise errors.DownloadError(f"Unexpected answer {response.status_code} for {self.planned.path}.")

    def _start_offset(self, response: httpx2.Response, have: int) -> int:
        """Where this body starts; truncates the part when the server sent the whole file instead."""
        if response.status_code == 206:
            content_range = response.headers.get("content-range", "")
            try:
                start = int(content_range.split(" ", 1)[1].split("-", 1)[0])
            except (IndexError, ValueError):
                start = -1
            if start != have:
                raise _Retryable(
                    errors.DownloadError(f"The server answered a different byte range ({content_range})."),
                    progressed=False,
                )
            return have
        if have:
            # 200 to a Range request: the server ignores ranges; keep the file consistent, start over.
            with self.part.open("r+b") as fh:
                fh.truncate(0)
            self._reset_hash()
            self.hooks.status(self.planned.path, FileStatus.RUNNING, done_bytes=0)
        return 0

    def _write_body(self, response: httpx2.Response, start: int) -> int:
        written = 0
        self.part.parent.mkdir(parents=True, exist_ok=True)
        fh = self.settings.open_part(self.part)
        try:
            # iter_raw yields bytes as they arrive: a fixed chunk size would hold back up to a chunk that a
            # cut then loses (and a server cutting every N < chunk bytes would never let us progress).
            for chunk in response.iter_raw():
                if self.stop.is_set():
                    raise TransferInterrupted
                if start + written + len(chunk) > self.planned.size:
                    raise _Retryable(
                        errors.DownloadError(f"The server sent more bytes than {self.planned.path} has."),
                        progressed=False,
                    )
                self._write_all(fh, chunk, start + written)
                if self.planned.sha256 is not None:
                    self._hasher.update(chunk)
                    self._hashed += len(chunk)
                written += len(chunk)
                self.hooks.bytes_written(self.planned.path, len(chunk))
                if start + written - self._last_state_save >= self.settings.state_every_bytes:
                    self._save_state(start + written)
        finally:
            fh.close()
            with contextlib.suppress(OSError):
                self._save_state(start + written)
        return written

    def _write_all(self, fh: BinaryIO, chunk: bytes, offset: int) -> None:
        view = memoryview(chunk)
        try:
            while view:
                n = fh.write(view)
                if n is None or n <= 0:
                    raise OSError(errno.EIO, "short write")
                view = view[n:]
        except OSError as exc:
            # Cut back to the last whole chunk so the part stays an exact prefix of the file.
            with contextlib.suppress(OSError), self.part.open("r+b") as raw:
                raw.truncate(offset)
            if exc.errno in _DISK_FULL_ERRNOS:
                raise errors.DiskFullError(
                    f"The disk is full (while writing {self.planned.path} to {self.part.parent}).",
                    "Free some space, then resume: the bytes already downloaded are kept.",
                    detail=str(exc),
                ) from exc
            raise errors.DownloadError(
                f"Could not write {self.planned.path}: {exc.strerror or exc}.", detail=str(exc)
            ) from exc

    # -- verification ---------------------------------------------------------------------------------

    def _verify(self) -> str | None:
        """None when the part is right, else what is wrong (for the error message)."""
        size = self._part_size()
        if size != self.planned.size:
            return f"{size} bytes instead of {self.planned.size}"
        if self.planned.sha256 is not None:
            self._sync_hash(size)
            digest = self._hasher.hexdigest()
            if digest != self.planned.sha256:
                return f"sha256 {digest[:12]}… instead of {self.planned.sha256[:12]}…"
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
