"""GPTQModel (the maintained successor of AutoGPTQ): any GPTQ bit width, on CPU or GPU.

This module holds the import-free rules; the library (4-7 s to import) loads only with a model.
"""

from __future__ import annotations

from app.backends.base import Compatibility, gptq_obstacle, weights_bytes
from app.catalog.branch import BranchInfo
from app.catalog.vram import CUDA_CONTEXT_BYTES, CacheType, VramBreakdown, kv_cache_bytes
from app.hardware import Hardware

SUPPORTED_BITS = (2, 3, 4, 8)


def prefill_activation_bytes(intermediate: int, prompt_tokens: int) -> int:
    """Peak activation memory of a transformers-style prefill (the MLP's fp16 intermediates)."""
    return prompt_tokens * 4 * intermediate * 2


class GPTQModelRules:
    """Compatibility and memory rules of the GPTQModel backend."""

    name: str = "gptqmodel"
    display_name: str = "GPTQModel"
    cache_types: tuple[CacheType, ...] = (CacheType.FP16,)
    runs_on_cpu: bool = True
    keeps_embeddings_on_cpu: bool = False

    def compatibility(self, branch: BranchInfo, hardware: Hardware) -> Compatibility:
        """Any of 2/3/4/8-bit GPTQ; runs on the GPU when there is one, else on the CPU."""
        obstacle = gptq_obstacle(branch, SUPPORTED_BITS, self.display_name)
        if obstacle:
            return obstacle
        if branch.architecture is None:
            return Compatibility(False, "The branch has no readable config.json.", branch_supported=False)
        where = "on the GPU" if hardware.has_cuda_gpu else "on the CPU (no CUDA GPU here; slower)"
        return Compatibility(True, f"Loads {branch.quantization.bits}-bit GPTQ {where}.")

    def memory_estimate(
        self, branch: BranchInfo, context: int, cache_type: CacheType
    ) -> VramBreakdown | None:
        """All weights, an fp16 cache (its only kind), prefill activations for a full prompt, CUDA context."""
        weights = weights_bytes(branch)
        arch = branch.architecture
        if weights is None or arch is None:
            return None
        return VramBreakdown(
            weights=weights,
            kv_cache=kv_cache_bytes(arch, context, CacheType.FP16),
            scratch=prefill_activation_bytes(arch.intermediate, context),
            cuda_context=CUDA_CONTEXT_BYTES,
        )
