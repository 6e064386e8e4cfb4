"""Local Hugging Face Hub emulator used by the test-suite (stdlib only).

Typical use::

    with HubEmulator(tmp_path / "hub", tokens={"hf_ok": ["org/gated"]}) as emu:
        HfApi(endpoint=emu.endpoint).list_repo_refs("org/model")
        emu.faults = Faults(path_contains="model.safetensors", cut_after_bytes=1000)
"""

from .faults import Faults
from .repos import LFS_MIN_SIZE, LFS_SUFFIXES, RepoStore
from .server import HubEmulator, LoggedRequest

__all__ = ["LFS_MIN_SIZE", "LFS_SUFFIXES", "Faults", "HubEmulator", "LoggedRequest", "RepoStore"]
