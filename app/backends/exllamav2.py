"""ExLlamaV2: fast CUDA inference for 4-bit GPTQ on Llama-family architectures.

This module holds the import-free rules (compatibility, memory estimate). The library itself is
imported lazily, only when a model is loaded.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from app.backends.base import (
    Compatibility,
    LoadedModel,
    LoadSettings,
    Probe,
    ProgressCallback,
    gptq_obstacle,
    weights_bytes,
)
from app.backends.preflight import architecture_label, check_cancel, read_config
from app.backends.probing import package_probe, torch_has_cuda
from app.catalog.branch import BranchInfo
from app.catalog.estimate import STACKS, default_prompt, estimate_memory
from app.catalog.vram import CacheType, VramBreakdown
from app.errors import UnsupportedArchitectureError
from app.hardware import Hardware

# Architecture classes ExLlamaV2 0.3.2 recognises (its architecture.py). Others it would try as
# Llama, which fails for anything not shaped like Llama, so QuantDesk treats them as unsupported.
SUPPORTED_ARCHITECTURES = frozenset(
    {
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "MixtralForCausalLM",
        "YiForCausalLM",
        "OrionForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
        "Qwen3MoeForCausalLM",
        "GemmaForCausalLM",
        "Gemma2ForCausalLM",
        "Gemma3ForCausalLM",
        "Starcoder2ForCausalLM",
        "CohereForCausalLM",
        "Cohere2ForCausalLM",
        "DbrxForCausalLM",
        "MiniCPMForCausalLM",
        "Phi3ForCausalLM",
        "GPTBigCodeForCausalLM",
        "GPT2LMHeadModel",
        "InternLM2ForCausalLM",
        "GraniteForCausalLM",
        "Glm4ForCausalLM",
        "ExaoneForCausalLM",
        "HCXVisionForCausalLM",
    }
)
# Used when config.json lacks "architectures": model_type values of the same families.
SUPPORTED_MODEL_TYPES = frozenset(
    {
        "llama",
        "mistral",
        "mixtral",
        "yi",
        "orion",
        "qwen2",
        "qwen3",
        "qwen3_moe",
        "gemma",
        "gemma2",
        "gemma3",
        "starcoder2",
        "cohere",
        "cohere2",
        "dbrx",
        "minicpm",
        "phi3",
        "gpt_bigcode",
        "gpt2",
        "internlm2",
        "granite",
        "glm4",
        "exaone",
    }
)

TESTED_VERSION_PREFIX = "0.3."

# Prompt tokens ExLlamaV2 processes per forward pass: ExLlamaV2Config.max_input_len (and attention
# scores up to its square, max_attention_size). Its default; the estimate's prefill and fixed scratch
# scale with it, so a loader that changes it must pass the same value here.
PREFILL_CHUNK_TOKENS = 2048


class ExLlamaV2Rules:
    """The ExLlamaV2 backend: compatibility and memory rules (import-free), probe and load."""

    name: str = "exllamav2"
    display_name: str = "ExLlamaV2"
    cache_types: tuple[CacheType, ...] = (
        CacheType.FP16,
        CacheType.FP8,
        CacheType.Q8,
        CacheType.Q6,
        CacheType.Q4,
    )
    runs_on_cpu: bool = False
    keeps_embeddings_on_cpu: bool = True

    def __init__(self, prefill_chunk: int = PREFILL_CHUNK_TOKENS) -> None:
        self.prefill_chunk = prefill_chunk  # the max_input_len setting (see PREFILL_CHUNK_TOKENS)

    def compatibility(self, branch: BranchInfo, hardware: Hardware) -> Compatibility:
        """4-bit GPTQ, a supported architecture, then a CUDA GPU and the installed library."""
        obstacle = gptq_obstacle(branch, (4,), self.display_name)
        if obstacle:
            return obstacle
        if branch.quantization.checkpoint_format not in (None, "gptq"):
            return Compatibility(
                False,
                f"ExLlamaV2 reads the original GPTQ format; this branch is saved as "
                f"'{branch.quantization.checkpoint_format}'.",
                branch_supported=False,
            )
        arch = branch.architecture
        if arch is None:
            return Compatibility(False, "The branch has no readable config.json.", branch_supported=False)
        known = (
            any(a in SUPPORTED_ARCHITECTURES for a in arch.architectures)
            if arch.architectures
            else arch.model_type in SUPPORTED_MODEL_TYPES
        )
        if not known:
            label = arch.architectures[0] if arch.architectures else arch.model_type
            return Compatibility(
                False, f"ExLlamaV2 does not support the {label} architecture.", branch_supported=False
            )
        if not hardware.has_cuda_gpu:
            return Compatibility(False, "ExLlamaV2 needs an NVIDIA GPU with CUDA; none was found here.")
        if not hardware.exllamav2_installed and not hardware.planned:
            return Compatibility(
                False, "ExLlamaV2 is not installed; install QuantDesk with the 'exllama' extra to use it."
            )
        return Compatibility(True, "4-bit GPTQ on a supported architecture with a CUDA GPU: fastest choice.")

    def memory_estimate(
        self, branch: BranchInfo, context: int, cache_type: CacheType, prompt: int | None = None
    ) -> VramBreakdown | None:
        """Peak on one GPU (stack ``exllamav2`` in :mod:`app.catalog.estimate`): weights without the
        embedding table (kept on the CPU), the whole context's cache allocated at load, the fixed scratch
        sized by ``max_input_len``, the prompt's transient in chunks of at most ``max_input_len`` tokens,
        the autosplit reserve and the CUDA context. ``prompt`` defaults to :func:`default_prompt`."""
        weights = weights_bytes(branch)
        arch = branch.architecture
        if weights is None or arch is None:
            return None
        tokens = prompt if prompt is not None else default_prompt(context)
        chunk = self.prefill_chunk
        stack = replace(STACKS["exllamav2"], max_input_len=chunk, max_attention=chunk * chunk)
        return estimate_memory(arch, weights, branch.quantization.bits, stack, context, tokens, cache_type)

    def probe(self) -> Probe:
        """Installed, and torch is a CUDA build (``import exllamav2`` compiles against it)."""
        probe = package_probe("exllamav2", self.display_name, TESTED_VERSION_PREFIX, ("torch",), "exllama")
        if probe.available and not torch_has_cuda():
            return Probe(
                False, "ExLlamaV2 needs a CUDA build of PyTorch; this one is CPU-only.", probe.version
            )
        return probe

    def load(
        self,
        model_dir: Path,
        settings: LoadSettings,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> LoadedModel:
        """Load a 4-bit GPTQ branch on the GPU(s) with the chosen cache type."""
        report = progress or (lambda fraction, message: None)
        check_cancel(cancel)
        config = read_config(model_dir)
        architectures = config.get("architectures") or []
        known = (
            any(a in SUPPORTED_ARCHITECTURES for a in architectures)
            if architectures
            else config.get("model_type") in SUPPORTED_MODEL_TYPES
        )
        if not known:
            raise UnsupportedArchitectureError(
                f"ExLlamaV2 does not support the {architecture_label(config)} architecture.",
                "Load this model with GPTQModel instead.",
            )
        report(0.0, "Importing ExLlamaV2")
        from app.backends import exllamav2_runtime

        check_cancel(cancel)
        return exllamav2_runtime.load(model_dir, settings, report, cancel)


ExLlamaV2Backend = ExLlamaV2Rules
