"""``quantdesk branches REPO``: a repo's quantization branches with size, memory and fit."""

from __future__ import annotations

import argparse
import json
import sys

from app.catalog.table import BranchRow
from app.catalog.vram import CacheType, gib
from app.cli.args import Subcommands, gpu_sizes, positive_int
from app.errors import QuantDeskError
from app.units import format_size


def add_parser(commands: Subcommands) -> None:
    """Register ``quantdesk branches``."""
    branches = commands.add_parser(
        "branches",
        help="list a repo's quantization branches with size, VRAM and fit",
        description="List every quantization branch of a Hub repo with its GPTQ parameters, size on disk, "
        "the memory each backend needs and whether it fits this machine.",
    )
    branches.add_argument("repo", help="org/name, org/name:branch, or a huggingface.co URL")
    branches.add_argument(
        "--context",
        type=positive_int,
        default=None,
        help="context length to plan for (default: the model's)",
    )
    branches.add_argument(
        "--prompt",
        type=positive_int,
        default=None,
        metavar="N",
        help="longest prompt to plan for, in tokens (default: a quarter of the context, at least 512)",
    )
    branches.add_argument(
        "--cache",
        choices=[c.value for c in CacheType],
        default=CacheType.FP16.value,
        help="KV cache type (quantized caches are ExLlamaV2 only; default fp16)",
    )
    branches.add_argument(
        "--gpus",
        type=gpu_sizes,
        default=None,
        metavar="GIB[,GIB...]",
        help="plan for these (empty) GPUs instead of the detected ones, e.g. 24,24",
    )
    branches.add_argument("--offline", action="store_true", help="show the cached table without the network")
    branches.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _vram_cell(row: BranchRow, backend: str) -> str:
    assessment = row.backend(backend)
    if assessment.vram is None:
        return "-"
    value = format_size(assessment.vram.total) + (" RAM" if assessment.on_cpu else "")
    if assessment.measurement is not None:
        value += "*"  # corrected by the user's own measurement (listed below the table)
    return value if assessment.compatibility.compatible else f"({value})"


def measured_notes(rows: list[BranchRow]) -> list[str]:
    """One line per estimate that a measurement on this machine corrected."""
    notes = []
    for row in rows:
        for a in row.backends:
            m = a.measurement
            if m is None or a.vram is None:
                continue
            where = "RAM" if m.device == "cpu" else "peak allocated"
            if a.measured_exact:
                what = f"measured here: {format_size(m.peak_bytes)} {where} at this context"
            else:
                what = (
                    f"corrected from a measurement here at {m.context} tokens "
                    f"({format_size(m.peak_bytes)} {where})"
                )
            notes.append(
                f"* {row.info.branch} / {a.display_name}: {what}; needs {format_size(a.vram.total)}."
            )
    return notes


def _table_line(row: BranchRow) -> list[str]:
    info, q = row.info, row.info.quantization
    status = str(row.fit.status) + (f" ({row.best_backend})" if row.best_backend else "")
    description = info.description if info.is_gptq else f"not GPTQ: {info.error or info.not_gptq_reason}"
    return [
        info.branch,
        str(q.bits or "-") if info.is_gptq else "-",
        str(q.group_size or "none") if info.is_gptq else "-",
        "-" if q.act_order is None or not info.is_gptq else ("yes" if q.act_order else "no"),
        format_size(info.size_bytes),
        _vram_cell(row, "exllamav2"),
        _vram_cell(row, "gptqmodel"),
        status,
        _short(description, 60),
    ]


def planning_summary(rows: list[BranchRow], cache: str) -> str:
    """'4096-token context, prompts up to 1024 tokens, fp16 cache' (ranges when rows differ)."""

    def span(values: set[int]) -> str:
        return str(min(values)) if len(values) == 1 else f"{min(values)}-{max(values)}"

    if not rows:
        return f"{cache} cache"
    contexts, prompts = {r.context for r in rows}, {r.prompt for r in rows}
    return f"{span(contexts)}-token context, prompts up to {span(prompts)} tokens, {cache} cache"


def format_table(rows: list[BranchRow], local: dict[str, str] | None = None) -> str:
    """The branch table as aligned plain text (with a "Local" column when ``local`` is given)."""
    headers = [
        "Branch",
        "Bits",
        "Group",
        "Act",
        "Size",
        "ExLlamaV2 needs",
        "GPTQModel needs",
        "Fits",
        "Description",
    ]
    lines = [_table_line(r) for r in rows]
    if local is not None:
        headers.append("Local")
        lines = [[*line, local.get(r.info.branch, "-")] for line, r in zip(lines, rows, strict=True)]
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out.extend("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    """Print the branch table (or JSON)."""
    from app.catalog.measured import MeasuredStore
    from app.catalog.repo_ref import parse_repo_ref
    from app.catalog.service import Catalog
    from app.catalog.table import evaluate, row_to_json
    from app.hardware import detect_hardware, planned_hardware

    ref = parse_repo_ref(args.repo)
    catalog_service = Catalog()
    catalog = catalog_service.cached(ref) if args.offline else catalog_service.fetch(ref)
    if catalog is None:
        raise QuantDeskError(f"Nothing is cached for {ref}.", "Run the command once without --offline.")
    hardware = detect_hardware()
    if args.gpus:
        hardware = planned_hardware(hardware, args.gpus)
    store = MeasuredStore()
    measured = store.for_repo(catalog.repo_id)
    if store.warning:
        print(f"warning: {store.warning}", file=sys.stderr)
    rows = evaluate(catalog.branches, args.context, CacheType(args.cache), hardware, args.prompt, measured)
    local = _local_states(catalog.repo_id, {b.branch: b.commit for b in catalog.branches})
    if args.json:
        print(json.dumps([row_to_json(r, local.get(r.info.branch)) for r in rows], indent=2))
    else:
        print(f"{catalog.repo_id}: {len(rows)} branch{'es' if len(rows) != 1 else ''}")
        print(format_table(rows, local))
        gpus = ", ".join(f"{g.name} ({gib(g.free_bytes):.1f} GiB free)" for g in hardware.gpus)
        print(f"\nGPUs: {gpus or hardware.gpu_note}")
        print(f"\nPlanned for: {planning_summary(rows, args.cache)}")
        print("A size in parentheses: that backend cannot run the branch here.")
        for note in measured_notes(rows):
            print(note)
        for row in rows:
            for warning in row.info.warnings:
                print(f"warning [{row.info.branch}]: {warning}")
    if catalog.stale:
        print(f"note: {catalog.stale_reason}", file=sys.stderr)
    if catalog.access_note:
        print(f"note: {catalog.access_note}", file=sys.stderr)
    if catalog_service.cache.write_error:
        print(f"note: {catalog_service.cache.write_error}", file=sys.stderr)
    return 0


def _local_states(repo_id: str, commits: dict[str, str]) -> dict[str, str]:
    """Which branches are on this machine ("downloaded", "update available", "incomplete")."""
    from app.downloads.registry import branch_states

    return branch_states(repo_id, commits)
