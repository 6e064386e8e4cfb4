"""The user's own memory measurements, and how they correct the formula's estimates.

After a real load and a reply, the peak memory the backend used (CUDA: peak allocated since the load;
CPU: resident memory) is kept per model + branch + backend + context + cache type in
``<data dir>/measured_memory.json``. The catalog shows it next to the estimate ("measured here") and
corrects the estimate for other contexts of the same model: the measurement minus the formula's
per-token parts (KV cache and prefill at the measured context and prompt) is the model's fixed part as
this machine sees it; the per-token parts for another context come from the formula.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from app.atomic_files import write_json_atomic
from app.catalog.vram import VramBreakdown
from app.paths import app_paths

FILE_NAME = "measured_memory.json"
VERSION = 1


@dataclass(frozen=True)
class MeasuredPeak:
    """One measurement: the peak of one load and reply, and the conditions it was taken at."""

    repo_id: str
    branch: str
    backend: str
    context: int
    cache_type: str
    prompt_tokens: int  # the longest prompt processed before the peak was read
    peak_bytes: int  # comparable to VramBreakdown.allocated (no CUDA context, no allocator slack)
    device: str = "cuda"  # "cuda" or "cpu"
    measured_at: float = field(default_factory=time.time)
    reserved_bytes: int | None = None  # CUDA: the caching allocator's peak reserved (None: unknown)

    @property
    def key(self) -> tuple[str, str, str, int, str]:
        """What a newer measurement replaces: model, branch, backend, context, cache type."""
        return (self.repo_id, self.branch, self.backend, self.context, self.cache_type)


def _from_dict(raw: Any) -> MeasuredPeak | None:
    if not isinstance(raw, dict):
        return None
    try:
        return MeasuredPeak(
            repo_id=str(raw["repo_id"]),
            branch=str(raw["branch"]),
            backend=str(raw["backend"]),
            context=int(raw["context"]),
            cache_type=str(raw["cache_type"]),
            prompt_tokens=int(raw["prompt_tokens"]),
            peak_bytes=int(raw["peak_bytes"]),
            device=str(raw.get("device", "cuda")),
            measured_at=float(raw.get("measured_at", 0.0)),
            reserved_bytes=None if raw.get("reserved_bytes") is None else int(raw["reserved_bytes"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on a sidecar file, so two processes never lose each other's records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: writes stay atomic; a lost concurrent record is the cost
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class MeasuredStore:
    """Measurements in one JSON file; a damaged file is set aside (renamed) and reported, never lost."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or app_paths().data_dir / FILE_NAME
        self.warning: str | None = None  # set when a damaged file was set aside

    def all(self) -> list[MeasuredPeak]:
        """Every stored measurement (empty when there is no file or it was damaged)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.warning = f"Your memory measurements could not be read ({exc}); estimates use formulas only."
            return []
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("measurements"), list):
                raise ValueError("not a measurements file")
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            aside = self.path.with_name(f"{self.path.stem}.corrupt-{int(time.time())}.json")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            self.warning = (
                f"Your memory measurements were damaged ({exc}) and have been set aside as {aside.name}; "
                "estimates use formulas until the next load measures again."
            )
            return []
        return [m for m in (_from_dict(raw) for raw in data["measurements"]) if m is not None]

    def for_repo(self, repo_id: str) -> list[MeasuredPeak]:
        """The measurements of every branch of one repo."""
        return [m for m in self.all() if m.repo_id == repo_id]

    def record(self, measurement: MeasuredPeak) -> None:
        """Keep ``measurement``, replacing an older one with the same key."""
        with _locked(self.path):
            kept = [m for m in self.all() if m.key != measurement.key]
            kept.append(measurement)
            write_json_atomic(
                self.path, {"version": VERSION, "measurements": [asdict(m) for m in kept]}, sort_keys=False
            )


@dataclass(frozen=True)
class Correction:
    """An estimate corrected by a measurement, and the measurement behind it."""

    estimate: VramBreakdown
    measurement: MeasuredPeak
    exact: bool  # measured at this very context and cache type


def pick_measurement(
    measurements: list[MeasuredPeak], branch: str, backend: str, context: int, cache_type: str, device: str
) -> MeasuredPeak | None:
    """The measurement to correct with: this context and cache if there is one, else the nearest
    context of the same cache type; the newest among equals."""
    same = [
        m
        for m in measurements
        if m.branch == branch and m.backend == backend and m.cache_type == cache_type and m.device == device
    ]
    if not same:
        return None
    return min(same, key=lambda m: (abs(m.context - context), -m.measured_at))


def corrected(formula: VramBreakdown, at_measurement: VramBreakdown, measured: MeasuredPeak) -> VramBreakdown:
    """``formula`` with its fixed part (weights + buffers) learned from ``measured``.

    ``at_measurement`` is the formula's estimate at the measured context and prompt. The measured peak
    minus that estimate's per-token parts (KV cache, prefill) is the fixed part this machine showed;
    the per-token parts, the allocator's reserve and the CUDA context stay the formula's (the peak
    reserved memory is kept with the measurement, ``reserved_bytes``, but not yet used).
    """
    fixed = max(0, measured.peak_bytes - at_measurement.kv_cache - at_measurement.prefill)
    weights = min(formula.weights, fixed)
    return replace(formula, weights=weights, buffers=fixed - weights)
