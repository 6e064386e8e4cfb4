"""GPTQModel (the maintained successor of AutoGPTQ): any GPTQ bit width, on CPU or GPU.

This module holds the import-free rules; the library (4-7 s to import) loads only with a model.
"""

from __future__ import annotations

import os
import threading
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
from app.backends.preflight import check_cancel
from app.backends.probing import package_probe
from app.catalog.branch import BranchInfo
from app.catalog.estimate import STACKS, default_prompt, estimate_memory
from app.catalog.vram import CacheType, VramBreakdown
from app.hardware import Hardware

SUPPORTED_BITS = (2, 3, 4, 8)
# Tested major version; others may work but are reported.
TESTED_VERSION_PREFIX = "7."

# Set in-process before gptqmodel (or torch) is first imported (NOTES.md "GPTQModel on CPU"): on two
# cores quantizing fails without the worker count, the pack extension takes 30 s to build, and
# BACKEND.TORCH otherwise torch.compiles (seconds per token instead of milliseconds).
CPU_ENVIRONMENT = {
    "GPTQMODEL_CPU_WORKERS": "2",
    "GPTQMODEL_DISABLE_PACK_EXT": "1",
    "TORCHDYNAMO_DISABLE": "1",
}


def prepare_environment() -> None:
    """Set :data:`CPU_ENVIRONMENT` unless the user set those variables already."""
    for key, value in CPU_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


class GPTQModelRules:
    """The GPTQModel backend: compatibility and memory rules (import-free), probe and load."""

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
        self, branch: BranchInfo, context: int, cache_type: CacheType, prompt: int | None = None
    ) -> VramBreakdown | None:
        """Peak on one GPU (stack ``gptqmodel-app`` in :mod:`app.catalog.estimate`): all weights, an fp16
        cache (its only kind) that grows token by token, the prompt's transient beyond the cache's room,
        small fixed buffers, the allocator's slack and the CUDA context. ``prompt`` defaults to
        :func:`default_prompt`."""
        weights = weights_bytes(branch)
        arch = branch.architecture
        if weights is None or arch is None:
            return None
        tokens = prompt if prompt is not None else default_prompt(context)
        stack = STACKS["gptqmodel-app"]
        return estimate_memory(
            arch, weights, branch.quantization.bits, stack, context, tokens, CacheType.FP16
        )

    def probe(self) -> Probe:
        """Installed, with torch; found without importing either."""
        return package_probe("gptqmodel", "GPTQModel", TESTED_VERSION_PREFIX, needs=("torch", "transformers"))

    def load(
        self,
        model_dir: Path,
        settings: LoadSettings,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> LoadedModel:
        """Load a GPTQ branch on the CPU (BACKEND.TORCH) or the GPU (GPTQModel's best kernel)."""
        report = progress or (lambda fraction, message: None)
        check_cancel(cancel)
        report(0.0, "Importing GPTQModel (a few seconds the first time)")
        prepare_environment()
        from app.backends import gptqmodel_runtime

        check_cancel(cancel)
        report(0.1, "Checking the model files")
        return gptqmodel_runtime.load(model_dir, settings, report, cancel)


GPTQModelBackend = GPTQModelRules
