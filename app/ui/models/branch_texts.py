"""What the branch table and the details pane say about a row: memory, backends, fit split, parts.

Pure text from the catalog core's :class:`~app.catalog.table.BranchRow` (no Qt widgets), so the
table's cells and tooltips and the details pane word things the same way.
"""

from __future__ import annotations

from app.catalog.fit import FitResult
from app.catalog.table import BackendAssessment, BranchRow
from app.catalog.vram import PART_GROWTH
from app.ui import theme
from app.units import format_size


def split_lines(fit: FitResult) -> list[str]:
    """The per-GPU picture of a verdict: how a split places the model, and each GPU alone."""
    lines = []
    if fit.gpus_used > 1:
        lines.append(
            f"Split over {fit.gpus_used} GPUs: " + " + ".join(format_size(b) for b in fit.split_bytes)
        )
    if len(fit.per_gpu) > 1:
        for g in fit.per_gpu:
            label = theme.FIT_LABELS[g.status]
            lines.append(
                f"GPU {g.gpu_index} ({g.gpu_name}) alone: {label}, needs {format_size(g.need_bytes)} "
                f"of {format_size(g.free_bytes)} free"
            )
    return lines


def parts_lines(assessment: BackendAssessment) -> list[str]:
    """Each part of a memory need with what it depends on, then the measurement behind it."""
    vram = assessment.vram
    if vram is None:
        return []
    lines = [
        f"{theme.PART_LABELS[k]}: {format_size(v)} ({PART_GROWTH[k]})" for k, v in vram.parts().items() if v
    ]
    lines += measured_lines(assessment)
    return lines


def measured_lines(assessment: BackendAssessment) -> list[str]:
    """What the user's own measurement says, and the formula's figure it corrected."""
    m = assessment.measurement
    if m is None:
        return []
    where = "RAM" if m.device == "cpu" else "peak allocated"
    when = "at this context" if assessment.measured_exact else f"at {m.context} tokens of context"
    lines = [f"Measured here: {format_size(m.peak_bytes)} {where} {when} (prompt {m.prompt_tokens} tokens)"]
    if assessment.formula is not None:
        lines.append(
            f"The formula alone said {format_size(assessment.formula.total)}; weights and buffers are "
            "learned from your measurement, the parts that grow come from the formula."
        )
    return lines


def dash(value: object) -> str:
    """The value as text, an em dash for none."""
    return "—" if value is None or value == "" else str(value)


def memory_text(assessment: BackendAssessment) -> str:
    """'1.23 GiB', '1.23 GiB RAM' on a CPU run, in parentheses when the backend cannot run it here."""
    if assessment.vram is None:
        return "—"
    text = format_size(assessment.vram.total) + (" RAM" if assessment.on_cpu else "")
    # Kept short: a wide cell would push Download and Description off-screen; the tooltip and the
    # details pane say more.
    if assessment.measured_here is not None:
        text += f" (measured {format_size(assessment.measured_here)})"
    elif assessment.measurement is not None:
        text += " (corrected)"
    return text if assessment.compatibility.compatible else f"({text})"


def backends_text(row: BranchRow) -> str:
    """The backends that can run the branch here, default first ('none' when there is none)."""
    usable = [a for a in row.backends if a.compatibility.compatible]
    usable.sort(key=lambda a: a.name != row.best_backend)
    return ", ".join(a.display_name for a in usable) or "none"


def backends_tooltip(row: BranchRow) -> str:
    """Each backend's verdict and reason, one per line."""
    lines = []
    for a in row.backends:
        mark = "can run it" if a.compatibility.compatible else "cannot run it"
        best = " (default)" if a.name == row.best_backend else ""
        lines.append(f"<b>{a.display_name}</b>{best} {mark}: {a.compatibility.reason}")
    return "<br>".join(lines)
