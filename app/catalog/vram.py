"""GPU memory arithmetic: KV cache per cache type, and the parts a loaded model needs.

Formulas and constants are from NOTES.md ("VRAM arithmetic"), measured against ExLlamaV2 and
GPTQModel; they are estimates to decide "fits / tight / doesn't fit", not promises to the byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.catalog.architecture import Architecture
from app.units import GIB, gib

__all__ = ["CACHE_BITS", "CUDA_CONTEXT_BYTES", "GIB", "CacheType", "VramBreakdown", "gib", "kv_cache_bytes"]


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

# A CUDA context costs 0.3-0.5 GiB per GPU; plan with the middle.
CUDA_CONTEXT_BYTES = int(0.4 * GIB)


def kv_cache_bytes(arch: Architecture, context: int, cache_type: CacheType = CacheType.FP16) -> int:
    """Bytes of the K and V cache for ``context`` tokens (GQA-aware: uses the KV head count)."""
    elements_per_layer = 2 * arch.kv_heads * arch.head_dim * context
    total = elements_per_layer * arch.layers * CACHE_BITS[cache_type] / 8
    if cache_type in _NEEDS_FP16_TEMP_LAYER:
        total += elements_per_layer * 2
    return int(total)


@dataclass(frozen=True)
class VramBreakdown:
    """The parts of a backend's GPU memory need, in bytes."""

    weights: int
    kv_cache: int
    scratch: int
    cuda_context: int

    @property
    def total(self) -> int:
        """Sum of all parts."""
        return self.weights + self.kv_cache + self.scratch + self.cuda_context

    def parts(self) -> dict[str, int]:
        """Named parts in display order, for bar charts and JSON."""
        return {
            "weights": self.weights,
            "kv_cache": self.kv_cache,
            "scratch": self.scratch,
            "cuda_context": self.cuda_context,
        }

    def with_cuda_contexts(self, gpu_count: int) -> VramBreakdown:
        """The same need when split over ``gpu_count`` GPUs: each one pays its own CUDA context."""
        return VramBreakdown(
            self.weights, self.kv_cache, self.scratch, CUDA_CONTEXT_BYTES * max(1, gpu_count)
        )
