"""Nothing lost in a model folder: one model per folder, one writer per folder, damaged records set
aside and recovered, cancel-and-delete that removes exactly what the download wrote, verify and repair,
one-sentence errors for an unusable --dir, a disk margin that scales, retries reported as they happen."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from app import cli, errors
from app.atomic_files import read_json_store
from app.downloads import DownloadProgress, Outcome, notices
from app.downloads.cleanup import discard_download
from app.downloads.registry import incomplete_downloads, list_local_models, quantdesk_models
from app.downloads.state import FolderState, PartState
from app.downloads.verify import CheckStatus, repair_folder, verify_folder
from app.paths import app_paths
from tests.hub_emulator import Faults, HubEmulator
from tests.test_downloads import WEIGHTS, assert_complete, blob_gets, fast_settings, make, range_start

ROOT = Path(__file__).resolve().parent.parent
REPO = "TheBloke/TinyLlama-GPTQ"
OTHER_REPO = "TheBloke/TinyChatML-GPTQ"
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _no_leftover_notices() -> None:
    notices.take()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _pause_midway(download: Any, after: int = 30_000) -> None:
    def on_progress(p: DownloadProgress) -> None:
        if any(f.path == WEIGHTS and f.done_bytes > after for f in p.files):
            download.pause()

    download.on_progress = on_progress


# -- item 2: one model per folder --


def test_another_repo_into_a_complete_folder_is_refused_and_nothing_changes(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make(tmp_path).run().path
    before = _snapshot(folder)
    with pytest.raises(errors.FolderConflictError) as info:
        make(tmp_path, repo=OTHER_REPO).run()
    assert REPO in info.value.message and OTHER_REPO in info.value.message
    with pytest.raises(errors.FolderConflictError):
        make(tmp_path, branch="gptq-4bit-32g-actorder_True").run()
    assert _snapshot(folder) == before
    # The CLI: one sentence on stderr, exit 1, nothing on stdout.
    assert cli.main(["download", OTHER_REPO, "--dir", str(folder)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and [line for line in err.splitlines() if line.startswith("error:")] == [
        next(line for line in err.splitlines() if "would mix two models" in line)
    ]
    assert _snapshot(folder) == before


def test_a_partial_download_of_another_repo_is_not_mixed_either(hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(path_contains="/blobs/", throttle_bps=200_000)
    first = make(tmp_path)
    _pause_midway(first)
    assert first.run().outcome is Outcome.PAUSED
    hub.faults = Faults()
    with pytest.raises(errors.FolderConflictError):
        make(tmp_path, repo=OTHER_REPO).run()
    assert first.folder.load_job() is not None and first.folder.load_job().repo_id == REPO  # type: ignore[union-attr]


def test_a_folder_with_foreign_files_is_refused(hub: HubEmulator, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"mine": true}')
    with pytest.raises(errors.FolderConflictError) as info:
        make(tmp_path).run()
    assert "config.json" in info.value.message
    assert (folder / "config.json").read_text() == '{"mine": true}'
    assert not (folder / ".quantdesk").exists()


# -- item 3: damaged stores are set aside and recovered --


def test_read_json_store_sets_damaged_files_aside(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    assert read_json_store(path) == (None, None)  # missing
    path.write_bytes(b"")
    assert read_json_store(path) == (None, None)  # empty: nothing lost
    path.write_text('{"a": 1}')
    assert read_json_store(path) == ({"a": 1}, None)
    for damaged in (b'{"a": 1', b"\xff\xfe\x00garbage", b"[1, 2]"):
        path.write_bytes(damaged)
        data, warning = read_json_store(path, what="The test store")
        assert data is None and warning is not None and "The test store" in warning
        assert not path.exists()
        aside = [p for p in tmp_path.iterdir() if p.name.startswith("store.json.corrupt-")]
        assert any(p.read_bytes() == damaged for p in aside), "the damaged bytes are kept, never deleted"
        assert str(next(p for p in aside if p.read_bytes() == damaged)) in warning


def test_a_store_another_reader_set_aside_first_is_read_again_without_a_false_alarm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two readers saw the same damaged bytes; the other one renamed the file first and wrote a fresh
    store. This one reads the fresh store: it neither renames it aside nor says anything."""
    import app.atomic_files as atomic_files

    path = tmp_path / "store.json"
    path.write_bytes(b"\xff\xfe not json")
    real_read = atomic_files._read_with_identity
    reads = 0

    def the_other_reader_acts_after_this_read(target: Path) -> tuple[bytes, tuple[int, int, int]]:
        nonlocal reads
        reads += 1
        seen = real_read(target)
        if reads == 1:  # the other reader's rename, and the fresh store it started
            atomic_files.set_aside(target)
            atomic_files.write_json_atomic(target, {"fresh": True})
        return seen

    monkeypatch.setattr(atomic_files, "_read_with_identity", the_other_reader_acts_after_this_read)
    assert read_json_store(path, what="The test store") == ({"fresh": True}, None)
    assert len(list(tmp_path.glob("store.json.corrupt-*"))) == 1  # set aside once, by the other reader
    assert json.loads(path.read_text()) == {"fresh": True}


