"""The branch table as a user sees it: facts plus, for a chosen context, longest prompt and cache type
on this machine, each backend's verdict, memory need and fit. Pure computation: no network, no disk
(the user's own measurements, :mod:`app.catalog.measured`, are passed in by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from app.backends import BACKENDS
from app.backends.base import BackendRules, Compatibility
from app.catalog.branch import BranchInfo
from app.catalog.estimate import default_prompt
from app.catalog.fit import FIT_ORDER, FitResult, FitStatus, assess_gpu_fit, assess_ram_fit
from app.catalog.measured import MeasuredPeak, corrected, pick_measurement
from app.catalog.vram import CacheType, VramBreakdown
from app.hardware import Hardware

DEFAULT_CONTEXT = 4096


@dataclass(frozen=True)
class BackendAssessment:
    """One backend's view of one branch."""

    name: str
    display_name: str
    compatibility: Compatibility
    cache_type: CacheType
    vram: VramBreakdown | None  # on a CPU run (``on_cpu``) these are bytes of RAM
    fit: FitResult
    on_cpu: bool = False
    formula: VramBreakdown | None = None  # the estimate before a measurement corrected it
    measurement: MeasuredPeak | None = None  # the user's measurement behind ``vram``, if any
    measured_exact: bool = False  # ``measurement`` was taken at this context and cache type

    @property
    def measured_here(self) -> int | None:
        """The peak measured on this machine at exactly this context and cache type, if any."""
        return self.measurement.peak_bytes if self.measurement and self.measured_exact else None


@dataclass(frozen=True)
class BranchRow:
    """One row of the table."""

    info: BranchInfo
    context: int
    backends: tuple[BackendAssessment, ...]
    fit: FitResult  # the best verdict among compatible backends
    best_backend: str | None
    prompt: int = 0  # the longest prompt planned for

    def backend(self, name: str) -> BackendAssessment:
        """The assessment of one backend by id."""
        return next(b for b in self.backends if b.name == name)


def context_for(info: BranchInfo, requested: int | None) -> int:
    """The context length to plan for: the user's choice, else the model's own maximum."""
    if requested:
        return requested
    return info.architecture.max_context if info.architecture else DEFAULT_CONTEXT


def prompt_for(context: int, requested: int | None) -> int:
    """The longest prompt to plan for: the user's choice (at most the context), else a default share."""
    return max(1, min(requested, context)) if requested else default_prompt(context)


def _assess(
    backend: BackendRules,
    info: BranchInfo,
    context: int,
    prompt: int,
    cache: CacheType,
    hw: Hardware,
    measurements: list[MeasuredPeak],
) -> BackendAssessment:
    compat = backend.compatibility(info, hw)
    cache_type = cache if cache in backend.cache_types else CacheType.FP16
    formula = backend.memory_estimate(info, context, cache_type, prompt) if compat.branch_supported else None
    on_cpu = not hw.has_cuda_gpu and backend.runs_on_cpu
    if formula is not None and on_cpu:
        # A CPU run needs the same parts in RAM, without CUDA context and caching-allocator slack.
        formula = replace(formula, cuda_context=0, reserve=0)
    vram, measurement, exact = formula, None, False
    if formula is not None and measurements:
        device = "cpu" if on_cpu else "cuda"
        measurement = pick_measurement(
            measurements, info.branch, backend.name, context, str(cache_type), device
        )
        at = (
            backend.memory_estimate(info, measurement.context, cache_type, measurement.prompt_tokens)
            if measurement
            else None
        )
        if measurement is not None and at is not None:
            vram = corrected(formula, at, measurement)
            exact = measurement.context == context
    if vram is None or info.architecture is None:
        fit = FitResult(FitStatus.UNKNOWN, compat.reason)
    elif on_cpu:
        fit = assess_ram_fit(vram.total, hw)
    elif hw.has_cuda_gpu:
        fit = assess_gpu_fit(vram, info.architecture.layers, hw)
    else:
        fit = FitResult(FitStatus.NO_FIT, compat.reason)
    return BackendAssessment(
        backend.name, backend.display_name, compat, cache_type, vram, fit, on_cpu, formula, measurement, exact
    )


