"""A sha256 that follows the finished prefix of a file being written at many offsets at once.

Connections finish bytes out of order, but sha256 must see them in order. This thread hashes, from
the file itself (still in the page cache), every byte below the scheduler's lowest unfinished offset
as soon as that offset moves. Pieces are handed out in order, so the prefix trails the download by a
few pieces and :meth:`PrefixHasher.digest` returns within moments of the last byte instead of
re-reading the whole file. hashlib releases the GIL on large updates, so hashing runs beside the
connections on another core.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable

_BLOCK = 4 * 1024 * 1024
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", None) if hasattr(os, "posix_fadvise") else None


class PrefixHasher:
    """Hashes ``path`` up to ``prefix()`` as it grows; :meth:`digest` waits for the whole file."""

    def __init__(self, path: str, size: int, prefix: Callable[[], int], poll_s: float = 0.02) -> None:
        self.path = path
        self.size = size
        self._prefix = prefix
        self._poll_s = poll_s
        self._hash = hashlib.sha256()
        self.hashed = 0
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="download-sha256", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """The prefix may have moved: look now rather than at the next poll."""
        self._wake.set()

    def digest(self, stop: threading.Event) -> str | None:
        """The hex sha256 of the whole file once every byte is hashed; None when ``stop`` was set first.
        Raises the OSError that reading the file met."""
        while self._thread.is_alive():
            if stop.is_set():
                return None
            self._wake.set()
            self._thread.join(0.05)
        if self._error is not None:
            raise self._error
        return self._hash.hexdigest() if self.hashed >= self.size else None

    def close(self) -> None:
        """Stop the thread (the transfer paused or failed)."""
        self._closed.set()
        self._wake.set()
        self._thread.join(5)

    def _run(self) -> None:
        buffer = bytearray(_BLOCK)
        view = memoryview(buffer)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            self._error = exc
            return
        try:
            while self.hashed < self.size and not self._closed.is_set():
                target = self._prefix()
                # Hash in whole blocks while the prefix moves; the last stretch as soon as it is final.
                if target - self.hashed >= _BLOCK or (target == self.size and target > self.hashed):
                    n = os.preadv(fd, [view[: min(_BLOCK, target - self.hashed)]], self.hashed)
                    if n <= 0:
                        raise OSError(f"{self.path} is shorter than expected")
                    self._hash.update(view[:n])
                    if _DONTNEED is not None:
                        # Start writing the hashed block to disk now (the final fsync then has little
                        # left) and let the page cache drop it once written: a 35 GB file need not
                        # crowd out everything else the machine caches.
                        os.posix_fadvise(fd, self.hashed, n, _DONTNEED)
                    self.hashed += n
                    continue
                self._wake.wait(self._poll_s)
                self._wake.clear()
        except OSError as exc:
            self._error = exc
        finally:
            os.close(fd)
