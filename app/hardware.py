"""What this machine offers a model: NVIDIA GPUs (via NVML, no CUDA context) and system RAM."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass, replace
from typing import Any

import psutil

from app.units import GIB


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU as NVML reports it."""

    index: int
    name: str
    uuid: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class Hardware:
    """GPUs and memory available for running a model."""

    gpus: tuple[GpuInfo, ...]
    ram_total_bytes: int
    ram_available_bytes: int
    gpu_note: str = ""  # why no GPU is listed, in words a user understands
    exllamav2_installed: bool = False
    planned: bool = False  # True when the GPUs are hypothetical ("what if I had ..."), not detected

    @property
    def has_cuda_gpu(self) -> bool:
        """Whether at least one CUDA-capable GPU is present (or planned)."""
        return bool(self.gpus)


def _visible(gpus: list[GpuInfo]) -> list[GpuInfo]:
    # CUDA_VISIBLE_DEVICES hides GPUs from every CUDA program; NVML ignores it, so apply it here.
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return gpus
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    chosen: list[GpuInfo] = []
    for item in wanted:
        match = next(
            (g for g in gpus if (item.isdigit() and g.index == int(item)) or g.uuid.startswith(item)), None
        )
        if match is None:
            break  # CUDA stops at the first invalid entry
        chosen.append(match)
    return chosen


def _nvml_gpus() -> tuple[list[GpuInfo], str]:
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed, so GPUs cannot be detected."
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: all mean "no usable GPU"
        return [], "No NVIDIA driver was found, so there is no CUDA GPU on this machine."
    try:
        gpus: list[GpuInfo] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle: Any = pynvml.nvmlDeviceGetHandleByIndex(index)
            # v2 reports memory the driver reserves as used; v1 overstates free memory.
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            gpus.append(
                GpuInfo(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                    total_bytes=int(memory.total),
                    free_bytes=int(memory.free),
                )
            )
        return gpus, "" if gpus else "The NVIDIA driver reports no GPU."
    except Exception as exc:
        return [], f"GPU detection failed ({exc.__class__.__name__})."
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def detect_hardware() -> Hardware:
    """Detect GPUs (NVML) and system memory. Never raises; explains a missing GPU in ``gpu_note``."""
    gpus, note = _nvml_gpus()
    visible = _visible(gpus)
    if gpus and not visible:
        note = "CUDA_VISIBLE_DEVICES hides every GPU."
    memory = psutil.virtual_memory()
    return Hardware(
        gpus=tuple(visible),
        ram_total_bytes=int(memory.total),
        ram_available_bytes=int(memory.available),
        gpu_note=note,
        exllamav2_installed=importlib.util.find_spec("exllamav2") is not None,
    )


def planned_hardware(base: Hardware, gpu_gib: list[float]) -> Hardware:
    """``base`` with hypothetical, empty GPUs of the given sizes (to plan a purchase or a server)."""
    gpus = tuple(
        GpuInfo(
            index=i,
            name=f"Planned {size:g} GiB GPU",
            uuid=f"planned-{i}",
            total_bytes=int(size * GIB),
            free_bytes=int(size * GIB),
        )
        for i, size in enumerate(gpu_gib)
    )
    return replace(base, gpus=gpus, gpu_note="", planned=True)
