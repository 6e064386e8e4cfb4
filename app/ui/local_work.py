"""The Local models page's worker bodies: every disk and Hub access it needs, run off the GUI thread
(listing, update checks, deletion). ``app.downloads`` and huggingface_hub are imported inside them."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.downloads.registry import LocalModel


@dataclass(frozen=True)
class UpdateState:
    """The result of an update check for one local model."""

    text: str  # "Update available", "Up to date", "Checking…", "Could not check"
    detail: str = ""


def list_models(models_dir: Path) -> tuple[list[LocalModel], list[str]]:
    """Worker body: every local model (QuantDesk folders first, then the HF cache), and what the stores
    had to say while they were read (a damaged record set aside)."""
    from app.downloads import notices
    from app.downloads.registry import list_local_models

    return list_local_models(models_dir), notices.take()


def check_updates(models: list[LocalModel]) -> dict[str, UpdateState]:
    """Worker body: compare each model's commit with its branch on the Hub (keyed by path)."""
    from app.auth import read_token
    from app.catalog.hub_client import HubClient
    from app.errors import QuantDeskError

    client = HubClient(token=read_token())
    heads: dict[tuple[str, str], str | QuantDeskError] = {}
    states: dict[str, UpdateState] = {}
    for model in models:
        if model.branch is None:
            states[str(model.path)] = UpdateState("—", "No branch points at this snapshot.")
            continue
        key = (model.repo_id, model.branch)
        if key not in heads:
            try:
                heads[key] = client.branch_commit(model.repo_id, model.branch)
            except QuantDeskError as exc:
                heads[key] = exc
        head = heads[key]
        if isinstance(head, QuantDeskError):
            states[str(model.path)] = UpdateState("Could not check", head.user_message)
        elif head != model.commit:
            states[str(model.path)] = UpdateState("Update available", f"The branch is now at {head[:10]}.")
        else:
            states[str(model.path)] = UpdateState("Up to date")
    return states


def delete_model(model: LocalModel) -> int:
    """Worker body: delete a local model; returns the bytes freed.

    A QuantDesk folder is removed as a whole; an HF cache snapshot through huggingface_hub's own
    delete strategy (blobs shared with other revisions stay).
    """
    if model.source == "hf-cache":
        from huggingface_hub import scan_cache_dir

        from app.downloads.registry import hf_cache_dir

        strategy = scan_cache_dir(hf_cache_dir()).delete_revisions(model.commit)
        freed = int(strategy.expected_freed_size)
        strategy.execute()
        return freed
    from app.downloads.lock import is_busy
    from app.errors import FolderBusyError

    if is_busy(model.path):  # a download in another window or a quantdesk command is writing it
        raise FolderBusyError(
            f"{model.path} is being written by a download right now (another window or a command).",
            "Let that download finish or stop it, then delete the model.",
        )
    size = sum(p.stat().st_size for p in model.path.rglob("*") if p.is_file())
    shutil.rmtree(model.path)
    return size
