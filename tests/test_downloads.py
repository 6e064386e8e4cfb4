"""Branch downloads against the local Hub emulator, with its faults: resume, retry, verify, pause."""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app import errors
from app.catalog.hub_client import HubClient
from app.downloads import BranchDownload, DownloadOptions, DownloadProgress, FileStatus, Outcome
from app.downloads.state import FolderState
from app.downloads.transfer import TransferSettings, preallocate
from tests.conftest import GRANTED_TOKEN, UNGRANTED_TOKEN
from tests.hub_emulator import Faults, HubEmulator, LoggedRequest

REPO = "TheBloke/TinyLlama-GPTQ"
WEIGHTS = "model.safetensors"
# Every test here runs twice: the 199 kB weights over one connection, and cut into 64 KiB segments over
# four connections at once (no work stealing here, so "no byte is fetched twice" stays exact; stealing
# has its own tests in test_download_segments.py).
SEGMENTED = False
SEGMENT_SETTINGS: dict[str, Any] = {
    "segment_threshold_bytes": 0,
    "min_piece_bytes": 64 * 1024,
    "max_piece_bytes": 64 * 1024,
    "min_steal_bytes": 1 << 30,
}


@pytest.fixture(autouse=True, params=["one-connection", "segments"])
def connections_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(sys.modules[__name__], "SEGMENTED", request.param == "segments")
    return bool(request.param == "segments")


def fast_settings(**overrides: Any) -> TransferSettings:
    """Retry timings shrunk for tests (the logic is the same)."""
    values: dict[str, Any] = {
        "stall_timeout_s": 5.0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_failures": 3,
    }
    if SEGMENTED:
        values.update(SEGMENT_SETTINGS)
    values.update(overrides)
    return TransferSettings(**values)


def make(
    tmp_path: Path,
    repo: str = REPO,
    branch: str = "main",
    token: str | None = None,
    progress: Callable[[DownloadProgress], None] | None = None,
    **options: Any,
) -> BranchDownload:
    options.setdefault("transfer", fast_settings())
    options.setdefault("target", tmp_path / "model")
    options.setdefault("connections", 4 if SEGMENTED else 1)
    return BranchDownload(
        repo, branch, options=DownloadOptions(**options), client=HubClient(token=token), on_progress=progress
    )


def source_file(hub: HubEmulator, repo: str, branch: str, name: str) -> Path:
    return hub.root / repo / branch / name


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def blob_gets(hub: HubEmulator, since: float = 0.0) -> list[LoggedRequest]:
    """CDN GETs that arrived after ``since``, in arrival order (an interrupted answer is logged only when
    the emulator notices the client left, possibly after later requests)."""
    gets = [r for r in hub.requests if r.server == "cdn" and r.method == "GET" and r.time >= since]
    return sorted(gets, key=lambda r: r.time)


def range_start(request: LoggedRequest) -> int:
    return 0 if request.range is None else int(request.range.removeprefix("bytes=").split("-")[0])


def assert_served_once(gets: list[LoggedRequest], size: int, already: int = 0) -> None:
    """The answers' bytes tile the file (minus ``already`` bytes on disk) without overlap: every resume
    started at the exact byte where the bytes on disk ended, nothing was fetched twice."""
    spans = sorted((range_start(r), range_start(r) + r.bytes_sent) for r in gets if r.bytes_sent)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"bytes fetched twice: {spans}"
    assert sum(r.bytes_sent for r in gets) == size - already


def part_bytes_done(download: BranchDownload, name: str = WEIGHTS) -> int:
    state = download.folder.load_part_state(name)
    return 0 if state is None else state.bytes_done


def assert_complete(hub: HubEmulator, folder: Path, repo: str = REPO, branch: str = "main") -> None:
    state = FolderState(folder)
    marker = state.load_marker()
    assert marker is not None and marker.commit == hub.commit_of(repo, branch)
    for f in marker.files:
        assert (folder / f.path).read_bytes() == source_file(hub, repo, branch, f.path).read_bytes()
    assert not list((folder / ".quantdesk" / "parts").rglob("*.part"))


