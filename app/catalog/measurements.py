"""The published memory measurements QuantDesk's estimates are checked against (data/measurements.json).

Each row names its source (URL, hardware, software stack), what the figure includes (peak allocated by
PyTorch, or nvidia-smi's device memory with CUDA context and allocator reserve), the prompt and the
context it was taken at, and the model's architecture from its config.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from app.catalog.architecture import Architecture
from app.catalog.estimate import STACKS, StackProfile, estimate_memory
from app.catalog.sizing import gptq_checkpoint_bytes
from app.catalog.vram import VramBreakdown
from app.units import MIB

# Units the sources print, in bytes.
UNITS = {"B": 1, "MB": 1000**2, "MiB": MIB, "GiB": 1024**3, "GB": 1000**3}
MEASURES = ("peak_allocated", "nvidia_smi")


@dataclass(frozen=True)
class Source:
    """Where figures come from and what they include."""

    key: str
    name: str
    url: str
    hardware: str
    stack: str
    measure: str  # "peak_allocated" (torch.cuda.max_memory_allocated) or "nvidia_smi"
    includes_cuda_context: bool
    includes_allocator_reserve: bool
    protocol: str


@dataclass(frozen=True)
class Measurement:
    """One published figure of one model at one prompt and context."""

    label: str
    source: Source
    model: str
    config_url: str
    architecture: Architecture
    bits: int
    group_size: int | None
    act_order: bool
    context: int
    prompt: int
    devices: int
    measured_bytes: int
    excluded: str = ""  # why the row is shown but not counted (a figure that contradicts its source)

    @property
    def stack(self) -> StackProfile:
        """The software stack the figure was measured on."""
        return STACKS[self.source.stack]

    def estimate(self) -> VramBreakdown:
        """QuantDesk's estimate for the same model, stack, prompt and context."""
        checkpoint = gptq_checkpoint_bytes(self.architecture, self.bits, self.group_size)
        return estimate_memory(
            self.architecture,
            checkpoint,
            self.bits,
            self.stack,
            self.context,
            self.prompt,
            devices=self.devices,
        )

    def comparable_estimate(self) -> int:
        """The estimate measured like the figure: without CUDA context and reserve for peak-allocated."""
        estimate = self.estimate()
        if self.source.measure == "peak_allocated":
            return estimate.allocated
        return estimate.total


class MeasurementsError(ValueError):
    """The measurements file is malformed (a defect in the repo's data, caught by the tests)."""


def _architecture(key: str, raw: dict[str, Any]) -> Architecture:
    return Architecture(
        model_type=str(raw["model_type"]),
        architectures=(),
        layers=int(raw["layers"]),
        hidden=int(raw["hidden"]),
        heads=int(raw["heads"]),
        kv_heads=int(raw["kv_heads"]),
        head_dim=int(raw["head_dim"]),
        intermediate=int(raw["intermediate"]),
        vocab=int(raw["vocab"]),
        max_context=int(raw.get("max_context", 4096)),
        tie_embeddings=bool(raw["tie_embeddings"]),
    )


def parse_measurements(doc: dict[str, Any]) -> tuple[Measurement, ...]:
    """Rows of a measurements document; raises MeasurementsError naming the first bad row."""
    try:
        sources = {
            key: Source(key=key, **{f: raw[f] for f in Source.__dataclass_fields__ if f != "key"})
            for key, raw in doc["sources"].items()
        }
        models = {key: (raw["config"], _architecture(key, raw)) for key, raw in doc["models"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise MeasurementsError(f"bad source or model entry: {exc!r}") from exc
    rows: list[Measurement] = []
    for number, raw in enumerate(doc["rows"], 1):
        try:
            source = sources[raw["source"]]
            if source.measure not in MEASURES or source.stack not in STACKS:
                raise ValueError(f"unknown measure {source.measure!r} or stack {source.stack!r}")
            config_url, arch = models[raw["model"]]
            rows.append(
                Measurement(
                    label=str(raw["label"]),
                    source=source,
                    model=str(raw["model"]),
                    config_url=str(config_url),
                    architecture=arch,
                    bits=int(raw["bits"]),
                    group_size=None if raw["group_size"] is None else int(raw["group_size"]),
                    act_order=bool(raw["act_order"]),
                    context=int(raw["context"]),
                    prompt=int(raw["prompt"]),
                    devices=int(raw.get("devices", 1)),
                    measured_bytes=int(float(raw["measured"]) * UNITS[raw["unit"]]),
                    excluded=str(raw.get("excluded", "")),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MeasurementsError(f"row {number}: {exc!r}") from exc
    return tuple(rows)


def load_measurements() -> tuple[Measurement, ...]:
    """The table shipped with QuantDesk."""
    text = resources.files("app.catalog").joinpath("data/measurements.json").read_text(encoding="utf-8")
    return parse_measurements(json.loads(text))
