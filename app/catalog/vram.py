"""GPU memory arithmetic: KV cache per cache type, and the parts a loaded model needs.

How each part is estimated per backend, and which published measurement supports it, is in
:mod:`app.catalog.estimate`; ``benchmarks/estimates.py`` compares the result with the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from app.catalog.architecture import Architecture
from app.units import GIB, gib

__all__ = [
    "CACHE_BITS",
    "CUDA_CONTEXT_BYTES",
    "GIB",
    "PART_GROWTH",
    "CacheType",
    "VramBreakdown",
    "gib",
    "kv_cache_bytes",
]


class CacheType(StrEnum):
    """KV-cache element types. Quantized caches (fp8, q8, q6, q4) are ExLlamaV2 features."""

    FP16 = "fp16"
    FP8 = "fp8"
    Q8 = "q8"
    Q6 = "q6"
    Q4 = "q4"


# Bits per stored K/V element; ExLlamaV2's Qn caches store n bits plus per-group scales.
CACHE_BITS: dict[CacheType, float] = {
    CacheType.FP16: 16,
    CacheType.FP8: 8,
    CacheType.Q8: 8.5,
    CacheType.Q6: 6.5,
    CacheType.Q4: 4.5,
}
# Quantized caches dequantize one layer at a time into an fp16 buffer.
_NEEDS_FP16_TEMP_LAYER = {CacheType.Q8, CacheType.Q6, CacheType.Q4}

# A CUDA context (driver, PyTorch's kernels, cuBLAS workspace) costs 0.3-0.5 GiB per GPU (NOTES.md);
# QuantDesk plans with the upper end, since a low estimate ("fits" when it doesn't) costs a failed load.
CUDA_CONTEXT_BYTES = int(0.5 * GIB)


def kv_cache_bytes(arch: Architecture, context: int, cache_type: CacheType = CacheType.FP16) -> int:
    """Bytes of the K and V cache for ``context`` tokens (GQA-aware: uses the KV head count)."""
    elements_per_layer = 2 * arch.kv_heads * arch.head_dim * context
    total = elements_per_layer * arch.layers * CACHE_BITS[cache_type] / 8
    if cache_type in _NEEDS_FP16_TEMP_LAYER:
        total += elements_per_layer * 2
    return int(total)


# What each part of an estimate depends on, for the details pane and the CLI.
PART_GROWTH = {
    "weights": "fixed",
    "kv_cache": "grows with the context",
    "prefill": "grows with the longest prompt",
    "buffers": "fixed per backend",
    "reserve": "grows with the context (allocator slack)",
    "cuda_context": "fixed per GPU",
}


@dataclass(frozen=True)
class VramBreakdown:
    """The parts of a backend's memory need, in bytes (see :mod:`app.catalog.estimate`).

    ``prefill`` is the transient of processing the prompt that the KV cache's own room does not already
    cover; ``buffers`` are the backend's fixed scratch buffers; ``reserve`` is what PyTorch's caching
    allocator holds beyond what is allocated.
    """

    weights: int
    kv_cache: int
    prefill: int = 0
    buffers: int = 0
    reserve: int = 0
    cuda_context: int = 0

    @property
    def total(self) -> int:
        """Sum of all parts."""
        return sum(self.parts().values())

    @property
    def allocated(self) -> int:
        """What PyTorch reports as peak allocated: the total without allocator slack and CUDA context."""
        return self.weights + self.kv_cache + self.prefill + self.buffers

    @property
    def per_device_overhead(self) -> int:
        """The parts every GPU of a split pays again: its own context, buffers and prefill transient."""
        return self.cuda_context + self.buffers + self.prefill

    def parts(self) -> dict[str, int]:
        """Named parts in display order, for bar charts and JSON."""
        return {
            "weights": self.weights,
            "kv_cache": self.kv_cache,
            "prefill": self.prefill,
            "buffers": self.buffers,
            "reserve": self.reserve,
            "cuda_context": self.cuda_context,
        }

    def with_cuda_contexts(self, gpu_count: int) -> VramBreakdown:
        """The same need when split over ``gpu_count`` GPUs: each one pays its own CUDA context."""
        return replace(self, cuda_context=CUDA_CONTEXT_BYTES * max(1, gpu_count))
