"""Does a memory need fit this machine? Per GPU, across GPUs (layer-granular split), or in RAM."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.catalog.vram import VramBreakdown
from app.hardware import GpuInfo, Hardware
from app.units import format_size

# Above this share of free memory a load may still fail (fragmentation, other apps): call it "tight".
TIGHT_SHARE = 0.9


class FitStatus(StrEnum):
    """The badge a user sees."""

    FITS = "fits"
    TIGHT = "tight"
    NO_FIT = "doesn't fit"
    CPU_ONLY = "CPU only"
    UNKNOWN = "unknown"


# Better first: used to pick the best result among backends.
FIT_ORDER = (FitStatus.FITS, FitStatus.TIGHT, FitStatus.CPU_ONLY, FitStatus.NO_FIT, FitStatus.UNKNOWN)


@dataclass(frozen=True)
class GpuFit:
    """The need placed on one GPU."""

    gpu_index: int
    gpu_name: str
    status: FitStatus  # of the whole model on this GPU alone
    need_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class FitResult:
    """The verdict, what it is based on, and the per-GPU picture."""

    status: FitStatus
    message: str
    per_gpu: tuple[GpuFit, ...] = ()
    gpus_used: int = 0
    split_bytes: tuple[int, ...] = ()  # bytes placed on each GPU used, in order


def _status(need: int, free: int) -> FitStatus:
    if need <= free * TIGHT_SHARE:
        return FitStatus.FITS
    return FitStatus.TIGHT if need <= free else FitStatus.NO_FIT


def _split(need: VramBreakdown, layers: int, gpus: tuple[GpuInfo, ...], share: float) -> list[int] | None:
    """Place whole layers greedily, GPU by GPU; each GPU used pays its own context, buffers and prefill."""
    overhead = need.per_device_overhead
    per_layer = (need.weights + need.kv_cache + need.reserve) / max(1, layers)
    placed: list[int] = []
    remaining = layers
    for gpu in gpus:
        if remaining == 0:
            break
        room = gpu.free_bytes * share - overhead
        count = min(remaining, int(room // per_layer)) if room > 0 else 0
        if count == 0:
            continue
        placed.append(int(overhead + count * per_layer))
        remaining -= count
    return placed if remaining == 0 else None


def assess_gpu_fit(need: VramBreakdown, layers: int, hardware: Hardware) -> FitResult:
    """Fit of a GPU memory need: on one GPU if possible, else split by layers across several."""
    if not hardware.gpus:
        return FitResult(FitStatus.NO_FIT, hardware.gpu_note or "No CUDA GPU was found.")
    per_gpu = tuple(
        GpuFit(g.index, g.name, _status(need.total, g.free_bytes), need.total, g.free_bytes)
        for g in hardware.gpus
    )
    best = min(per_gpu, key=lambda f: (FIT_ORDER.index(f.status), -f.free_bytes))
    if best.status is not FitStatus.NO_FIT:
        return FitResult(
            best.status,
            f"{best.status.capitalize()} on GPU {best.gpu_index} ({best.gpu_name}): needs "
            f"{format_size(need.total)} of {format_size(best.free_bytes)} free.",
            per_gpu,
            1,
            (need.total,),
        )
    if len(hardware.gpus) > 1:
        for share, status in ((TIGHT_SHARE, FitStatus.FITS), (1.0, FitStatus.TIGHT)):
            placed = _split(need, layers, hardware.gpus, share)
            if placed:
                parts = " + ".join(format_size(b) for b in placed)
                word = "Fits" if status is FitStatus.FITS else "Tight"
                return FitResult(
                    status,
                    f"{word} split across {len(placed)} GPUs: {parts}.",
                    per_gpu,
                    len(placed),
                    tuple(placed),
                )
    free = sum(g.free_bytes for g in hardware.gpus)
    count = len(hardware.gpus)
    return FitResult(
        FitStatus.NO_FIT,
        f"Doesn't fit: needs {format_size(need.total)}, {format_size(free)} free on {count} "
        f"GPU{'s' if count > 1 else ''}. Try a shorter context, a smaller cache type or fewer bits.",
        per_gpu,
    )


def assess_ram_fit(need_bytes: int, hardware: Hardware) -> FitResult:
    """Fit of a CPU run in system RAM (used when there is no CUDA GPU)."""
    free = hardware.ram_available_bytes
    prefix = f"{hardware.gpu_note} " if hardware.gpu_note else ""
    if need_bytes <= free:
        return FitResult(
            FitStatus.CPU_ONLY,
            f"{prefix}Runs on the CPU: needs {format_size(need_bytes)} of {format_size(free)} free RAM.",
        )
    return FitResult(
        FitStatus.NO_FIT,
        f"{prefix}Not enough RAM for a CPU run: needs {format_size(need_bytes)}, {format_size(free)} free.",
    )
