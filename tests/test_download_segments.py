"""Segmented downloads against the Hub emulator: many connections per file, faults on one of them, work
stealing, servers without ranges, kill -9 with eight segments in flight, files that change, the cap."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from app import cli
from app.catalog.hub_client import HubClient
from app.downloads import BranchDownload, DownloadOptions, DownloadProgress, Outcome
from app.downloads.segments import ConnectionBudget
from app.downloads.state import FolderState
from app.downloads.transfer import TransferSettings
from tests.hub_emulator import Faults, HubEmulator, LoggedRequest

ROOT = Path(__file__).resolve().parent.parent
REPO = "TheBloke/Big-GPTQ"
WEIGHTS = "model.safetensors"
KIB = 1024


def seg_settings(**overrides: Any) -> TransferSettings:
    """Segments at test scale: every file is cut, 64-256 KiB pieces, quick retries."""
    values: dict[str, Any] = {
        "segment_threshold_bytes": 0,
        "min_piece_bytes": 64 * KIB,
        "max_piece_bytes": 256 * KIB,
        "min_steal_bytes": 32 * KIB,
        "idle_takeover_s": 1.0,
        "stall_timeout_s": 10.0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_failures": 3,
        "budget": ConnectionBudget(16),
    }
    values.update(overrides)
    return TransferSettings(**values)


def big_repo(hub: HubEmulator, size: int, repo: str = REPO) -> bytes:
    """A repo with one random weights file of ``size`` bytes (and a config); returns the weights."""
    branch = hub.root / repo / "main"
    branch.mkdir(parents=True, exist_ok=True)
    (branch / "config.json").write_text('{"model_type": "llama"}\n')
    data = os.urandom(size)
    (branch / WEIGHTS).write_bytes(data)
    return data


def make(tmp_path: Path, progress: Any = None, **options: Any) -> BranchDownload:
    options.setdefault("transfer", seg_settings())
    options.setdefault("target", tmp_path / "model")
    options.setdefault("connections", 8)
    return BranchDownload(REPO, options=DownloadOptions(**options), client=HubClient(), on_progress=progress)


def weight_gets(hub: HubEmulator) -> list[LoggedRequest]:
    gets = [r for r in hub.requests if r.server == "cdn" and r.method == "GET"]
    return sorted(gets, key=lambda r: r.time)


def range_start(request: LoggedRequest) -> int:
    return 0 if request.range is None else int(request.range.removeprefix("bytes=").split("-")[0])


def served(hub: HubEmulator) -> int:
    return sum(r.bytes_sent for r in weight_gets(hub))


def most_at_once(gets: list[LoggedRequest]) -> int:
    """The most answers that were being sent at the same moment."""
    events = sorted([(r.time, 1) for r in gets] + [(r.time + r.duration_s, -1) for r in gets])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def assert_file(folder: Path, data: bytes) -> None:
    got = (folder / WEIGHTS).read_bytes()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert FolderState(folder).load_marker() is not None
    assert not list((folder / ".quantdesk" / "parts").rglob("*.part"))


def test_eight_connections_at_once_and_shown_in_progress(private_hub: HubEmulator, tmp_path: Path) -> None:
    data = big_repo(private_hub, 4 * 1024 * KIB)
    private_hub.link_bps = 8_000_000  # half a second: long enough to see them side by side
    events: list[DownloadProgress] = []
    result = make(tmp_path, progress=events.append).run()
    assert result.outcome is Outcome.COMPLETE
    assert_file(result.path, data)
    assert most_at_once(weight_gets(private_hub)) >= 8
    shown = [f.connections for e in events for f in e.files if f.path == WEIGHTS]
    assert max(shown) == 8 and shown[-1] == 0  # what the Downloads page shows per file
    # A steal wastes what was in flight to the robbed connection (up to one 64 KiB emulator chunk): a
    # lot for a 4 MiB file, nothing for a real one (the benchmark measures a 512 MB file).
    assert len(data) <= served(private_hub) <= len(data) * 1.15


def test_cut_on_one_of_eight_connections_resumes_that_range(private_hub: HubEmulator, tmp_path: Path) -> None:
    data = big_repo(private_hub, 4 * 1024 * KIB)
    private_hub.link_bps = 8_000_000
    middle = len(data) // 2
    private_hub.faults = Faults(path_contains="/blobs/", covering=middle, cut_after_bytes=20_000)
    result = make(tmp_path).run()
    assert_file(result.path, data)
    gets = weight_gets(private_hub)
    cut = [r for r in gets if r.bytes_sent == 20_000 and range_start(r) <= middle]
    assert len(cut) == 1, [(r.range, r.bytes_sent) for r in gets]
    # that range went on from the exact byte where its bytes on disk ended
    assert range_start(cut[0]) + 20_000 in [range_start(r) for r in gets]
    assert len(data) <= served(private_hub) <= len(data) * 1.15  # see the test above


def test_503_on_some_ranges_is_retried_while_the_others_run(private_hub: HubEmulator, tmp_path: Path) -> None:
    data = big_repo(private_hub, 2 * 1024 * KIB)
    private_hub.faults = Faults(path_contains="/blobs/", ranged_only=True, fail_first=5, fail_status=503)
    result = make(tmp_path).run()
    assert_file(result.path, data)
    assert [r.status for r in weight_gets(private_hub)].count(503) == 5
    # unpaced loopback: a steal may waste a whole small piece in flight (the benchmark measures 512 MB)
    assert len(data) <= served(private_hub) <= len(data) * 1.25


def weight_resolves(hub: HubEmulator) -> list[LoggedRequest]:
    """The Hub's ``/resolve`` answers (302 to the CDN) for the weights file."""
    return [r for r in hub.requests if r.server == "hub" and "/resolve/" in r.path and WEIGHTS in r.path]


