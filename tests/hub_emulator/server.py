"""A local emulator of the Hugging Face Hub HTTP API, for tests.

Two stdlib HTTP/1.1 servers on 127.0.0.1: the "hub" (``/api/models/...`` and ``/{repo}/resolve/...``) and a
"cdn" on another port serving LFS blobs, so clients go through the same cross-origin 302 as with the real
Hub. Repos are read from a directory tree (see :mod:`tests.hub_emulator.repos`); faults (latency, 5xx,
throttling, stalls, truncated bodies, TCP resets, no range support) can be injected per request, or per
byte range, with :class:`Faults`. ``HubEmulator.link_bps`` caps the bandwidth all connections share (the
"link"), on top of any per-connection throttle, so more connections than the link allows gain nothing.
File bodies go out with ``os.sendfile`` so the emulator costs little CPU next to the client it serves.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import mimetypes
import os
import socket
import socketserver
import struct
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .faults import FaultCounters, Faults
from .repos import LFS_POINTER_SIZE, FileEntry, RepoStore, Snapshot
from .search import list_models

FIXED_DATE = "2024-01-01T00:00:00.000Z"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
_CHUNK = 64 * 1024
_SENDFILE_CHUNK = 1024 * 1024  # unpaced file bodies: big zero-copy steps, counted exactly
_TRUE = {"1", "true", "True", "yes"}


@dataclass
class LoggedRequest:
    """One answered request, as seen by the emulator."""

    server: str  # "hub" or "cdn"
    method: str
    path: str  # raw request path without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case keys
    status: int  # 0 when the connection broke before a status line was sent
    range: str | None  # the request's Range header
    bytes_sent: int  # body bytes actually written to the socket
    time: float  # time.time() when the request arrived
    duration_s: float = 0.0  # from arrival until the answer was sent (or the connection dropped)


@dataclass
class _Response:
    """What a route answers; the body is either bytes or a slice of a file streamed at send time."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: Path | None = None
    file_start: int = 0
    file_length: int = 0

    @property
    def length(self) -> int:
        return self.file_length if self.file is not None else len(self.body)


class _Unsatisfiable(Exception):
    """The Range header asks for bytes the resource doesn't have (-> 416)."""


def _json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> _Response:
    body = json.dumps(payload).encode()
    return _Response(status, [("Content-Type", "application/json; charset=utf-8"), *(headers or [])], body)


