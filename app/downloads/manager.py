"""A branch download: pick the files, check the disk, run transfers in parallel, mark completion.

Threads, not asyncio: each transfer is a blocking stream over one connection, which is what the GUI's
worker thread and the CLI both want. Pause and cancel are a shared ``threading.Event`` the transfers
check between chunks; the ``.part`` files and records stay on disk, so the next :meth:`run` (in this
process or after a crash) resumes from the last byte written.

The completion marker is the single signal "this folder is a usable model"; it is removed before the
folder changes and written last, after every file is verified and in place.

A folder has one writer at a time (:mod:`app.downloads.lock`) and holds one model: a folder with
another repo or branch in it, or with files QuantDesk did not write, is refused rather than mixed.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from app import errors
from app.auth import read_token
from app.catalog.hub_client import HubClient, RemoteFile
from app.downloads import registry
from app.downloads.cleanup import WrittenLog, discard_download
from app.downloads.lock import folder_lock
from app.downloads.preflight import DiskUsage, check_free_space, check_owner, existing_ancestor
from app.downloads.progress import FileStatus, ProgressCallback, ProgressTracker, TrackerHooks
from app.downloads.state import CompletionMarker, FolderState, JobRecord, PlannedFile
from app.downloads.target import STATE_DIR_NAME, check_target, default_target, folder_error, validate_filename
from app.downloads.transfer import DEFAULT_CONNECTIONS, FileTransfer, TransferInterrupted, TransferSettings
from app.downloads.verify import CheckStatus, check_file

DEFAULT_JOBS = 8
# What a model needs to run: weights, configs (JSON), tokenizer files, chat templates.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_CONFIG_SUFFIXES = (".json", ".jinja")
_TOKENIZER_FILES = ("tokenizer.model", "vocab.txt", "merges.txt", "spiece.model", "sentencepiece.bpe.model")
_TOKENIZER_SUFFIXES = (".tiktoken",)


def wanted_by_default(path: str) -> bool:
    """Whether a file belongs to the default selection: weights, configs and tokenizer files."""
    name = path.rsplit("/", 1)[-1].lower()
    return (
        name.endswith(_WEIGHT_SUFFIXES + _CONFIG_SUFFIXES + _TOKENIZER_SUFFIXES) or name in _TOKENIZER_FILES
    )


def select_files(files: list[RemoteFile], all_files: bool) -> list[PlannedFile]:
    """The files to fetch. Every name in the tree is validated first, selected or not: a repo that
    lists a traversal name is refused as a whole before anything is written."""
    for f in files:
        validate_filename(f.path)
    chosen = [f for f in files if all_files or wanted_by_default(f.path)]
    return [PlannedFile(f.path, f.size, f.sha256, f.git_oid) for f in sorted(chosen, key=lambda f: f.path)]


class Outcome(StrEnum):
    """How :meth:`BranchDownload.run` ended without an error."""

    COMPLETE = "complete"
    PAUSED = "paused"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class DownloadResult:
    """What a run achieved."""

    outcome: Outcome
    path: Path  # the model folder (or the HF cache snapshot when source is "hf-cache")
    repo_id: str
    branch: str
    commit: str
    files: tuple[PlannedFile, ...]
    fetched_files: tuple[str, ...] = ()  # files transferred in this run (an update lists only changes)
    source: str = "quantdesk"
    was_complete: bool = False  # the folder was already complete at this commit: nothing was done


@dataclass(frozen=True)
class UpdateInfo:
    """A downloaded branch compared with the Hub."""

    repo_id: str
    branch: str
    local_commit: str
    remote_commit: str
    changed: tuple[PlannedFile, ...] = ()  # new or different content: what an update fetches
    removed: tuple[str, ...] = ()

    @property
    def update_available(self) -> bool:
        """Whether the branch moved since the download."""
        return self.local_commit != self.remote_commit


@dataclass
class DownloadOptions:
    """Choices for one branch download."""

    target: Path | None = None  # the model folder; default <models dir>/<org>_<name>[_<branch>]
    models_dir: Path | None = None
    jobs: int = DEFAULT_JOBS
    connections: int = DEFAULT_CONNECTIONS  # per large file (1-16); all files share a process-wide cap
    all_files: bool = False
    margin_bytes: int | None = None  # free space kept beyond the download; None: see disk_margin
    use_hf_cache: bool = True  # reuse a complete snapshot another tool put in the HF cache
    pin_commit: str | None = None  # fetch this commit of the branch, not its head (a repair)
    disk_usage: Callable[[Path], DiskUsage] = field(default=shutil.disk_usage)
    transfer: TransferSettings = field(default_factory=TransferSettings)


class BranchDownload:
    """Downloads one branch of a repo into a model folder. ``run`` blocks; ``pause``/``cancel`` are
    thread-safe and may be called from any thread (the GUI's, or the CLI's Ctrl-C handler)."""

    def __init__(
        self,
        repo_id: str,
        branch: str = "main",
        *,
        options: DownloadOptions | None = None,
        client: HubClient | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.repo_id = repo_id
        self.branch = branch
        self.options = options or DownloadOptions()
        # The token is read from the keyring/HF_TOKEN on every start, never stored with the download:
        # a resumed or restarted download authenticates exactly like the first run.
        self.client = client or HubClient(token=read_token())
        self.on_progress = on_progress
        self.target = self.options.target or default_target(repo_id, branch, self.options.models_dir)
        self.folder = FolderState(self.target)
        self._stop = threading.Event()
        self._cancelled = False
        self._delete_on_cancel = False
        self._job_lock = threading.Lock()
        self._held = contextlib.ExitStack()
        self._held_lock = False

    # -- control --------------------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop after the chunk in flight; keep everything for a later resume."""
        self._stop.set()

    def cancel(self, delete_partial: bool = False) -> None:
        """Stop; with ``delete_partial`` also remove the ``.part`` files of this download."""
        self._cancelled = True
        self._delete_on_cancel = delete_partial
        self._stop.set()

    # -- queries --------------------------------------------------------------------------------------

    def check_update(self) -> UpdateInfo | None:
        """Compare the completed folder with the branch on the Hub; None when nothing is downloaded."""
        marker = self.folder.load_marker()
        if marker is None:
            return None
        remote = self.client.branch_commit(self.repo_id, self.branch)
        if remote == marker.commit:
            return UpdateInfo(self.repo_id, self.branch, marker.commit, remote)
        planned = select_files(self.client.file_tree(self.repo_id, remote, self.branch), marker.all_files)
        old = {f.path: f for f in marker.files}
        changed = tuple(f for f in planned if f.path not in old or not old[f.path].same_content(f))
        removed = tuple(sorted(set(old) - {f.path for f in planned}))
        return UpdateInfo(self.repo_id, self.branch, marker.commit, remote, changed, removed)

    # -- the download ---------------------------------------------------------------------------------

    def run(self) -> DownloadResult:
        """Download (or resume, or update) the branch. Returns on completion, pause or cancel; raises
        a QuantDeskError on failure (DiskFullError mid-way leaves everything resumable; FolderBusyError
        when another download writes the folder; FolderConflictError when it holds another model).
        Calling it again after a pause resumes."""
        self._stop.clear()
        self._cancelled = False
        check_target(self.target)
        with contextlib.ExitStack() as held:
            self._held = held
            if (self.target / STATE_DIR_NAME).is_dir():
                self._lock_folder()  # one of ours already: nobody else may write it from here on
            check_owner(self.folder, self.repo_id, self.branch)
            result = self._run()
        if result.outcome is Outcome.CANCELLED and self._delete_on_cancel:
            discard_download(self.target)
        return result

    def _lock_folder(self) -> None:
        """Take the folder's writer lock for the rest of :meth:`run` (once)."""
        if not self._held_lock:
            try:
                self._held.enter_context(folder_lock(self.target))
            except OSError as exc:
                raise folder_error(self.target, exc) from exc
            self._held_lock = True
            self._held.callback(self._forget_lock)

    def _forget_lock(self) -> None:
        self._held_lock = False

    def _run(self) -> DownloadResult:
        commit = self.options.pin_commit or self.client.branch_commit(self.repo_id, self.branch)
        marker = self.folder.load_marker()
        if (
            marker is not None
            and marker.commit == commit
            and (marker.all_files or not self.options.all_files)
            and self._all_in_place(marker.files)
        ):
            self._report_finished(marker.files)
            return DownloadResult(
                Outcome.COMPLETE,
                self.target,
                self.repo_id,
                self.branch,
                commit,
                marker.files,
                was_complete=True,
            )
        planned = select_files(
            self.client.file_tree(self.repo_id, commit, self.branch), self.options.all_files
        )
        old_job = self.folder.load_job()
        ours = (self.target / STATE_DIR_NAME).is_dir()
        if marker is None and old_job is None and not ours and self.options.use_hf_cache:
            snapshot = registry.find_in_hf_cache(self.repo_id, commit, planned)
            if snapshot is not None:
                self._report_finished(tuple(planned))
                return DownloadResult(
                    Outcome.COMPLETE,
                    snapshot,
                    self.repo_id,
                    self.branch,
                    commit,
                    tuple(planned),
                    (),
                    "hf-cache",
                )
        done = self._reusable(planned, marker, old_job)
        todo = [f for f in planned if f.path not in done]
        self._check_disk(todo)
        # From here on the folder changes: it must not look complete until the new marker is written.
        created = not self.target.exists()
        try:
            self.target.mkdir(parents=True, exist_ok=True)
            self._lock_folder()
            if created or WrittenLog.load(self.target) is None:
                WrittenLog(created_folder=created).save(self.target)
        except OSError as exc:
            raise folder_error(self.target, exc) from exc
        if created or old_job is None:
            # Someone may have written the folder between the checks above and the lock: look again.
            marker, old_job = self.folder.load_marker(), self.folder.load_job()
            done = self._reusable(planned, marker, old_job)
            todo = [f for f in planned if f.path not in done]
        previous = {f.path for f in (marker.files if marker else ())} | {
            f.path for f in (old_job.files if old_job else ())
        }
        job = JobRecord(self.repo_id, self.branch, commit, planned, done, self.options.all_files)
        self.folder.remove_marker()
        self.folder.save_job(job)
        if self.options.target is not None:
            registry.remember_folder(self.target)
        tracker = ProgressTracker(
            self.repo_id,
            self.branch,
            [
                (f.path, f.size, f.size if f.path in done else self._part_bytes(f), f.path in done)
                for f in planned
            ],
            self.on_progress,
        )
        tracker.set_overall(FileStatus.RUNNING)
        fetched = self._transfer_all(todo, commit, job, tracker)
        if self._stop.is_set():
            return self._stopped(tracker, commit, planned, fetched)
        for stale in sorted(previous - {f.path for f in planned}):
            with contextlib.suppress(OSError, errors.UnsafeFilenameError):
                self.folder.final_path(stale).unlink()
        self.folder.save_marker(
            CompletionMarker(
                self.repo_id, self.branch, commit, tuple(planned), self.options.all_files, time.time()
            )
        )
        tracker.set_overall(FileStatus.DONE)
        return DownloadResult(
            Outcome.COMPLETE, self.target, self.repo_id, self.branch, commit, tuple(planned), tuple(fetched)
        )

    def _transfer_all(
        self, todo: list[PlannedFile], commit: str, job: JobRecord, tracker: ProgressTracker
    ) -> list[str]:
        fetched: list[str] = []
        hooks = TrackerHooks(tracker, self.options.transfer.max_failures)
        written = WrittenLog.load(self.target) or WrittenLog()

        def one(planned: PlannedFile) -> None:
            if self._stop.is_set():
                return
            transfer = FileTransfer(
                repo_id=self.repo_id,
                branch=self.branch,
                commit=commit,
                planned=planned,
                folder=self.folder,
                client=self.client,
                hooks=hooks,
                stop=self._stop,
                settings=self.options.transfer,
                connections=self.options.connections,
            )
            try:
                transfer.run()
            except TransferInterrupted:
                tracker.set_file(planned.path, FileStatus.PAUSED)
                return
            except errors.QuantDeskError as exc:
                status = FileStatus.PAUSED if isinstance(exc, errors.DiskFullError) else FileStatus.FAILED
                tracker.set_file(planned.path, status, exc.user_message)
                self._stop.set()  # one failure stops the others: they would meet the same problem
                raise
            except BaseException:
                self._stop.set()
                raise
            with self._job_lock:
                written.files.append(planned.path)
                written.save(self.target)  # first: cancel-and-delete must know every file it placed
                job.done.add(planned.path)
                self.folder.save_job(job)
                fetched.append(planned.path)

        executor = ThreadPoolExecutor(max_workers=max(1, self.options.jobs), thread_name_prefix="download")
        futures: list[Future[None]] = [executor.submit(one, f) for f in todo]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except KeyboardInterrupt:
            self.pause()  # Ctrl-C: leave a resumable state, then let the caller see the interrupt
            executor.shutdown(wait=True)
            tracker.set_overall(FileStatus.PAUSED, "Paused.")
            raise
        executor.shutdown(wait=True)
        failure = self._first_error(futures)
        if failure is not None:
            paused = isinstance(failure, errors.DiskFullError)
            tracker.set_overall(FileStatus.PAUSED if paused else FileStatus.FAILED, str(failure))
            if isinstance(failure, errors.QuantDeskError):
                tracker.set_overall(FileStatus.PAUSED if paused else FileStatus.FAILED, failure.user_message)
            raise failure
        return fetched

    @staticmethod
    def _first_error(futures: list[Future[None]]) -> BaseException | None:
        errs = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        # A real cause beats the errors it provoked elsewhere; a disk-full pause beats both.
        for exc in errs:
            if isinstance(exc, errors.DiskFullError):
                return exc
        return errs[0] if errs else None

    def _stopped(
        self, tracker: ProgressTracker, commit: str, planned: list[PlannedFile], fetched: list[str]
    ) -> DownloadResult:
        if self._cancelled:
            # With delete_partial, run() removes what this download wrote once the lock is released.
            tracker.set_overall(FileStatus.FAILED, "Cancelled.")
            outcome = Outcome.CANCELLED
        else:
            tracker.set_overall(FileStatus.PAUSED, "Paused.")
            outcome = Outcome.PAUSED
        return DownloadResult(
            outcome, self.target, self.repo_id, self.branch, commit, tuple(planned), tuple(fetched)
        )

    # -- helpers --------------------------------------------------------------------------------------

    def _all_in_place(self, files: tuple[PlannedFile, ...] | list[PlannedFile]) -> bool:
        try:
            return all(self.folder.final_path(f.path).stat().st_size == f.size for f in files)
        except (OSError, errors.UnsafeFilenameError):
            return False

    def _reusable(
        self, planned: list[PlannedFile], marker: CompletionMarker | None, job: JobRecord | None
    ) -> set[str]:
        """Files already verified in place with the same content (resume, or an update's unchanged files)."""
        verified: dict[str, PlannedFile] = {}
        if marker is not None:
            verified.update({f.path: f for f in marker.files})
        if job is not None:
            verified.update({f.path: f for f in job.files if f.path in job.done})
        reusable = set()
        for f in planned:
            old = verified.get(f.path)
            if old is not None and old.same_content(f) and self._all_in_place([f]):
                reusable.add(f.path)
            elif old is None and self._all_in_place([f]) and self._hash_matches(f):
                # In place but unrecorded (a crash between the rename and the record, or a damaged
                # record set aside): the hash decides, so its bytes are not fetched again.
                reusable.add(f.path)
        return reusable

    def _hash_matches(self, planned: PlannedFile) -> bool:
        try:
            path = self.folder.final_path(planned.path)
        except errors.UnsafeFilenameError:
            return False
        return check_file(path, planned, stop=self._stop).status is CheckStatus.OK

    def _part_bytes(self, planned: PlannedFile) -> int:
        state = self.folder.load_part_state(planned.path)
        if state is None or not state.matches(planned):
            return 0
        if not self.folder.part_path(planned.path).exists():
            return 0
        if state.segments:  # the part is full-size from the start: the segments say what is done
            return min(state.bytes_done, planned.size)
        try:
            return min(self.folder.part_path(planned.path).stat().st_size, planned.size)
        except OSError:
            return 0

    def _check_disk(self, todo: list[PlannedFile]) -> None:
        remaining = sum(f.size - self._part_bytes(f) for f in todo)
        probe = existing_ancestor(self.target)
        if remaining > 0:
            check_free_space(probe, remaining, self.options.disk_usage(probe).free, self.options.margin_bytes)

    def _report_finished(self, files: tuple[PlannedFile, ...]) -> None:
        tracker = ProgressTracker(
            self.repo_id, self.branch, [(f.path, f.size, f.size, True) for f in files], self.on_progress
        )
        tracker.set_overall(FileStatus.DONE)