def test_later_ranges_go_straight_to_the_cdn(private_hub: HubEmulator, tmp_path: Path) -> None:
    """A round trip to the Hub per piece is what held many small files back: once the Hub has named the
    CDN address, the file's other ranges go there directly."""
    data = big_repo(private_hub, 4 * 1024 * KIB)
    result = make(tmp_path).run()
    assert_file(result.path, data)
    pieces = [r for r in weight_gets(private_hub) if r.range is not None]
    assert len(pieces) >= 16  # 4 MiB in pieces of at most 256 KiB
    assert len(weight_resolves(private_hub)) <= 8  # at most the connections that started at once


def test_an_expired_cdn_address_is_asked_for_again(private_hub: HubEmulator, tmp_path: Path) -> None:
    """The Hub's CDN addresses are signed for a while; a long download outlives them and must ask again."""
    data = big_repo(private_hub, 4 * 1024 * KIB)
    private_hub.link_bps = 4_000_000  # about a second
    private_hub.cdn_url_ttl_s = 0.25
    result = make(tmp_path).run()
    assert result.outcome is Outcome.COMPLETE
    assert_file(result.path, data)
    assert 403 in [r.status for r in weight_gets(private_hub)]  # the stale address was refused...
    assert len(weight_resolves(private_hub)) > 8  # ...and a fresh one asked for


def test_a_stalled_connection_does_not_hold_the_file(private_hub: HubEmulator, tmp_path: Path) -> None:
    """One connection goes silent for 30 s (the stall timeout is 60 s): the others split its range and take
    it over, and the file completes long before either."""
    data = big_repo(private_hub, 2 * 1024 * KIB)
    private_hub.faults = Faults(
        path_contains="/blobs/", covering=100 * KIB, stall_after_bytes=8 * KIB, stall_s=30.0
    )
    started = time.monotonic()
    result = make(tmp_path, transfer=seg_settings(stall_timeout_s=60.0, idle_takeover_s=0.5)).run()
    assert time.monotonic() - started < 15
    assert_file(result.path, data)
    assert private_hub._counters.stalled == 1


def test_server_without_range_support_falls_back_to_one_connection(
    private_hub: HubEmulator, tmp_path: Path
) -> None:
    data = big_repo(private_hub, 2 * 1024 * KIB)
    private_hub.link_bps = 8_000_000
    private_hub.faults = Faults(path_contains="/blobs/", ignore_range=True)
    events: list[DownloadProgress] = []
    result = make(tmp_path, progress=events.append).run()
    assert_file(result.path, data)
    whole = [r for r in weight_gets(private_hub) if r.status == 200 and r.bytes_sent == len(data)]
    assert len(whole) == 1 and whole[0].range is None  # the last answer carried the file, unranged
    running = [f.connections for e in events for f in e.files if f.path == WEIGHTS and f.status == "running"]
    assert running and running[-1] <= 1


