"""Downloads across processes and commands: kill -9 and restart, the CLI, updates, the local registry."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import cli, errors
from app.catalog.hub_client import HubClient
from app.downloads import BranchDownload, DownloadOptions, Outcome
from app.downloads.progress import SpeedMeter, eta
from app.downloads.registry import hf_cache_dir, incomplete_downloads, list_local_models
from app.downloads.state import FolderState
from app.downloads.target import validate_filename
from tests.hub_emulator import Faults, HubEmulator

ROOT = Path(__file__).resolve().parent.parent
REPO = "TheBloke/TinyLlama-GPTQ"
WEIGHTS = "model.safetensors"


def _bytes_done(folder: FolderState) -> int:
    state = folder.load_part_state(WEIGHTS)
    return 0 if state is None else state.bytes_done


def _cdn_gets(hub: HubEmulator, since: float) -> list[object]:
    gets = [r for r in hub.requests if r.server == "cdn" and r.method == "GET" and r.time >= since]
    return sorted(gets, key=lambda r: r.time)


def test_sigkill_mid_file_then_restart_fetches_only_the_missing_range(
    private_hub: HubEmulator, tmp_path: Path
) -> None:
    target = tmp_path / "model"
    command = [sys.executable, "-m", "app.cli", "download", REPO, "--dir", str(target)]
    folder = FolderState(target)
    private_hub.faults = Faults(path_contains="/blobs/", throttle_bps=60_000)
    proc = subprocess.Popen(
        command, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while _bytes_done(folder) < 30_000:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    have = _bytes_done(folder)  # what the record says is on disk: the resume starts there
    source = (private_hub.root / REPO / "main" / WEIGHTS).read_bytes()
    assert 0 < have < len(source)
    assert folder.part_path(WEIGHTS).read_bytes()[:have] == source[:have]
    assert FolderState(target).load_marker() is None
    assert [m.path for m in incomplete_downloads()] == [target.resolve()]  # found on the next start

    private_hub.faults = Faults()
    since = time.time()
    rerun = subprocess.run(
        command, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=60
    )
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip().splitlines()[-1] == str(target)
    assert hashlib.sha256((target / WEIGHTS).read_bytes()).hexdigest() == hashlib.sha256(source).hexdigest()
    gets = _cdn_gets(private_hub, since)
    assert [(g.range, g.bytes_sent) for g in gets] == [(f"bytes={have}-", len(source) - have)]  # type: ignore[attr-defined]


def test_cli_download_then_branches_shows_downloaded(
    private_hub: HubEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    branch = "gptq-4bit-32g-actorder_True"
    assert cli.main(["download", f"{REPO}:{branch}", "--jobs", "2"]) == 0
    out, err = capsys.readouterr()
    folder = Path(out.strip().splitlines()[-1])
    assert folder.name == f"TheBloke_TinyLlama-GPTQ_{branch}" and (folder / WEIGHTS).exists()
    assert "100.0%" in err

    assert cli.main(["branches", REPO, "--json"]) == 0
    rows = {r["branch"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[branch]["local"] == "downloaded" and rows["main"]["local"] is None
    assert cli.main(["branches", REPO]) == 0
    table = capsys.readouterr().out
    assert "Local" in table and any(
        line.startswith(branch) and "downloaded" in line for line in table.splitlines()
    )

    # the branch moves on the Hub: the table says so, and updating fetches only what changed
    config = private_hub.root / REPO / branch / "config.json"
    config.write_text(config.read_text().replace('"bos_token_id"', '"foo": 1, "bos_token_id"'))
    assert cli.main(["branches", REPO, "--json"]) == 0
    rows = {r["branch"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[branch]["local"] == "update available"
    download = BranchDownload(REPO, branch)
    update = download.check_update()
    assert update is not None and update.update_available
    assert [f.path for f in update.changed] == ["config.json"]
    since = time.time()
    result = download.run()
    assert result.fetched_files == ("config.json",)
    assert not _cdn_gets(private_hub, since)
    assert (result.path / "config.json").read_bytes() == config.read_bytes()
    assert FolderState(result.path).load_marker().commit == private_hub.commit_of(REPO, branch)  # type: ignore[union-attr]


def test_cli_errors_are_one_line_on_stderr(hub: HubEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["download", "TheBloke/Gated-GPTQ"]) == 1
    out, err = capsys.readouterr()
    errors_printed = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors_printed) == 1 and "gated" in errors_printed[0]
    assert out == ""
    assert cli.main(["download", "TheBloke/Nope-GPTQ"]) == 1
    assert "not found" in capsys.readouterr().err


@pytest.mark.usefixtures("ctrl_c_reaches_children")
def test_ctrl_c_leaves_a_resumable_state(private_hub: HubEmulator, tmp_path: Path) -> None:
    private_hub.faults = Faults(path_contains="/blobs/", throttle_bps=100_000)
    target = tmp_path / "model"
    command = [sys.executable, "-m", "app.cli", "download", REPO, "--dir", str(target)]
    part = FolderState(target).part_path(WEIGHTS)
    proc = subprocess.Popen(
        command, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while _bytes_done(FolderState(target)) < 20_000:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert b"Run the same command again to resume" in err
    assert part.exists() and FolderState(target).load_part_state(WEIGHTS) is not None
    private_hub.faults = Faults()
    rerun = subprocess.run(
        command, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=60
    )
    assert rerun.returncode == 0 and rerun.stdout.strip().splitlines()[-1] == str(target)


def test_model_in_hf_cache_is_listed_and_not_fetched_twice(hub: HubEmulator, tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot = snapshot_download(
        REPO, revision="main", cache_dir=hf_cache_dir(), endpoint=hub.endpoint, token=False
    )
    listed = [m for m in list_local_models() if m.source == "hf-cache"]
    assert [(m.repo_id, m.branch, m.complete) for m in listed] == [(REPO, "main", True)]
    since = time.time()
    result = BranchDownload(REPO, options=DownloadOptions(target=tmp_path / "m")).run()
    assert result.outcome is Outcome.COMPLETE and result.source == "hf-cache"
    assert result.path == Path(snapshot)
    assert not _cdn_gets(hub, since)


def test_wrong_branch_is_a_clear_error(hub: HubEmulator, tmp_path: Path) -> None:
    with pytest.raises(errors.RevisionNotFoundError):
        BranchDownload(REPO, "nope", options=DownloadOptions(target=tmp_path / "m"), client=HubClient()).run()


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../x",
        "a/../../x",
        "/etc/passwd",
        "C:\\x",
        "C:/x",
        "a\\b",
        "./x",
        "a//b",
        ".quantdesk/job.json",
        "a\x00b",
    ],
)
def test_unsafe_filenames_are_rejected(name: str) -> None:
    with pytest.raises(errors.UnsafeFilenameError):
        validate_filename(name)


@pytest.mark.parametrize("name", ["model.safetensors", "sub/dir/file.json", "a..b.txt", ".gitattributes"])
def test_ordinary_filenames_are_accepted(name: str) -> None:
    assert validate_filename(name) == name


def test_speed_is_smoothed_and_eta_follows() -> None:
    now = [0.0]
    meter = SpeedMeter(time_constant_s=1.0, sample_s=0.25, clock=lambda: now[0])
    for _ in range(20):  # steady 1 MB/s
        now[0] += 0.25
        meter.add(250_000)
    assert meter.rate == pytest.approx(1_000_000, rel=0.01)
    now[0] += 0.25
    meter.add(2_500_000)  # one burst moves the average only part of the way
    assert 1_000_000 < meter.rate < 10_000_000 * 0.5
    assert eta(3_000_000, 1_000_000) == pytest.approx(3.0)
    assert eta(10, 0.0) is None and eta(0, 0.0) == 0.0
