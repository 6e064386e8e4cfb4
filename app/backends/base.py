"""What every backend states about a branch before anything is loaded: can it run it, and at what cost.

Loading and generation join this protocol in the backends issue; these parts need no heavy import.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
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


@dataclass(frozen=True)
class Probe:
    """Whether a backend's library can run here, found without importing it."""

    available: bool
    reason: str
    version: str | None = None


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
        self, branch: BranchInfo, context: int, cache_type: CacheType, prompt: int | None = None
    ) -> VramBreakdown | None:
        """Peak GPU memory on one GPU at ``context`` tokens with prompts up to ``prompt`` tokens (None: a
        default share of the context), or None when the branch's shape is unknown."""
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


# -- running a model (implemented by each backend's load(); used by the chat engine) --------------


@dataclass(frozen=True)
class Sampling:
    """Sampler settings; ``temperature == 0`` means greedy decoding."""

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 512
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        """Whether decoding is deterministic (argmax)."""
        return self.temperature <= 0


class StopReason(StrEnum):
    """Why generation ended."""

    EOS = "eos"
    STOP_STRING = "stop_string"
    LENGTH = "length"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class GenerationStats:
    """Final figures of one generation; the last item a ``generate`` iterator yields."""

    prompt_tokens: int
    new_tokens: int
    seconds: float
    time_to_first_token: float
    stop_reason: StopReason
    stop_string: str | None = None

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of generation time (0 when nothing was generated)."""
        return self.new_tokens / self.seconds if self.seconds > 0 and self.new_tokens else 0.0


class Tokenizer(Protocol):
    """What the chat engine needs of a loaded model's tokenizer."""

    bos_token_id: int | None
    eos_token_id: int | None
    bos_token: str | None
    eos_token: str | None
    chat_template: str | None

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without any special tokens added."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (special tokens skipped)."""
        ...


class LoadedModel(Protocol):
    """A model in memory, ready to generate."""

    backend: str
    model_dir: Path
    tokenizer: Tokenizer
    context_length: int
    memory_bytes: int  # measured after load (CUDA: allocated; CPU: RSS delta)
    load_seconds: float

    def generate(
        self, prompt: str | Sequence[int], sampling: Sampling, stop: Sequence[str], cancel: threading.Event
    ) -> Iterator[str | GenerationStats]:
        """Yield text chunks as produced, then one GenerationStats; stop strings are never yielded."""
        ...

    def unload(self) -> None:
        """Free the model's memory (GPU and CPU)."""
        ...


# -- loading --------------------------------------------------------------------------------------


# progress(fraction 0..1, what is happening in words)
ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class LoadSettings:
    """How to load a model. ``trust_remote_code`` is True only when the user consented for this model."""

    context_length: int | None = None  # None: the model's own maximum
    cache_type: CacheType = CacheType.FP16
    device: str = "auto"  # "auto" (GPU when there is one), "cpu" or "cuda"
    gpu_split: tuple[float, ...] | None = None  # GiB per GPU; None: split automatically
    trust_remote_code: bool = False


class Backend(BackendRules, Protocol):
    """A backend that can also load models: rules plus probe and load."""

    def probe(self) -> Probe:
        """Can the backend's library run here at all? Never imports it."""
        ...

    def load(
        self,
        model_dir: Path,
        settings: LoadSettings,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> LoadedModel:
        """Load ``model_dir``; raises a typed ``ModelLoadError`` (``LoadCancelledError`` when cancelled)."""
        ...