# -- the plain path --------------------------------------------------------------------------------------


def test_download_places_verified_files_and_marker(hub: HubEmulator, tmp_path: Path) -> None:
    events: list[DownloadProgress] = []
    result = make(tmp_path, progress=events.append).run()
    assert result.outcome is Outcome.COMPLETE
    assert_complete(hub, result.path)
    names = {f.path for f in result.files}
    assert WEIGHTS in names and "config.json" in names and "tokenizer.json" in names
    assert "README.md" not in names  # default selection: weights, configs, tokenizer
    assert events[-1].status is FileStatus.DONE and events[-1].done_bytes == events[-1].total_bytes
    assert sum(r.bytes_sent for r in blob_gets(hub)) == (hub.root / REPO / "main" / WEIGHTS).stat().st_size
    # a second run finds the marker and fetches nothing
    hub.requests.clear()
    again = make(tmp_path).run()
    assert again.outcome is Outcome.COMPLETE and again.fetched_files == ()
    assert not [r for r in hub.requests if "/resolve/" in r.path or r.server == "cdn"]


def test_all_files_option_fetches_everything(hub: HubEmulator, tmp_path: Path) -> None:
    result = make(tmp_path, all_files=True).run()
    assert "README.md" in {f.path for f in result.files}
    assert (result.path / "README.md").exists()


def test_default_folder_name_includes_non_main_branch(hub: HubEmulator, tmp_path: Path) -> None:
    branch = "gptq-4bit-32g-actorder_True"
    download = make(tmp_path, branch=branch, target=None)
    assert download.target.name == f"TheBloke_TinyLlama-GPTQ_{branch}"
    assert make(tmp_path, target=None).target.name == "TheBloke_TinyLlama-GPTQ"


# -- network faults --------------------------------------------------------------------------------------


