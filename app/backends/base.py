"""What every backend states about a branch before anything is loaded: can it run it, and at what cost.

Loading and generation join this protocol in the backends issue; these parts need no heavy import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.catalog.branch import BranchInfo
from app.catalog.sizing import gptq_checkpoint_bytes
from app.catalog.vram import CacheType, VramBreakdown
from app.hardware import Hardware


@dataclass(frozen=True)
class Compatibility:
    """Whether a backend can run a branch here, with a reason a user understands."""

    compatible: bool
    reason: str
    # False when the branch itself is the obstacle (bits, architecture), True when only this machine is.
    branch_supported: bool = True


class BackendRules(Protocol):
    """The import-free part of a backend: compatibility and memory estimate."""

    name: str  # stable id used in JSON, profiles and overrides
    display_name: str
    cache_types: tuple[CacheType, ...]
    runs_on_cpu: bool
    keeps_embeddings_on_cpu: bool

    def compatibility(self, branch: BranchInfo, hardware: Hardware) -> Compatibility:
        """Can this backend run ``branch`` on ``hardware``? Branch obstacles are reported first."""
        ...

    def memory_estimate(
        self, branch: BranchInfo, context: int, cache_type: CacheType
    ) -> VramBreakdown | None:
        """GPU memory for one GPU at ``context`` tokens, or None when the branch's shape is unknown."""
        ...


def weights_bytes(branch: BranchInfo) -> int | None:
    """Bytes of the branch's weights: the listed files, else computed from its config.

    Listed sizes are exact; the computed size is the fallback when the tree could not be listed.
    """
    if branch.weight_bytes:
        return branch.weight_bytes
    q = branch.quantization
    if branch.architecture is None or q.bits is None:
        return None
    return gptq_checkpoint_bytes(branch.architecture, q.bits, q.group_size)


def gptq_obstacle(branch: BranchInfo, supported_bits: tuple[int, ...], backend: str) -> Compatibility | None:
    """The reason a backend cannot load a branch's format at all, or None when it can."""
    if branch.error:
        return Compatibility(False, f"The branch could not be read: {branch.error}", branch_supported=False)
    if not branch.is_gptq:
        return Compatibility(False, f"Not a GPTQ branch: {branch.not_gptq_reason}", branch_supported=False)
    bits = branch.quantization.bits
    if bits not in supported_bits:
        accepted = "/".join(str(b) for b in supported_bits)
        what = f"{bits}-bit" if bits else "of unknown bit width"
        return Compatibility(
            False, f"{backend} loads {accepted}-bit GPTQ only; this branch is {what}.", branch_supported=False
        )
    return None
