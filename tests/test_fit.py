"""Fit verdicts: one GPU, a layer-granular split over several, and system RAM without a GPU."""

from __future__ import annotations

from app.catalog.fit import FitStatus, assess_gpu_fit, assess_ram_fit
from app.catalog.vram import GIB, VramBreakdown
from app.hardware import GpuInfo, Hardware

NEED_20 = VramBreakdown(
    weights=17 * GIB, kv_cache=2 * GIB, buffers=int(0.6 * GIB), cuda_context=int(0.4 * GIB)
)


def _hw(*free_gib: float, ram_gib: float = 32) -> Hardware:
    gpus = tuple(
        GpuInfo(i, f"GPU{i}", f"uuid-{i}", int(24 * GIB), int(f * GIB)) for i, f in enumerate(free_gib)
    )
    return Hardware(gpus, int(64 * GIB), int(ram_gib * GIB), gpu_note="" if gpus else "No NVIDIA driver.")


def test_fits_with_margin_on_one_gpu() -> None:
    result = assess_gpu_fit(NEED_20, 80, _hw(23.5))
    assert result.status is FitStatus.FITS and result.gpus_used == 1
    assert "20.00 GiB of 23.50 GiB free" in result.message


def test_tight_when_within_free_but_without_margin() -> None:
    result = assess_gpu_fit(NEED_20, 80, _hw(21))
    assert result.status is FitStatus.TIGHT


def test_uses_free_not_total_memory() -> None:
    result = assess_gpu_fit(NEED_20, 80, _hw(12))  # a 24 GiB card with half of it in use
    assert result.status is FitStatus.NO_FIT
    assert "needs 20.00 GiB" in result.message and "12.00 GiB free" in result.message


def test_split_across_two_gpus_pays_a_context_and_buffers_on_each() -> None:
    result = assess_gpu_fit(NEED_20, 80, _hw(12, 12))
    assert result.status is FitStatus.FITS and result.gpus_used == 2
    assert sum(result.split_bytes) > NEED_20.total  # the second GPU's own overhead
    assert all(b <= 12 * GIB * 0.9 for b in result.split_bytes)
    assert [g.status for g in result.per_gpu] == [FitStatus.NO_FIT, FitStatus.NO_FIT]


def test_split_that_cannot_fit() -> None:
    assert assess_gpu_fit(NEED_20, 80, _hw(8, 8)).status is FitStatus.NO_FIT


def test_best_single_gpu_is_chosen_among_several() -> None:
    result = assess_gpu_fit(NEED_20, 80, _hw(4, 23.5))
    assert result.status is FitStatus.FITS and "GPU 1" in result.message


def test_no_gpu_explains_itself() -> None:
    result = assess_gpu_fit(NEED_20, 80, _hw())
    assert result.status is FitStatus.NO_FIT and "No NVIDIA driver." in result.message


def test_cpu_path_checks_ram() -> None:
    assert assess_ram_fit(10 * GIB, _hw(ram_gib=32)).status is FitStatus.CPU_ONLY
    short = assess_ram_fit(40 * GIB, _hw(ram_gib=32))
    assert short.status is FitStatus.NO_FIT and "Not enough RAM" in short.message