def test_cut_once_resumes_from_exact_byte(hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(path_contains="/blobs/", cut_after_bytes=50_000)
    result = make(tmp_path).run()
    assert_complete(hub, result.path)
    gets = blob_gets(hub)
    if not SEGMENTED:
        assert [range_start(r) for r in gets] == [0, 50_000]
    assert any(r.bytes_sent == 50_000 for r in gets)  # the cut happened
    assert_served_once(gets, (result.path / WEIGHTS).stat().st_size)


def test_cut_every_time_with_progress_in_between(hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(path_contains="/blobs/", cut_after_bytes=40_000, cut_times=None)
    result = make(tmp_path).run()
    assert_complete(hub, result.path)
    gets = blob_gets(hub)
    if not SEGMENTED:
        assert [range_start(r) for r in gets] == [0, 40_000, 80_000, 120_000, 160_000]
    else:  # each 64 KiB segment was cut once at 40 000 and resumed
        starts = [*range(0, 198_872, 65536), *range(40_000, 198_872, 65536)]
        assert sorted(range_start(r) for r in gets) == sorted(starts)
    assert_served_once(gets, (result.path / WEIGHTS).stat().st_size)


def test_rst_is_retried_without_refetching(hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(path_contains="/blobs/", cut_after_bytes=60_000, cut_mode="rst", cut_times=2)
    result = make(tmp_path).run()
    assert_complete(hub, result.path)
    gets = blob_gets(hub)
    assert len(gets) >= 2
    if not SEGMENTED:
        starts = [range_start(r) for r in gets]
        assert starts == sorted(starts) and starts[0] == 0
    # each resume starts where the bytes on disk ended: nothing is fetched twice beyond what RST lost
    assert sum(r.bytes_sent for r in gets) <= (result.path / WEIGHTS).stat().st_size + 2 * 60_000


def test_5xx_burst_on_hub_and_cdn_is_retried(hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(path_contains="/resolve/", fail_first=3, fail_status=503)
    result = make(tmp_path).run()
    assert_complete(hub, result.path)
    hub.faults = Faults(path_contains="/blobs/", fail_first=3, fail_status=502)
    result = make(tmp_path, target=tmp_path / "other").run()
    assert_complete(hub, result.path)


def test_persistent_5xx_fails_with_a_clear_error(hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(path_contains="/blobs/", fail_first=100, fail_status=503)
    with pytest.raises(errors.HubServerError) as info:
        make(tmp_path).run()
    assert "503" in info.value.message
    assert FolderState(tmp_path / "model").load_marker() is None


def test_stall_reconnects_and_resumes(private_hub: HubEmulator, tmp_path: Path) -> None:
    # 1 byte/s: the first byte comes at once, then nothing for a second -> stall after 0.5 s. On a loaded
    # machine a reconnect's first byte can itself come late: those count as failures without progress,
    # so the test allows more of them than a user's default (the stall detection is what it tests).
    private_hub.faults = Faults(path_contains="/blobs/", throttle_bps=1)
    download = make(tmp_path, transfer=fast_settings(stall_timeout_s=0.5, max_failures=10))
    progress: list[DownloadProgress] = []
    download.on_progress = progress.append
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(download.run()))
    worker.start()
    while worker.is_alive() and not (
        progress and any(f.path == WEIGHTS and f.done_bytes >= 2 for f in progress[-1].files)
    ):
        worker.join(0.05)
    private_hub.faults = Faults()  # the "network" recovers
    worker.join(20)
    assert outcome and outcome[0].outcome is Outcome.COMPLETE
    assert_complete(private_hub, outcome[0].path)
    # Stalled answers are logged only once the emulator notices the client left: look at the last one,
    # which resumed from the bytes on disk and carried exactly the rest.
    size = (outcome[0].path / WEIGHTS).stat().st_size
    if not SEGMENTED:
        last = max(blob_gets(private_hub), key=lambda r: r.time)
        assert last.status == 206 and range_start(last) >= 2 and last.bytes_sent == size - range_start(last)
    else:  # four stalled connections, each resumed from its own byte (a stalled answer may count a byte
        # the client never read: the emulator counts what it wrote)
        assert sum(r.bytes_sent for r in blob_gets(private_hub)) <= size + 8


def test_throttled_download_reports_speed_and_eta(private_hub: HubEmulator, tmp_path: Path) -> None:
    # Throttled per connection: over four connections the same file must still take about a second, so
    # the smoothed speed (first sample after a quarter second) has time to show.
    private_hub.faults = Faults(path_contains="/blobs/", throttle_bps=60_000 if SEGMENTED else 200_000)
    events: list[DownloadProgress] = []
    make(tmp_path, progress=events.append).run()
    running = [e for e in events if e.status is FileStatus.RUNNING and e.speed_bps > 0]
    assert running, "no speed was reported"
    assert all(50_000 < e.speed_bps < 2_000_000 for e in running[2:])
    assert any(e.eta_s is not None and e.eta_s > 0 for e in running)
    weights = [f for e in running for f in e.files if f.path == WEIGHTS and f.status is FileStatus.RUNNING]
    # Partial progress is visible while the file runs (the last event may already show it all).
    assert any(0 < f.done_bytes < f.size for f in weights)


# -- verification ----------------------------------------------------------------------------------------


def _corrupt_blobs(hub: HubEmulator, tmp_path: Path, times: int | None) -> list[int]:
    """Serve a same-size corrupted copy of every blob ``times`` times (None: always)."""
    original = hub.store.blob
    served = [0]
    lock = threading.Lock()

    def corrupted(sha: str) -> tuple[Path, int] | None:
        found = original(sha)
        with lock:  # connections ask at once: write each corrupt copy once, never under a reader
            if found is None or (times is not None and served[0] >= times):
                return found
            served[0] += 1
            path, size = found
            bad = tmp_path / f"corrupt-{sha}"
            if not bad.exists():
                data = bytearray(path.read_bytes())
                data[len(data) // 2] ^= 0xFF
                bad.write_bytes(bytes(data))
            return bad, size

    hub.store.blob = corrupted  # type: ignore[method-assign]
    return served


def test_corrupted_bytes_are_detected_and_retried_once(private_hub: HubEmulator, tmp_path: Path) -> None:
    _corrupt_blobs(private_hub, tmp_path, times=4 if SEGMENTED else 1)  # one pass over the file
    result = make(tmp_path).run()
    assert_complete(private_hub, result.path)
    gets = blob_gets(private_hub)
    assert [range_start(r) for r in gets].count(0) == 2  # the whole file again, from zero
    assert sum(r.bytes_sent for r in gets) == 2 * (result.path / WEIGHTS).stat().st_size


def test_corruption_twice_is_a_clear_error_and_nothing_is_ready(
    private_hub: HubEmulator, tmp_path: Path
) -> None:
    _corrupt_blobs(private_hub, tmp_path, times=None)
    download = make(tmp_path)
    with pytest.raises(errors.VerificationError) as info:
        download.run()
    assert WEIGHTS in info.value.message and "sha256" in info.value.message
    assert not (download.target / WEIGHTS).exists()
    assert not download.folder.part_path(WEIGHTS).exists()
    assert download.folder.load_marker() is None
    gets = blob_gets(private_hub)
    assert [range_start(r) for r in gets].count(0) == 2
    assert (
        sum(r.bytes_sent for r in gets) == 2 * source_file(private_hub, REPO, "main", WEIGHTS).stat().st_size
    )


# -- auth ------------------------------------------------------------------------------------------------


def _all_text_under(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


def test_gated_repo_without_and_with_wrong_token(hub: HubEmulator, tmp_path: Path) -> None:
    with pytest.raises(errors.GatedRepoError) as none:
        make(tmp_path, repo="TheBloke/Gated-GPTQ").run()
    assert "token" in none.value.user_message
    with pytest.raises(errors.GatedRepoError) as wrong:
        make(tmp_path, repo="TheBloke/Gated-GPTQ", token=UNGRANTED_TOKEN).run()
    assert "not been granted" in wrong.value.message
    with pytest.raises(errors.TokenRejectedError):
        make(tmp_path, repo="TheBloke/Gated-GPTQ", token="hf_invalid").run()


def test_gated_repo_with_token_survives_pause_and_never_leaks_it(
    private_hub: HubEmulator, tmp_path: Path, isolated_home: Path
) -> None:
    private_hub.faults = Faults(path_contains="/blobs/", throttle_bps=150_000)
    download = make(tmp_path, repo="TheBloke/Gated-GPTQ", token=GRANTED_TOKEN)

    def pause_midway(p: DownloadProgress) -> None:
        if any(f.path == WEIGHTS and f.done_bytes > 30_000 for f in p.files):
            download.pause()

    download.on_progress = pause_midway
    assert download.run().outcome is Outcome.PAUSED
    assert part_bytes_done(download) > 0
    private_hub.faults = Faults()
    result = make(tmp_path, repo="TheBloke/Gated-GPTQ", token=GRANTED_TOKEN).run()
    assert_complete(private_hub, result.path, repo="TheBloke/Gated-GPTQ")
    resolves = [r for r in private_hub.requests if "/resolve/" in r.path]
    assert resolves and all(r.headers.get("authorization") == f"Bearer {GRANTED_TOKEN}" for r in resolves)
    assert blob_gets(private_hub) and all("authorization" not in r.headers for r in blob_gets(private_hub))
    assert GRANTED_TOKEN not in _all_text_under(tmp_path / "model")
    assert GRANTED_TOKEN not in _all_text_under(isolated_home)


# -- safety ----------------------------------------------------------------------------------------------


def test_traversal_filename_in_tree_is_refused_before_writing(
    private_hub: HubEmulator, tmp_path: Path
) -> None:
    # A backslash is a path separator on Windows: "..\\..\\evil.json" would climb out of the folder there.
    (private_hub.root / REPO / "main" / "..\\..\\evil.json").write_text("{}")
    download = make(tmp_path)
    with pytest.raises(errors.UnsafeFilenameError) as info:
        download.run()
    assert "evil.json" in info.value.message
    assert not download.target.exists()
    assert not list(tmp_path.rglob("evil.json"))


class _FakeTreeClient(HubClient):
    """The emulator's answers, plus one hostile name in the tree."""

    def __init__(self, hostile: str) -> None:
        super().__init__()
        self.hostile = hostile

    def file_tree(self, repo_id: str, commit: str, branch: str) -> list[Any]:
        from app.catalog.hub_client import RemoteFile

        return [*super().file_tree(repo_id, commit, branch), RemoteFile(self.hostile, 2, None, "0" * 40)]


@pytest.mark.parametrize("name", ["../evil.json", "/etc/evil.json", "C:/evil.json", "a/../../evil.json"])
def test_hostile_names_never_write_outside(hub: HubEmulator, tmp_path: Path, name: str) -> None:
    target = tmp_path / "deep" / "model"
    download = BranchDownload(
        REPO, options=DownloadOptions(target=target, transfer=fast_settings()), client=_FakeTreeClient(name)
    )
    with pytest.raises(errors.UnsafeFilenameError):
        download.run()
    assert not list(tmp_path.rglob("evil.json"))
    assert not target.exists()


# -- disk space ------------------------------------------------------------------------------------------


class _Usage:
    def __init__(self, free: int) -> None:
        self.free = free


def test_disk_space_is_checked_before_starting(hub: HubEmulator, tmp_path: Path) -> None:
    download = make(tmp_path, disk_usage=lambda _p: _Usage(1000), margin_bytes=1024 * 1024)
    with pytest.raises(errors.DiskFullError) as info:
        download.run()
    message = info.value.message
    assert "1000 B is free" in message and "1.00 MiB margin" in message and "KiB more" in message
    assert not download.target.exists()
    assert not hub.requests or not blob_gets(hub)


class _FullDisk:
    """A ``pwrite`` that fails with ENOSPC once ``budget`` bytes were written in total, like a file system
    that fills up (a partial write first, then the error)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.lock = threading.Lock()

    def __call__(self, fd: int, data: memoryview, offset: int) -> int:
        with self.lock:
            if self.budget <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            n = os.pwrite(fd, data[: self.budget], offset)
            self.budget -= n
            return n


def test_enospc_midway_pauses_keeps_valid_segments_and_resumes(hub: HubEmulator, tmp_path: Path) -> None:
    download = make(tmp_path, jobs=1, transfer=fast_settings(pwrite=_FullDisk(150_000)))
    events: list[DownloadProgress] = []
    download.on_progress = events.append
    with pytest.raises(errors.DiskFullError) as info:
        download.run()
    assert "disk is full" in info.value.message
    assert events[-1].status is FileStatus.PAUSED and "disk is full" in events[-1].message
    state = download.folder.load_part_state(WEIGHTS)
    source = source_file(hub, REPO, "main", WEIGHTS).read_bytes()
    assert state is not None and 0 < state.bytes_done < len(source)
    part = download.folder.part_path(WEIGHTS).read_bytes()
    for start, _end, done in state.segments:
        assert part[start : start + done] == source[start : start + done]
    assert download.folder.load_marker() is None
    since = time.time()
    result = make(tmp_path).run()  # space freed
    assert_complete(hub, result.path)
    assert_served_once(blob_gets(hub, since), len(source), already=state.bytes_done)


def test_no_room_for_the_file_fails_before_any_byte_is_fetched(hub: HubEmulator, tmp_path: Path) -> None:
    """The file's size is reserved first: a disk that cannot hold it says so at the start, not at 90 %."""
    reserved: list[int] = []

    def full(fd: int, size: int) -> None:
        reserved.append(size)
        if size > 100_000:  # room for the small files, not for the weights
            raise OSError(errno.ENOSPC, "No space left on device")
        preallocate(fd, size)

    download = make(tmp_path, jobs=1, transfer=fast_settings(allocate=full))
    with pytest.raises(errors.DiskFullError) as info:
        download.run()
    assert "disk is full" in info.value.message and WEIGHTS in info.value.message
    assert source_file(hub, REPO, "main", WEIGHTS).stat().st_size in reserved
    assert not [r for r in blob_gets(hub) if WEIGHTS in r.path or r.bytes_sent > 10_000]


# -- pause, cancel, crash --------------------------------------------------------------------------------


def test_pause_then_resume_fetches_only_the_rest(private_hub: HubEmulator, tmp_path: Path) -> None:
    private_hub.faults = Faults(path_contains="/blobs/", throttle_bps=200_000)
    download = make(tmp_path, jobs=1)

    def pause_midway(p: DownloadProgress) -> None:
        if any(f.path == WEIGHTS and f.done_bytes > 50_000 for f in p.files):
            download.pause()

    download.on_progress = pause_midway
    first = download.run()
    assert first.outcome is Outcome.PAUSED
    state = download.folder.load_part_state(WEIGHTS)
    assert state is not None and state.sha256 and state.commit and state.validator
    have = state.bytes_done
    source = source_file(private_hub, REPO, "main", WEIGHTS).read_bytes()
    assert 0 < have < len(source) and sum(s[2] for s in state.segments) == have
    part = download.folder.part_path(WEIGHTS).read_bytes()
    for start, _end, done in state.segments:  # what the record calls done is on disk
        assert part[start : start + done] == source[start : start + done]
    assert download.folder.load_marker() is None
    private_hub.faults = Faults()
    since = time.time()
    download.on_progress = None
    result = download.run()  # the same object resumes (the GUI's "Resume" button)
    assert_complete(private_hub, result.path)
    resumed = blob_gets(private_hub, since)
    assert sorted(range_start(r) for r in resumed) == sorted(s + d for s, e, d in state.segments if d < e - s)
    assert_served_once(resumed, len(source), already=have)
    # files finished before the pause are not fetched again
    assert set(result.fetched_files) == {f.path for f in result.files} - set(first.fetched_files)
    assert first.fetched_files and WEIGHTS in result.fetched_files


def test_cancel_can_delete_partial_files(private_hub: HubEmulator, tmp_path: Path) -> None:
    private_hub.faults = Faults(path_contains="/blobs/", throttle_bps=200_000)
    download = make(tmp_path)

    def cancel_midway(p: DownloadProgress) -> None:
        if any(f.path == WEIGHTS and f.done_bytes > 20_000 for f in p.files):
            download.cancel(delete_partial=True)

    download.on_progress = cancel_midway
    assert download.run().outcome is Outcome.CANCELLED
    assert not download.folder.part_path(WEIGHTS).exists()
    assert download.folder.load_marker() is None


def test_foreign_part_is_discarded_not_trusted(hub: HubEmulator, tmp_path: Path) -> None:
    download = make(tmp_path)
    part = download.folder.part_path(WEIGHTS)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)  # no state record: unknown origin
    result = download.run()
    assert_complete(hub, result.path)
    assert_served_once(blob_gets(hub), len(source_file(hub, REPO, "main", WEIGHTS).read_bytes()))


def test_a_429_retry_after_is_honoured_by_file_transfers(private_hub: HubEmulator, tmp_path: Path) -> None:
    private_hub.faults = Faults(path_contains="/blobs/", fail_first=1, fail_status=429, retry_after="2")
    result = make(tmp_path).run()
    assert_complete(private_hub, result.path)
    blobs = blob_gets(private_hub)
    assert blobs[0].status == 429
    # The range that was told to wait is asked again only after the server's 2 s, not after 0.5 s (other
    # connections' requests already in flight at that moment may finish meanwhile).
    again = [r for r in blobs[1:] if range_start(r) == range_start(blobs[0])]
    assert again and again[0].time - blobs[0].time >= 1.9