def test_readers_racing_over_a_damaged_job_record_set_it_aside_once(tmp_path: Path) -> None:
    """The window's model list and its download list read a folder's records at the same moment on
    start-up; a damaged job record is set aside once and said once, and every reader gets the job."""
    folder = FolderState(tmp_path / "TheBloke_TinyLlama-GPTQ")
    part = folder.part_path(WEIGHTS)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)
    url = f"http://127.0.0.1:1/{REPO}/resolve/{'a' * 40}/{WEIGHTS}"
    folder.save_part_state(WEIGHTS, PartState(url, "a" * 40, WEIGHTS, 1000, "b" * 64, bytes_done=500))
    for _ in range(20):
        notices.take()
        folder.job_path.write_bytes(b"\xff\xfe not json")
        start = threading.Barrier(6)
        jobs: list[Any] = []

        def read(start: threading.Barrier, jobs: list[Any]) -> None:
            start.wait()
            jobs.append(folder.load_job())

        readers = [threading.Thread(target=read, args=(start, jobs)) for _ in range(6)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
        said = notices.take()
        assert len(said) == 1 and "set it aside" in said[0], said
        assert all(job is not None and job.repo_id == REPO for job in jobs)
        assert len(list(folder.state_dir.glob("job.json.corrupt-*"))) == 1
        for aside in folder.state_dir.glob("job.json.corrupt-*"):
            aside.unlink()


@pytest.mark.parametrize("damage", ["truncated", "non-utf8"])
def test_damaged_downloads_index_keeps_its_folders(hub: HubEmulator, tmp_path: Path, damage: str) -> None:
    folder = make(tmp_path, target=tmp_path / "elsewhere" / "my-model").run().path
    index = app_paths().data_dir / "downloads.json"
    text = index.read_bytes()
    index.write_bytes(text[:-4] if damage == "truncated" else b"\xff\xfe" + text)
    models = quantdesk_models(tmp_path / "no-models-dir")
    assert [m.path for m in models] == [folder]  # recovered from the damaged index
    said = notices.take()
    assert len(said) == 1 and "set it aside" in said[0] and "1 model folder(s)" in said[0]
    assert list(index.parent.glob("downloads.json.corrupt-*"))
    assert json.loads(index.read_text()) == {"folders": [str(folder.resolve())]}


@pytest.mark.parametrize("damage", [b'{"repo_id": "TheBl', b"\x80\x81\x82 not utf-8"])
def test_damaged_job_record_keeps_the_partial_download_listed_and_resumable(
    private_hub: HubEmulator, tmp_path: Path, damage: bytes
) -> None:
    models_dir = tmp_path / "models"
    private_hub.faults = Faults(path_contains="/blobs/", throttle_bps=200_000)
    download = make(tmp_path, target=None, models_dir=models_dir)
    _pause_midway(download)
    assert download.run().outcome is Outcome.PAUSED
    # The part is reserved at full size up front: its record says how many bytes are really there.
    state = download.folder.load_part_state(WEIGHTS)
    assert state is not None and 0 < state.bytes_done < state.expected_size
    have = state.bytes_done
    download.folder.job_path.write_bytes(damage)

    listed = incomplete_downloads(models_dir)
    assert [(m.repo_id, m.branch, m.path) for m in listed] == [(REPO, "main", download.target)]
    said = notices.take()
    assert len(said) == 1 and "set it aside" in said[0] and "partial file" in said[0]
    assert list(download.folder.state_dir.glob("job.json.corrupt-*"))

    private_hub.faults = Faults()
    since = time.time()
    result = make(tmp_path, target=None, models_dir=models_dir).run()
    assert_complete(private_hub, result.path)
    assert range_start(blob_gets(private_hub, since)[0]) == have  # the bytes on disk were kept


def test_cli_reports_a_damaged_record_on_stderr(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make(tmp_path).run().path
    FolderState(folder).marker_path.write_bytes(b"\xff\xff")
    hub.requests.clear()
    assert cli.main(["download", REPO, "--dir", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(folder)
    assert "warning: The completion record" in err and "set it aside" in err
    # the files in place were checked by hash and kept: nothing was fetched again
    assert not blob_gets(hub)
    assert_complete(hub, folder)


# -- item 4: cancel and delete removes what the download wrote --


def test_cancel_and_delete_removes_the_folder_it_created(private_hub: HubEmulator, tmp_path: Path) -> None:
    private_hub.faults = Faults(path_contains="/blobs/", throttle_bps=200_000)
    models_dir = tmp_path / "models"
    download = make(tmp_path, target=None, models_dir=models_dir)

    def cancel_midway(p: DownloadProgress) -> None:
        finished = sum(1 for f in p.files if f.status.value == "done")
        if finished and any(f.path == WEIGHTS and f.done_bytes > 20_000 for f in p.files):
            download.cancel(delete_partial=True)

    download.on_progress = cancel_midway
    assert download.run().outcome is Outcome.CANCELLED
    assert not download.target.exists()
    assert list_local_models(models_dir) == []


def test_cancel_and_delete_keeps_files_it_did_not_write(private_hub: HubEmulator, tmp_path: Path) -> None:
    private_hub.faults = Faults(path_contains="/blobs/", throttle_bps=200_000)
    download = make(tmp_path)
    _pause_midway(download)
    assert download.run().outcome is Outcome.PAUSED
    (download.target / "my-notes.txt").write_text("keep me")  # the user's file, added meanwhile
    # Cancel-and-delete of a stopped download (what the Downloads page does for a paused one).
    discard_download(download.target)
    assert sorted(p.name for p in download.target.iterdir()) == ["my-notes.txt"]


def test_a_folder_deleted_by_hand_leaves_the_registry(hub: HubEmulator, tmp_path: Path) -> None:
    import shutil

    folder = make(tmp_path, target=tmp_path / "custom" / "m").run().path
    assert [m.path for m in list_local_models()] == [folder]
    shutil.rmtree(folder)
    assert list_local_models() == []
    index = json.loads((app_paths().data_dir / "downloads.json").read_text())
    assert index == {"folders": []}


# -- item 5: verify and repair --


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_finds_a_bit_flip_and_repair_refetches_only_that_file(
    hub: HubEmulator, tmp_path: Path
) -> None:
    folder = make(tmp_path).run().path
    assert verify_folder(folder).ok
    _flip_bit(folder / WEIGHTS)
    _flip_bit(folder / "config.json")  # a small file: checked by its git blob id
    seen: list[tuple[int, int]] = []
    report = verify_folder(folder, on_progress=lambda done, total, _name: seen.append((done, total)))
    assert {(c.path, c.status) for c in report.bad} == {
        (WEIGHTS, CheckStatus.WRONG_HASH),
        ("config.json", CheckStatus.WRONG_HASH),
    }
    assert seen and seen[-1][0] == seen[-1][1]  # progress reaches the end
    hub.requests.clear()
    result = repair_folder(report)
    assert set(result.fetched_files) == {WEIGHTS, "config.json"}
    assert sum(r.bytes_sent for r in blob_gets(hub)) == (folder / WEIGHTS).stat().st_size
    assert_complete(hub, folder)
    assert verify_folder(folder).ok


def test_cli_verify_and_repair(hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make(tmp_path).run().path
    assert cli.main(["download", REPO, "--dir", str(folder)]) == 0
    _out, err = capsys.readouterr()
    assert f"quantdesk verify {folder}" in err  # download of a complete folder offers verify
    assert cli.main(["verify", str(folder)]) == 0
    assert "intact" in capsys.readouterr().out
    _flip_bit(folder / WEIGHTS)
    assert cli.main(["verify", str(folder)]) == 1
    out, err = capsys.readouterr()
    assert f"wrong content: {WEIGHTS}" in out and "--repair" in err
    assert cli.main(["verify", str(folder), "--repair"]) == 0
    out, _err = capsys.readouterr()
    assert "Repaired 1 file(s)" in out and "intact" in out
    assert cli.main(["verify", str(tmp_path / "nothing")]) == 1
    assert "not a complete QuantDesk model folder" in capsys.readouterr().err


# -- item 6: one writer per folder --


def test_a_second_download_into_a_busy_folder_says_so_and_the_first_finishes(
    private_hub: HubEmulator, tmp_path: Path
) -> None:
    # ~7 s for the weights: the second process (a fresh interpreter) starts well before they are done.
    private_hub.faults = Faults(path_contains="/blobs/", throttle_bps=30_000)
    first = make(tmp_path)
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(first.run()))
    worker.start()
    part = first.folder.part_path(WEIGHTS)
    deadline = time.monotonic() + 20
    while not (part.exists() and part.stat().st_size > 0):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(errors.FolderBusyError) as info:
        make(tmp_path).run()
    assert f"already downloading into {first.target}" in info.value.message
    # Another process (the CLI) is refused the same way, with one sentence and a non-zero exit.
    command = [sys.executable, "-m", "app.cli", "download", REPO, "--dir", str(first.target)]
    second = subprocess.run(command, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True)
    assert second.returncode == 1 and second.stdout == ""
    assert [line for line in second.stderr.splitlines() if line.startswith("error:")] == [
        f"error: QuantDesk is already downloading into {first.target}. "
        "Wait for that download to finish (or pause it where it runs), then try again."
    ]
    private_hub.faults = Faults()
    worker.join(60)
    assert outcome and outcome[0].outcome is Outcome.COMPLETE
    assert_complete(private_hub, first.target)
    size = (first.target / WEIGHTS).stat().st_size
    assert sum(r.bytes_sent for r in blob_gets(private_hub)) == size  # fetched once


# -- item 7: an unusable --dir is one sentence --


def _cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert out == "" and len(lines) == 1 and "Traceback" not in err
    return lines[0]


def test_dir_that_is_a_file_or_under_a_file(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "is a file, not a folder" in _cli_error(capsys, ["download", REPO, "--dir", str(a_file)])
    line = _cli_error(capsys, ["download", REPO, "--dir", str(a_file / "model")])
    assert f"cannot be created: {a_file} is a file" in line
    assert a_file.read_text() == "x"


def test_dir_on_a_read_only_file_system(
    hub: HubEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ro" / "model"
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        if self == target:  # root ignores chmod: inject the file system's answer at the write
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    line = _cli_error(capsys, ["download", REPO, "--dir", str(target)])
    assert f"The model folder {target} is on a read-only file system." in line


# -- item 10: the disk margin scales with the download --


class _Usage:
    def __init__(self, free: int) -> None:
        self.free = free


def test_disk_margin_scales_with_the_download(hub: HubEmulator, tmp_path: Path) -> None:
    from app.downloads.preflight import disk_margin

    assert disk_margin(23 * MiB) == 8 * MiB  # a 23 MiB download fits in 40 MiB free
    assert disk_margin(1024 * MiB) == pytest.approx(0.02 * 1024 * MiB, abs=1)
    assert disk_margin(100 * 1024 * MiB) == 256 * MiB
    size = sum(p.stat().st_size for p in (hub.root / REPO / "main").iterdir() if p.is_file())
    result = make(tmp_path, disk_usage=lambda _p: _Usage(size + 9 * MiB)).run()
    assert result.outcome is Outcome.COMPLETE  # a fixed 256 MiB margin refused this
    with pytest.raises(errors.DiskFullError) as info:
        make(tmp_path, target=tmp_path / "two", disk_usage=lambda _p: _Usage(2 * MiB)).run()
    assert "(+ 8.00 MiB margin)" in info.value.message and "2.00 MiB is free" in info.value.message


# -- item 16: retries are shown as they happen; hard errors fail at once --


def test_retries_are_reported_as_they_happen(hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(path_contains="/blobs/", fail_first=2, fail_status=503)
    events: list[DownloadProgress] = []
    result = make(tmp_path, progress=events.append).run()
    assert result.outcome is Outcome.COMPLETE
    messages = [e.message for e in events if e.message.startswith("retrying")]
    assert messages[0].startswith("retrying (1/3) after: ") and "503" in messages[0]
    assert any(m.startswith("retrying (2/3)") for m in messages)
    assert events[-1].message == ""


def test_a_hard_server_error_fails_at_once(hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(path_contains="/blobs/", fail_first=100, fail_status=501)
    started = time.monotonic()
    with pytest.raises(errors.HubServerError) as info:
        make(tmp_path, transfer=fast_settings(backoff_base_s=1.0, backoff_max_s=5.0)).run()
    assert time.monotonic() - started < 3.0
    assert "501" in info.value.message
    assert len(blob_gets(hub)) == 1


def test_speed_ignores_the_wait_before_the_first_byte() -> None:
    from app.downloads.progress import SpeedMeter

    now = [0.0]
    meter = SpeedMeter(clock=lambda: now[0])
    now[0] += 30.0  # connecting, retrying with backoff, or paused: no byte for 30 s
    for _ in range(8):  # then a steady 1 MB/s for 2 s
        meter.add(250_000)
        now[0] += 0.25
    assert meter.rate == pytest.approx(1_000_000, rel=0.15)