def test_connections_across_files_stay_under_the_cap(private_hub: HubEmulator, tmp_path: Path) -> None:
    data = big_repo(private_hub, 1024 * KIB)
    branch = private_hub.root / REPO / "main"
    for i in range(3):
        (branch / f"model-{i}.safetensors").write_bytes(os.urandom(1024 * KIB))
    private_hub.link_bps = 8_000_000
    result = make(tmp_path, jobs=4, transfer=seg_settings(budget=ConnectionBudget(6))).run()
    assert_file(result.path, data)
    assert most_at_once(weight_gets(private_hub)) <= 6


_KILLABLE = """
import sys
from pathlib import Path
from app.catalog.hub_client import HubClient
from app.downloads import BranchDownload, DownloadOptions
from app.downloads.transfer import TransferSettings
settings = TransferSettings(segment_threshold_bytes=0, min_piece_bytes=256 * 1024, max_piece_bytes=1 << 20)
options = DownloadOptions(target=Path(sys.argv[1]), connections=8, transfer=settings)
BranchDownload(sys.argv[2], options=options, client=HubClient()).run()
"""


def partway(segments: list[list[int]]) -> int:
    """How many segments of a part record have some but not all of their bytes."""
    return sum(1 for start, end, done in segments if 0 < done < end - start)


def test_sigkill_with_eight_segments_then_restart_refetches_little(
    private_hub: HubEmulator, tmp_path: Path
) -> None:
    data = big_repo(private_hub, 32 * 1024 * KIB)
    target = tmp_path / "model"
    folder = FolderState(target)
    command = [sys.executable, "-c", _KILLABLE, str(target), REPO]
    private_hub.link_bps = 8_000_000  # about 4 s: time to see segments in flight on a loaded machine
    proc = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy(), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        state = folder.load_part_state(WEIGHTS)
        # past half way, with several segments part-way (a connection between two pieces shows none)
        if state is not None and state.bytes_done >= len(data) // 2 and partway(state.segments) >= 3:
            break
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the download never got half way"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    state = folder.load_part_state(WEIGHTS)
    assert state is not None and 0 < state.bytes_done < len(data)
    assert partway(state.segments) >= 2, repr(state.segments)  # the kill came with segments in flight
    private_hub.link_bps = None
    rerun = subprocess.run(command, cwd=ROOT, env=os.environ.copy(), capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert_file(target, data)
    assert served(private_hub) <= 1.05 * len(data)


def _pause_when(download: BranchDownload, name: str, at: int) -> None:
    def check(p: DownloadProgress) -> None:
        if any(f.path == name and f.done_bytes > at for f in p.files):
            download.pause()

    download.on_progress = check


def test_resume_after_the_file_changed_on_the_server_starts_it_over(
    private_hub: HubEmulator, tmp_path: Path
) -> None:
    """A small (non-LFS) file of the same size but other bytes: nothing in the plan differs but its ETag,
    and resuming on the old bytes would place a mix of both versions."""
    big_repo(private_hub, 64 * KIB)
    vocab = private_hub.root / REPO / "main" / "vocab.txt"
    vocab.write_bytes(b"a" * 300_000)
    private_hub.faults = Faults(path_contains="vocab.txt", throttle_bps=300_000)
    download = make(tmp_path, connections=1, transfer=seg_settings(segment_threshold_bytes=1 << 30))
    _pause_when(download, "vocab.txt", 60_000)
    assert download.run().outcome is Outcome.PAUSED
    state = download.folder.load_part_state("vocab.txt")
    assert state is not None and 0 < state.bytes_done < 300_000 and state.validator
    vocab.write_bytes(b"b" * 300_000)
    private_hub.faults = Faults()
    private_hub.requests.clear()
    download.on_progress = None
    result = download.run()
    assert result.outcome is Outcome.COMPLETE
    assert (result.path / "vocab.txt").read_bytes() == b"b" * 300_000
    gets = [r for r in private_hub.requests if r.path.endswith("vocab.txt") and r.method == "GET"]
    assert 0 in [range_start(r) for r in gets]  # started over


def test_resume_after_weights_changed_on_the_server_starts_over(
    private_hub: HubEmulator, tmp_path: Path
) -> None:
    data = big_repo(private_hub, 2 * 1024 * KIB)
    private_hub.link_bps = 2_000_000
    download = make(tmp_path)
    _pause_when(download, WEIGHTS, 256 * KIB)
    assert download.run().outcome is Outcome.PAUSED
    changed = bytes(b ^ 0x5A for b in data)
    (private_hub.root / REPO / "main" / WEIGHTS).write_bytes(changed)
    private_hub.link_bps = None
    private_hub.requests.clear()
    result = make(tmp_path).run()
    assert_file(result.path, changed)
    assert served(private_hub) >= len(changed)  # every byte again, none of the old ones kept


def test_pause_stops_every_connection_at_once(private_hub: HubEmulator, tmp_path: Path) -> None:
    big_repo(private_hub, 4 * 1024 * KIB)
    private_hub.faults = Faults(path_contains="/blobs/", throttle_bps=20_000)  # 8 slow connections
    download = make(tmp_path, transfer=seg_settings(stall_timeout_s=60.0))
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(download.run()))
    worker.start()
    time.sleep(1.0)
    paused_at = time.monotonic()
    download.pause()
    worker.join(10)
    assert outcome and outcome[0].outcome is Outcome.PAUSED
    assert time.monotonic() - paused_at < 2.0  # not the 60 s a blocked read could take
    state = download.folder.load_part_state(WEIGHTS)
    assert state is not None and state.bytes_done > 0


