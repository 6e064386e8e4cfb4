"""The Models page's planning row: what the memory figures and fit verdicts are computed for.

Context length, longest prompt and KV cache type re-evaluate the cached facts (no network); the GPU
box plans for other GPUs than this machine's (free GiB per GPU). The row keeps the detected hardware
and says which hardware it plans for; its signals tell the page to re-plan the table and the results.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QSizePolicy, QSpinBox, QWidget

from app.catalog.vram import CacheType
from app.hardware import Hardware, planned_hardware
from app.ui import theme
from app.ui.settings import UiSettings
from app.units import GIB, format_size

CACHE_LABELS = {
    CacheType.FP16: "FP16 (all backends)",
    CacheType.FP8: "FP8 (ExLlamaV2)",
    CacheType.Q8: "Q8 (ExLlamaV2)",
    CacheType.Q6: "Q6 (ExLlamaV2)",
    CacheType.Q4: "Q4 (ExLlamaV2)",
}
MAX_CONTEXT = 1 << 20


def hardware_summary(hw: Hardware) -> str:
    """One line: what the table plans for (planned or detected GPUs and their free memory, or the CPU)."""
    if hw.gpus:
        parts = [f"GPU {g.index} {g.name}: {format_size(g.free_bytes)} free" for g in hw.gpus]
        what = "the GPUs you entered" if hw.planned else "this machine"
        return f"Planning for {what}: " + " · ".join(parts)
    note = hw.gpu_note or "No CUDA GPU."
    return f"{note} Planning for the CPU: {format_size(hw.ram_available_bytes)} RAM free."


def hardware_short(hw: Hardware) -> str:
    """A few words for the planning row: 'CPU only · 21.5 GiB RAM free', '2 GPUs · 23.6 + 23.6 GiB free'."""
    if not hw.gpus:
        return f"CPU only · {format_size(hw.ram_available_bytes)} RAM free"
    free = " + ".join(f"{g.free_bytes / GIB:.1f}" for g in hw.gpus)
    count = len(hw.gpus)
    return f"{'Planned: ' if hw.planned else ''}{count} GPU{'s' if count != 1 else ''} · {free} GiB free"


def parse_gpu_plan(text: str) -> list[float] | None:
    """'24,24' -> [24.0, 24.0]; '' -> None (this machine); raises ValueError for anything else."""
    parts = [p.strip() for p in text.replace(";", ",").replace("GiB", "").split(",") if p.strip()]
    if not parts:
        return None
    sizes = [float(p) for p in parts]
    if any(s <= 0 or s > 4096 for s in sizes):
        raise ValueError("sizes must be positive GiB")
    return sizes


class PlanningBar(QWidget):
    """Context, longest prompt, KV cache, planned GPUs and a few words on the hardware planned for."""

    planning_changed = Signal()  # context, prompt or cache type changed (the cache type is saved)
    hardware_planned = Signal(object)  # Hardware: detected, or the GPUs the user entered

    def __init__(self, settings: UiSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._detected: Hardware | None = None
        planning = QHBoxLayout(self)
        planning.setContentsMargins(0, 0, 0, 0)
        planning.setSpacing(6)
        self.context_box = QSpinBox()
        self.context_box.setRange(0, MAX_CONTEXT)
        self.context_box.setSingleStep(1024)
        self.context_box.setSpecialValueText("model's maximum")
        self.context_box.setSuffix(" tokens")
        self.context_box.setAccelerated(True)
        self.context_box.setToolTip("Context length to plan memory for (0: each model's own maximum)")
        self.context_box.setValue(min(settings.default_context, MAX_CONTEXT))
        self.context_box.valueChanged.connect(self._planning_changed)
        self.prompt_box = QSpinBox()
        self.prompt_box.setRange(0, MAX_CONTEXT)
        self.prompt_box.setSingleStep(512)
        self.prompt_box.setSpecialValueText("¼ of context")
        self.prompt_box.setSuffix(" tokens")
        self.prompt_box.setAccelerated(True)
        self.prompt_box.setToolTip(
            "Longest prompt to plan for: processing it needs memory on top of the KV cache "
            "(0: a quarter of the context, at least 512 tokens)"
        )
        self.prompt_box.valueChanged.connect(self._planning_changed)
        self.cache_box = QComboBox()
        for cache, label in CACHE_LABELS.items():
            self.cache_box.addItem(label, cache.value)
        self.cache_box.setToolTip("KV cache type; quantized caches are an ExLlamaV2 feature")
        self.cache_box.setCurrentIndex(max(0, self.cache_box.findData(settings.cache_type.value)))
        self.cache_box.currentIndexChanged.connect(self._planning_changed)
        self.plan_box = QLineEdit()
        self.plan_box.setPlaceholderText("this machine")
        self.plan_box.setToolTip(
            "Plan for other GPUs: free GiB per GPU, e.g. 24 or 24,24. Empty: this machine."
        )
        self.plan_box.setMaximumWidth(140)
        self.plan_box.editingFinished.connect(self._plan_changed)
        self.hardware_label = QLabel("Detecting GPUs…")
        self.hardware_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hardware_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        planning.addWidget(QLabel("Context"))
        planning.addWidget(self.context_box)
        planning.addWidget(QLabel("Longest prompt"))
        planning.addWidget(self.prompt_box)
        planning.addSpacing(10)
        planning.addWidget(QLabel("KV cache"))
        planning.addWidget(self.cache_box)
        planning.addSpacing(10)
        planning.addWidget(QLabel("GPUs (GiB)"))
        planning.addWidget(self.plan_box)
        planning.addSpacing(10)
        planning.addWidget(self.hardware_label, 1)

    @property
    def context(self) -> int | None:
        """The context to plan for (None: each model's own maximum)."""
        return self.context_box.value() or None

    @property
    def prompt(self) -> int | None:
        """The longest prompt to plan for (None: a default share of each context)."""
        return self.prompt_box.value() or None

    @property
    def cache_type(self) -> CacheType:
        """The KV cache type to plan for."""
        return CacheType(self.cache_box.currentData())

    def set_detected(self, hardware: Hardware) -> None:
        """The detected hardware (arrives from a worker shortly after start-up); plans for it or the
        GPUs entered."""
        self._detected = hardware
        self._plan_changed()

    def _planning_changed(self) -> None:
        self.settings.cache_type = self.cache_type
        self.planning_changed.emit()

    def _plan_changed(self) -> None:
        if self._detected is None:
            return
        try:
            sizes = parse_gpu_plan(self.plan_box.text())
        except ValueError:
            self.plan_box.setStyleSheet(f"border: 1px solid {theme.error_color().name()};")
            self.plan_box.setToolTip("Give free GiB per GPU, e.g. 24 or 24,24 (empty: this machine).")
            return
        self.plan_box.setStyleSheet("")
        hardware = planned_hardware(self._detected, sizes) if sizes else self._detected
        self.hardware_label.setText(hardware_short(hardware))
        self.hardware_label.setToolTip(hardware_summary(hardware))
        self.hardware_planned.emit(hardware)
