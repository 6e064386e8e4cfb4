"""The branch table's columns: an id, a header and the header's tooltip; one memory column per backend.

:class:`~app.ui.models.branch_model.BranchTableModel` shows them in this order; the view picks each
column's delegate from its key (``fit`` badges, ``download`` buttons).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.backends import BACKENDS


@dataclass(frozen=True)
class Column:
    """One column: an id, a header and the header's tooltip."""

    key: str
    title: str
    tooltip: str
    backend: str = ""
    gpu: int = -1


def branch_columns() -> list[Column]:
    """The columns of the branch table, in order."""
    cols = [
        Column("branch", "Branch", "The repo branch that holds this quantization"),
        Column("bits", "Bits", "Bits per weight"),
        Column("group", "Group", "GPTQ group size (none: one group per column)"),
        Column("act", "Act", "Act order (desc_act): better quality, slower on some backends"),
        Column("damp", "Damp", "GPTQ dampening percentage used when quantizing"),
        Column("dataset", "Dataset", "Calibration dataset"),
        Column("size", "Size", "Exact size of the branch's files on disk"),
    ]
    cols += [
        Column(
            f"vram:{b.name}",
            b.display_name,
            f"Peak memory {b.display_name} needs at this context, longest prompt and cache type (weights + "
            "KV cache + prefill + buffers + allocator reserve + CUDA context), corrected by your own "
            "measurement when there is one; in parentheses when it cannot run here",
            backend=b.name,
        )
        for b in BACKENDS
    ]
    # One fit column however many GPUs: the per-GPU picture and the split are in its tooltip and the
    # details pane (a column per GPU showed "Doesn't fit" next to a "Fits" split).
    cols.append(Column("fit", "Fit", "Best verdict among the backends that can run the branch here"))
    cols += [
        Column("backends", "Backends", "Which backends can run this branch; hover for the reasons"),
        Column("download", "Download", "Download the branch, or its state on this machine"),
        Column("description", "Description", "The model card's description of this branch"),
    ]
    return cols
