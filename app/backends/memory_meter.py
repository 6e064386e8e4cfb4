"""The peak memory a loaded model uses while it answers: what :mod:`app.catalog.measured` keeps.

CUDA: PyTorch's peak allocated over every device since :meth:`PeakMeter.start` (called after the
load, so it is the weights plus everything the replies needed; comparable to an estimate's
``allocated``). CPU: the load's resident-memory growth plus what the replies added on top (the process's
peak RSS when it rose during the replies, else its RSS now: a lower bound).

Imports torch only when a model is on CUDA, which means torch is already loaded.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from app.backends.preflight import rss_bytes


def _max_rss() -> int:
    """The process's peak resident memory so far (0 where the OS does not say: Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(value) if sys.platform == "darwin" else int(value) * 1024  # KiB on Linux


def on_cuda(model: object) -> bool:
    """Whether a loaded model lives on CUDA (ExLlamaV2 always does; GPTQModel says by its device)."""
    if getattr(model, "backend", "") == "exllamav2":
        return True
    device = getattr(model, "device", None)
    return getattr(device, "type", None) == "cuda"


@dataclass
class PeakMeter:
    """Measures one loaded model's peak from :meth:`start` on."""

    cuda: bool
    load_bytes: int  # the model's own measurement after its load (CPU: RSS growth)
    _rss_start: int = field(default=0, init=False)
    _max_rss_start: int = field(default=0, init=False)

    @classmethod
    def for_model(cls, model: object) -> PeakMeter:
        """A started meter for a model just loaded."""
        meter = cls(on_cuda(model), int(getattr(model, "memory_bytes", 0) or 0))
        meter.start()
        return meter

    @property
    def device(self) -> str:
        """ "cuda" or "cpu", as the measurement store keys it."""
        return "cuda" if self.cuda else "cpu"

    def start(self) -> None:
        """Forget earlier peaks (the load's own transients are not a reply's need)."""
        if self.cuda:
            import torch

            for index in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(index)
        self._rss_start = rss_bytes()
        self._max_rss_start = _max_rss()

    def peak_bytes(self) -> int:
        """The peak since :meth:`start`, in bytes."""
        if self.cuda:
            import torch

            return sum(int(torch.cuda.max_memory_allocated(i)) for i in range(torch.cuda.device_count()))
        top = max(rss_bytes(), _max_rss() if _max_rss() > self._max_rss_start else 0)
        return self.load_bytes + max(0, top - self._rss_start)

    def peak_reserved_bytes(self) -> int | None:
        """CUDA: the caching allocator's peak reserved memory since :meth:`start` (None on the CPU)."""
        if not self.cuda:
            return None
        import torch

        return sum(int(torch.cuda.max_memory_reserved(i)) for i in range(torch.cuda.device_count()))