def _error(
    status: int, message: str, code: str | None = None, headers: list[tuple[str, str]] | None = None
) -> _Response:
    # huggingface_hub types its exceptions from X-Error-Code / X-Error-Message, not from the body.
    extra = [("X-Error-Message", message)]
    if code is not None:
        extra.insert(0, ("X-Error-Code", code))
    return _json_response(status, {"error": message}, [*extra, *(headers or [])])


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) for a single-range ``bytes=`` header; None means serve the whole body.

    Malformed or multi-range headers are ignored (allowed by RFC 9110); ranges outside the resource raise
    :class:`_Unsatisfiable`.
    """
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0 or size == 0:
                raise _Unsatisfiable
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else None
    except ValueError:
        return None
    if start < 0 or (end is not None and end < start):
        return None  # syntactically invalid: ignored, not 416
    if start >= size:
        raise _Unsatisfiable
    return start, size - 1 if end is None else min(end, size - 1)


def _file_response(
    path: Path, size: int, range_header: str | None, headers: list[tuple[str, str]], content_type: str
) -> _Response:
    """200 or 206 (or 416) for a file on disk, with the range headers clients rely on to resume."""
    base = [*headers, ("Accept-Ranges", "bytes"), ("Content-Type", content_type)]
    try:
        span = _parse_range(range_header, size)
    except _Unsatisfiable:
        return _error(
            416, "Requested range not satisfiable", headers=[*base, ("Content-Range", f"bytes */{size}")]
        )
    if span is None:
        return _Response(200, base, file=path, file_start=0, file_length=size)
    start, end = span
    return _Response(
        206,
        [*base, ("Content-Range", f"bytes {start}-{end}/{size}")],
        file=path,
        file_start=start,
        file_length=end - start + 1,
    )


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _header_safe(value: str) -> str:
    # Header values must be latin-1 and single-line; paths come from URLs and may contain anything.
    return value.encode("ascii", "backslashreplace").decode("ascii").replace("\r", " ").replace("\n", " ")


class _Link:
    """A shared link of ``bps`` bytes per second: each piece of any body waits for its turn on the wire.

    A virtual clock: a piece of n bytes occupies the link for n / bps seconds after the previous piece;
    the sender sleeps until its piece has "left". Connections interleave, so together they never exceed
    the link, and each gets its share.
    """

    def __init__(self, bps: int) -> None:
        self.bps = bps
        self._lock = threading.Lock()
        self._free_at = 0.0

    def wait_for(self, nbytes: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._free_at = max(self._free_at, now) + nbytes / self.bps
            until = self._free_at
        delay = until - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class _EmulatorHTTPServer(ThreadingHTTPServer):
    """One of the two listening servers; knows its emulator, its name and its open connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, emulator: HubEmulator, name: str) -> None:
        self.emulator = emulator
        self.name = name
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can stall offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response are routine in fault tests: never print tracebacks for them.
        pass

    def close_connections(self) -> None:
        """Shut down every open client connection so idle keep-alive threads end at stop()."""
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Parses a request, applies faults, routes it and streams the answer."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: avoid 40 ms Nagle stalls
    server: _EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no stderr noise; tests inspect HubEmulator.requests instead

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    # -- request cycle ----------------------------------------------------------------------------

    def _handle(self) -> None:
        emulator = self.server.emulator
        started = time.monotonic()
        split = urlsplit(self.path)
        raw_path = split.path
        headers = {key.lower(): value for key, value in self.headers.items()}
        self._entry = LoggedRequest(
            server=self.server.name,
            method=self.command,
            path=raw_path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=headers,
            status=0,
            range=headers.get("range"),
            bytes_sent=0,
            time=time.time(),
        )
        self._published = False
        self._bytes_sent = 0
        try:
            body = self._read_body(headers)
            faults = emulator.faults  # one consistent view even if a test swaps it meanwhile
            range_header = headers.get("range")
            matched = faults.matches(self.server.name, raw_path, unquote(raw_path), range_header)
            active = faults if matched else None
            if active is not None and active.ignore_range:
                headers = {k: v for k, v in headers.items() if k != "range"}
            if active is not None and active.latency_s > 0:
                time.sleep(active.latency_s)
            if active is not None and emulator._counters.take_failure(active):
                extra = [("Retry-After", active.retry_after)] if active.retry_after is not None else []
                response = _error(
                    active.fail_status, f"Injected failure ({active.fail_status})", headers=extra
                )
            else:
                try:
                    response = emulator._route(
                        self.server.name, self.command, raw_path, split.query, headers, body
                    )
                except Exception as exc:  # a bug in the emulator must show up as a 500, not a hang
                    detail = "".join(traceback.format_exception_only(exc)).strip()
                    response = _error(500, f"Emulator error: {detail}")
            self._send(response, active)
        except OSError:
            # Broken pipe / reset by the client, or our own injected cut: just drop the connection.
            self.close_connection = True
        finally:
            self._entry.bytes_sent = self._bytes_sent
            self._entry.duration_s = time.monotonic() - started
            self._publish(self._entry.status, self._bytes_sent)

    def _publish(self, status: int, bytes_sent: int) -> None:
        """Append this request to the log (once), with what the client is about to have received.

        Called just before the last bytes of the answer go out, so a client that has its response can rely on
        the entry being in ``HubEmulator.requests``; ``_handle`` corrects ``bytes_sent`` if the send failed.
        """
        self._entry.status = status
        self._entry.bytes_sent = bytes_sent
        if not self._published:
            self._published = True
            self.server.emulator._log(self._entry)

    def _read_body(self, headers: dict[str, str]) -> bytes:
        """The request body; always consumed so the next request on a keep-alive connection parses."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(headers.get("content-length", "0") or "0")
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: _Response, faults: Faults | None) -> None:
        self.send_response(response.status)
        self._entry.status = response.status
        names = {name.lower() for name, _ in response.headers}
        for name, value in response.headers:
            self.send_header(name, _header_safe(value))
        if "content-length" not in names:
            self.send_header("Content-Length", str(response.length))
        cut_at = stall_at = None
        throttle = None
        counters = self.server.emulator._counters
        if faults is not None and self.command == "GET":
            cut_at = counters.take_cut(faults, response.length)
            stall_at = counters.take_stall(faults, response.length)
            throttle = faults.throttle_bps if faults.throttle_bps and faults.throttle_bps > 0 else None
        budget = 0 if self.command == "HEAD" else response.length if cut_at is None else cut_at
        if budget == 0:
            self._publish(response.status, 0)
        self.end_headers()
        link = self.server.emulator._link
        paced = throttle is not None or link is not None
        chunk_size = min(_CHUNK, max(1, throttle // 20)) if throttle else _CHUNK if paced else _SENDFILE_CHUNK
        t0 = time.monotonic()
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(response.file.open("rb")) if response.file is not None else None
            while self._bytes_sent < budget:
                size = min(chunk_size, budget - self._bytes_sent)
                if stall_at is not None and self._bytes_sent < stall_at:
                    size = min(size, stall_at - self._bytes_sent)
                if link is not None:
                    link.wait_for(size)
                if self._bytes_sent + size >= budget:
                    self._publish(response.status, budget)
                sent = self._send_piece(response, source, size)
                if sent == 0:
                    # The file shrank since it was hashed: end the connection so the client sees a short body.
                    self.close_connection = True
                    break
                self._bytes_sent += sent
                if stall_at is not None and self._bytes_sent == stall_at and faults is not None:
                    time.sleep(faults.stall_s)
                    t0 += faults.stall_s
                if throttle:
                    # Pace against the start time (not per chunk) so sleep overshoot doesn't accumulate.
                    delay = t0 + self._bytes_sent / throttle - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        if cut_at is not None and faults is not None:
            self._cut(faults.cut_mode)

    def _send_piece(self, response: _Response, source: BinaryIO | None, size: int) -> int:
        """Send up to ``size`` body bytes; returns how many went out (0: the file has no more)."""
        if source is None:
            piece = response.body[self._bytes_sent : self._bytes_sent + size]
            self.wfile.write(piece)
            return len(piece)
        offset = response.file_start + self._bytes_sent
        sent = 0
        while sent < size:
            n = os.sendfile(self.connection.fileno(), source.fileno(), offset + sent, size - sent)
            if n == 0:
                break
            sent += n
        return sent

    def _cut(self, mode: str) -> None:
        """End the connection mid-body: FIN after the bytes sent so far, or an abortive RST."""
        self.close_connection = True
        sock = self.connection
        if mode == "rst":
            # Linger 0 turns close() into an RST. Close the fd now via detach(): the handler's rfile keeps a
            # reference to the socket object, which would otherwise postpone the real close (and let
            # socketserver send a FIN first through shutdown()).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            os.close(sock.detach())
        else:
            sock.shutdown(socket.SHUT_RDWR)


class HubEmulator:
    """Local Hugging Face Hub (API + /resolve) plus a CDN for LFS blobs, both on 127.0.0.1.

    ``root`` holds ``org/name/branch/...files`` (see :class:`~tests.hub_emulator.repos.RepoStore`).
    ``tokens`` maps each valid token to the gated repo ids it was granted; any other token is invalid.
    Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        root: Path,
        *,
        tokens: dict[str, list[str]] | None = None,
        tree_page_size: int = 1000,
        models_page_size: int = 1000,
    ) -> None:
        self.root = Path(root)
        self.store = RepoStore(self.root)
        self.tokens: dict[str, list[str]] = dict(tokens or {})
        self.tree_page_size = max(1, tree_page_size)
        self.models_page_size = max(1, models_page_size)  # the most /api/models answers per page
        # Like the real Hub's signed CDN addresses: a redirect's Location is valid this long, then the CDN
        # answers 403 (None: addresses never expire).
        self.cdn_url_ttl_s: float | None = None
        self.endpoint = ""
        self.cdn_endpoint = ""
        self.requests: list[LoggedRequest] = []
        self._requests_lock = threading.Lock()
        self._counters = FaultCounters()
        self._faults = Faults()
        self._link: _Link | None = None
        self._servers: list[_EmulatorHTTPServer] = []
        self._threads: list[threading.Thread] = []

    # -- public API ---------------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """Faults applied to matching requests. Assigning a new ``Faults`` also restarts its counters."""
        return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self._counters.reset()
        self._faults = value

    @property
    def link_bps(self) -> int | None:
        """Bandwidth shared by every connection of both servers, in body bytes per second (None: no cap)."""
        return self._link.bps if self._link is not None else None

    @link_bps.setter
    def link_bps(self, value: int | None) -> None:
        self._link = _Link(value) if value else None

    def start(self) -> HubEmulator:
        """Bind both servers to free ports and serve them from daemon threads."""
        if self._servers:
            return self
        hub = _EmulatorHTTPServer(self, "hub")
        cdn = _EmulatorHTTPServer(self, "cdn")
        self._servers = [hub, cdn]
        self.endpoint = f"http://127.0.0.1:{hub.server_port}"
        self.cdn_endpoint = f"http://127.0.0.1:{cdn.server_port}"
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},  # stop() waits at most one poll interval
                name=f"hub-emulator-{server.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving, close listening sockets and open connections. Idempotent."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
            server.close_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers = []
        self._threads = []

    def __enter__(self) -> HubEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Remove all faults and the link cap, clear the request log and reset fault counters."""
        self.faults = Faults()
        self.link_bps = None
        with self._requests_lock:
            self.requests.clear()

    def commit_of(self, repo_id: str, branch: str) -> str:
        """Current commit sha of ``branch`` of ``repo_id`` (as the emulator reports it)."""
        if branch not in self.store.branches(repo_id):
            raise KeyError(f"{repo_id}@{branch}")
        return self.store.commit_of(repo_id, branch)

    # -- internals ----------------------------------------------------------------------------------

    def _log(self, entry: LoggedRequest) -> None:
        with self._requests_lock:
            self.requests.append(entry)

    def _route(
        self, server: str, method: str, raw_path: str, query_string: str, headers: dict[str, str], body: bytes
    ) -> _Response:
        token, auth_error = self._authenticate(headers)
        if auth_error is not None:
            return auth_error
        query = parse_qs(query_string, keep_blank_values=True)
        segments = raw_path.split("/")[1:]
        if server == "cdn":
            return self._route_cdn(method, segments, headers, query)
        if segments[:2] == ["api", "models"] and segments[2:] in ([], [""]):
            if method not in ("GET", "HEAD"):
                return _error(405, "Method Not Allowed", headers=[("Allow", "GET, HEAD")])
            status, answer, link = list_models(self.store, self.endpoint, query, self.models_page_size)
            if status != 200:
                return _error(status, str(answer))
            return _json_response(200, answer, [("Link", link)] if link else [])
        if segments[:2] == ["api", "models"] and len(segments) >= 4:
            return self._route_api(method, segments, query, headers, body)
        if len(segments) >= 5 and segments[2] == "resolve":
            return self._resolve(method, segments, headers, token)
        return _error(404, "Not Found")

    def _authenticate(self, headers: dict[str, str]) -> tuple[str | None, _Response | None]:
        """(token or None, 401 response if the Authorization header carries an unknown token)."""
        auth = headers.get("authorization")
        if auth is None:
            return None, None
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or token not in self.tokens:
            # No X-Error-Code: this is how the real Hub answers, and huggingface_hub then raises a plain
            # HfHubHTTPError(401) rather than RepositoryNotFoundError.
            return None, _error(401, INVALID_CREDENTIALS)
        return token, None

    def _route_api(
        self,
        method: str,
        segments: list[str],
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> _Response:
        repo_id = f"{unquote(segments[2])}/{unquote(segments[3])}"
        rest = segments[4:]
        if rest == [""]:
            rest = []
        if self.store.repo_dir(repo_id) is None:
            return _repo_not_found(repo_id)
        if rest and rest[0] == "paths-info":
            if method != "POST":
                return _error(405, "Method Not Allowed", headers=[("Allow", "POST")])
            return self._paths_info(repo_id, unquote("/".join(rest[1:])), headers, body)
        if method not in ("GET", "HEAD"):
            return _error(405, "Method Not Allowed", headers=[("Allow", "GET, HEAD")])
        if not rest:
            return self._model_info(repo_id, "main", query)
        if rest[0] == "revision" and len(rest) >= 2:
            return self._model_info(repo_id, unquote("/".join(rest[1:])), query)
        if rest == ["refs"]:
            return self._refs(repo_id, query)
        if rest[0] == "tree" and len(rest) >= 2:
            return self._tree(repo_id, unquote(rest[1]), unquote("/".join(rest[2:])).strip("/"), query)
        return _error(404, "Not Found")

    def _snapshot(self, repo_id: str, revision: str) -> Snapshot | _Response:
        branch = self.store.resolve_revision(repo_id, revision)
        if branch is None:
            return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.store.snapshot(repo_id, branch)

    def _refs(self, repo_id: str, query: dict[str, list[str]]) -> _Response:
        branches = [
            {
                "name": branch,
                "ref": f"refs/heads/{branch}",
                "targetCommit": self.store.commit_of(repo_id, branch),
            }
            for branch in self.store.branches(repo_id)
        ]
        payload: dict[str, Any] = {"branches": branches, "converts": [], "tags": []}
        if _flag(query, "include_prs"):
            payload["pullRequests"] = []
        return _json_response(200, payload)

    def _model_info(self, repo_id: str, revision: str, query: dict[str, list[str]]) -> _Response:
        snap = self._snapshot(repo_id, revision)
        if isinstance(snap, _Response):
            return snap
        blobs = _flag(query, "blobs")
        siblings: list[dict[str, Any]] = []
        for path in sorted(snap.files):
            entry = snap.files[path]
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.blob_sha1)
                if entry.is_lfs:
                    sibling["lfs"] = {
                        "sha256": entry.sha256,
                        "size": entry.size,
                        "pointerSize": LFS_POINTER_SIZE,
                    }
            siblings.append(sibling)
        mtimes = [entry.abs_path.stat().st_mtime for entry in snap.files.values() if entry.abs_path.exists()]
        org = repo_id.split("/")[0]
        payload = {
            "_id": snap.commit[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": org,
            "sha": snap.commit,
            "private": False,
            "gated": "manual" if self.store.is_gated(repo_id) else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "library_name": "transformers",
            "siblings": siblings,
            "usedStorage": sum(entry.size for entry in snap.files.values()),
            "createdAt": FIXED_DATE,
            "lastModified": _iso(max(mtimes)) if mtimes else FIXED_DATE,
        }
        return _json_response(200, payload)

    def _entry_json(self, snap: Snapshot, path: str, expand: bool) -> dict[str, Any]:
        entry: FileEntry | None = snap.files.get(path)
        result: dict[str, Any]
        if entry is not None:
            result = {"type": "file", "oid": entry.blob_sha1, "size": entry.size, "path": path}
            if entry.is_lfs:
                result["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": LFS_POINTER_SIZE}
        else:
            result = {"type": "directory", "oid": snap.directories[path], "size": 0, "path": path}
        if expand:
            result["lastCommit"] = {"id": snap.commit, "title": "Upload", "date": FIXED_DATE}
        return result

    def _tree(self, repo_id: str, revision: str, path: str, query: dict[str, list[str]]) -> _Response:
        snap = self._snapshot(repo_id, revision)
        if isinstance(snap, _Response):
            return snap
        if path and path not in snap.directories:
            return _error(404, f"Entry not found: {path}", "EntryNotFound", [("X-Repo-Commit", snap.commit)])
        recursive = _flag(query, "recursive")
        expand = _flag(query, "expand")
        names = snap.descendants(path) if recursive else snap.children(path)
        offset = 0
        if query.get("cursor"):
            decoded = _decode_cursor(query["cursor"][0])
            if decoded is None:
                return _error(400, "Invalid cursor")
            offset = decoded
        end = offset + self.tree_page_size
        page = [self._entry_json(snap, name, expand) for name in names[offset:end]]
        headers = [("X-Repo-Commit", snap.commit)]
        if end < len(names):
            org, name = (quote(part, safe="") for part in repo_id.split("/"))
            url = f"{self.endpoint}/api/models/{org}/{name}/tree/{quote(revision, safe='')}"
            if path:
                url += "/" + quote(path, safe="")
            flags = f"recursive={str(recursive).lower()}&expand={str(expand).lower()}"
            url += f"?{flags}&cursor={_encode_cursor(end)}"
            headers.append(("Link", f'<{url}>; rel="next"'))
        return _json_response(200, page, headers)

    def _paths_info(self, repo_id: str, revision: str, headers: dict[str, str], body: bytes) -> _Response:
        snap = self._snapshot(repo_id, revision)
        if isinstance(snap, _Response):
            return snap
        paths: list[str]
        if "json" in headers.get("content-type", ""):
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                return _error(400, "Invalid JSON body")
            raw_paths = data.get("paths", [])
            paths = [raw_paths] if isinstance(raw_paths, str) else [str(p) for p in raw_paths]
            expand_value = data.get("expand", False)
            expand = expand_value is True or str(expand_value) in _TRUE
        else:
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            paths = form.get("paths", []) + form.get("paths[]", [])
            expand = _flag(form, "expand")
        result = []
        seen: set[str] = set()
        for raw in paths:
            path = raw.strip("/")
            if path in seen or (path not in snap.files and path not in snap.directories):
                continue
            seen.add(path)
            result.append(self._entry_json(snap, path, expand))
        return _json_response(200, result, [("X-Repo-Commit", snap.commit)])

    def _resolve(
        self, method: str, segments: list[str], headers: dict[str, str], token: str | None
    ) -> _Response:
        if method not in ("GET", "HEAD"):
            return _error(405, "Method Not Allowed", headers=[("Allow", "GET, HEAD")])
        repo_id = f"{unquote(segments[0])}/{unquote(segments[1])}"
        revision = unquote(segments[3])
        path = unquote("/".join(segments[4:]))
        if self.store.repo_dir(repo_id) is None:
            return _repo_not_found(repo_id)
        if self.store.is_gated(repo_id):
            # As on the real Hub, gating is checked before the revision and the file.
            if token is None:
                return _error(
                    401,
                    f"Access to model {repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in.",
                    "GatedRepo",
                )
            if repo_id not in self.tokens.get(token, []):
                return _error(
                    403,
                    f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                    f"Visit {self.endpoint}/{repo_id} to ask for access.",
                    "GatedRepo",
                )
        snap = self._snapshot(repo_id, revision)
        if isinstance(snap, _Response):
            return snap
        entry = snap.files.get(path)
        commit_header = ("X-Repo-Commit", snap.commit)
        if entry is None:
            # X-Repo-Commit lets huggingface_hub cache the file's absence for that commit (.no_exist).
            return _error(404, f"Entry not found: {path}", "EntryNotFound", [commit_header])
        if entry.is_lfs:
            location = f"{self.cdn_endpoint}/blobs/{entry.sha256}?repo={quote(repo_id, safe='')}"
            if self.cdn_url_ttl_s is not None:
                location += f"&Expires={time.time() + self.cdn_url_ttl_s:.3f}"
            return _Response(
                302,
                [
                    ("Location", location),
                    commit_header,
                    ("X-Linked-Etag", f'"{entry.sha256}"'),
                    ("X-Linked-Size", str(entry.size)),
                    ("ETag", f'"{entry.sha256}"'),
                    ("Content-Length", "0"),
                ],
            )
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type == "application/json":
            content_type += "; charset=utf-8"
        return _file_response(
            entry.abs_path,
            entry.size,
            headers.get("range"),
            [commit_header, ("ETag", f'"{entry.blob_sha1}"')],
            content_type,
        )

    def _route_cdn(
        self, method: str, segments: list[str], headers: dict[str, str], query: dict[str, list[str]]
    ) -> _Response:
        if len(segments) != 2 or segments[0] != "blobs":
            return _error(404, "Not Found")
        expires = query.get("Expires")
        if expires and float(expires[-1]) < time.time():
            return _error(403, "Request has expired")  # what CloudFront answers for a stale signed URL
        if method not in ("GET", "HEAD"):
            return _error(405, "Method Not Allowed", headers=[("Allow", "GET, HEAD")])
        sha256 = segments[1]
        blob = self.store.blob(sha256)
        if blob is None:
            return _error(404, f"Blob not found: {sha256}")
        path, size = blob
        return _file_response(
            path, size, headers.get("range"), [("ETag", f'"{sha256}"')], "application/octet-stream"
        )


def _repo_not_found(repo_id: str) -> _Response:
    return _error(404, f"Repository not found: {repo_id}", "RepoNotFound")


def _flag(query: dict[str, list[str]], name: str) -> bool:
    values = query.get(name)
    return values is not None and len(values) > 0 and values[-1] in _TRUE


def _encode_cursor(offset: int) -> str:
    # Opaque like the real Hub's cursors, so clients must follow the Link header rather than build URLs.
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = data["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None