def test_a_stopped_connection_opens_nothing_more(private_hub: HubEmulator) -> None:
    """A pause can come while a connection follows the Hub's redirect to the CDN, when no socket of the
    CDN exists yet to shut: the connection must not then fetch its range (CI saw a pause take the rest
    of a 5 s file). Once stopped, a connection's next request fails at once, without reaching a server."""
    from app.downloads.ranged_get import RangeClient

    big_repo(private_hub, 256 * KIB)
    url = f"{private_hub.endpoint}/{REPO}/resolve/main/{WEIGHTS}"
    client = RangeClient(connect_timeout_s=5, read_timeout_s=5)
    first = 64 * KIB
    body = client.open(url, private_hub.endpoint, {}, 0, first)
    assert body.status == 206
    client.discard(body)
    client.abort()
    with pytest.raises(OSError):
        client.open(url, private_hub.endpoint, {}, first, None)
    # The emulator logs an answer once it is sent, which on a loaded machine can come after the discard:
    # only the first request may be in the log.
    assert [r.range for r in private_hub.requests if r.range != f"bytes=0-{first - 1}"] == []
    client.close()


@pytest.mark.parametrize("value", ["0", "17", "x"])
def test_cli_refuses_connections_outside_1_to_16(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["download", REPO, "--connections", value])
    assert info.value.code == 2
    assert "--connections" in capsys.readouterr().err


def test_cli_connections_option_reaches_the_download(private_hub: HubEmulator, tmp_path: Path) -> None:
    data = big_repo(private_hub, 20 * 1024 * KIB)  # above the 16 MiB threshold
    private_hub.link_bps = 200_000_000
    assert cli.main(["download", REPO, "--dir", str(tmp_path / "m"), "--connections", "3"]) == 0
    assert_file(tmp_path / "m", data)
    # A robbed connection's answer ends on the server a moment after its thief's begins: at most one over.
    assert 3 <= most_at_once(weight_gets(private_hub)) <= 4


class _ForwardProxy(BaseHTTPRequestHandler):
    """A plain-http forward proxy: takes absolute-form requests, fetches them, returns the answer."""

    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.server.seen.append((self.command, self.path))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or "0"))
        skip = {"proxy-connection", "connection", "proxy-authorization", "keep-alive"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        upstream = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=30)
        target = url.path + (f"?{url.query}" if url.query else "")
        upstream.request(self.command, target, body=body or None, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_HEAD = do_GET


@contextlib.contextmanager
def _proxy() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardProxy)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_connections_go_through_the_proxy_the_environment_names(
    private_hub: HubEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like huggingface_hub's client, the range connections honour HTTP(S)_PROXY / NO_PROXY."""
    data = big_repo(private_hub, 512 * KIB)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with _proxy() as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        result = make(tmp_path).run()
    assert_file(result.path, data)
    through = [path for method, path in proxy.seen if method == "GET" and "/blobs/" in path]
    assert len(through) == len(weight_gets(private_hub)) > 1  # every range, each through the proxy