def evaluate_branch(
    info: BranchInfo,
    context: int | None,
    cache: CacheType,
    hardware: Hardware,
    prompt: int | None = None,
    measurements: list[MeasuredPeak] | None = None,
) -> BranchRow:
    """Assess every backend for one branch and pick the best compatible one."""
    ctx = context_for(info, context)
    tokens = prompt_for(ctx, prompt)
    mine = [m for m in measurements or [] if m.repo_id == info.repo_id]
    assessments = tuple(_assess(b, info, ctx, tokens, cache, hardware, mine) for b in BACKENDS)
    usable = [a for a in assessments if a.compatibility.compatible]
    if usable:
        # Backends are listed in order of preference; among equal fits the earlier one wins.
        best = min(usable, key=lambda a: FIT_ORDER.index(a.fit.status))
        return BranchRow(info, ctx, assessments, best.fit, best.name, tokens)
    reason = info.error or (f"Not GPTQ: {info.not_gptq_reason}" if not info.is_gptq else "")
    reason = reason or "; ".join(a.compatibility.reason for a in assessments)
    return BranchRow(info, ctx, assessments, FitResult(FitStatus.UNKNOWN, reason), None, tokens)


def evaluate(
    branches: tuple[BranchInfo, ...],
    context: int | None,
    cache: CacheType,
    hardware: Hardware,
    prompt: int | None = None,
    measurements: list[MeasuredPeak] | None = None,
) -> list[BranchRow]:
    """The whole table; ``prompt`` None plans for a default share of each context."""
    return [evaluate_branch(b, context, cache, hardware, prompt, measurements) for b in branches]


def _fit_json(fit: FitResult) -> dict[str, Any]:
    return {
        "status": str(fit.status),
        "message": fit.message,
        "gpus_used": fit.gpus_used,
        "split_bytes": list(fit.split_bytes),
        "per_gpu": [
            {
                "index": g.gpu_index,
                "name": g.gpu_name,
                "status": str(g.status),
                "need_bytes": g.need_bytes,
                "free_bytes": g.free_bytes,
            }
            for g in fit.per_gpu
        ],
    }


def row_to_json(row: BranchRow, local: str | None = None) -> dict[str, Any]:
    """The row as the CLI's ``--json`` prints it.

    ``local`` is the branch's state on this machine ("downloaded", "update available", "incomplete" or
    None), computed by the caller from the local-model registry so the catalog stays free of it.
    """
    info, q = row.info, row.info.quantization
    exllama = row.backend("exllamav2").compatibility.branch_supported and info.is_gptq
    return {
        "branch": info.branch,
        "commit": info.commit,
        "is_gptq": info.is_gptq,
        "not_gptq_reason": info.not_gptq_reason,
        "error": info.error,
        "bits": q.bits,
        "group_size": q.group_size,
        "act_order": q.act_order,
        "damp_percent": q.damp_percent,
        "sym": q.sym,
        "true_sequential": q.true_sequential,
        "checkpoint_format": q.checkpoint_format,
        "quantization_source": q.source,
        "dataset": info.dataset,
        "seq_len": info.seq_len,
        "size_bytes": info.size_bytes,
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in info.files],
        "weight_files": [f.path for f in info.weight_files],
        "model_type": info.architecture.model_type if info.architecture else None,
        "architecture": info.architecture.__dict__ | {"architectures": list(info.architecture.architectures)}
        if info.architecture
        else None,
        "exllama": exllama,
        "card_exllama": info.card_exllama,
        "context": row.context,
        "prompt": row.prompt,
        "backends": {
            a.name: {
                "compatible": a.compatibility.compatible,
                "reason": a.compatibility.reason,
                "cache_type": str(a.cache_type),
                "vram_bytes": a.vram.total if a.vram else None,
                "memory_kind": "ram" if a.on_cpu else "vram",
                "vram_parts": a.vram.parts() if a.vram else None,
                "formula_bytes": a.formula.total if a.formula else None,
                "measured": None
                if a.measurement is None
                else {
                    "peak_bytes": a.measurement.peak_bytes,
                    "context": a.measurement.context,
                    "prompt_tokens": a.measurement.prompt_tokens,
                    "exact": a.measured_exact,
                },
                "fit": _fit_json(a.fit),
            }
            for a in row.backends
        },
        "best_backend": row.best_backend,
        "fits": _fit_json(row.fit),
        "template": info.template.name,
        "template_source": info.template.source,
        "description": info.description,
        "warnings": list(info.warnings),
        "local": local,
    }
