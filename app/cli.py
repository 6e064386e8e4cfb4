"""The ``quantdesk`` command line: ``quantdesk branches REPO`` prints a repo's quantization branches."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from app import __version__
from app.catalog.table import BranchRow
from app.catalog.vram import CacheType, gib
from app.errors import QuantDeskError
from app.units import format_size

_COMMANDS_HELP = "Run 'quantdesk branches TheBloke/Llama-2-70B-GPTQ' to see a repo's quantization branches."


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _gpu_sizes(text: str) -> list[float]:
    try:
        sizes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError("give GiB per GPU, e.g. 24 or 24,24") from exc
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError("give GiB per GPU, e.g. 24 or 24,24")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``quantdesk`` command."""
    parser = argparse.ArgumentParser(
        prog="quantdesk",
        description="Browse, download and chat with GPTQ-quantized LLMs from the Hugging Face Hub.",
        epilog=_COMMANDS_HELP,
    )
    parser.add_argument("--version", action="version", version=f"quantdesk {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    branches = commands.add_parser(
        "branches",
        help="list a repo's quantization branches with size, VRAM and fit",
        description="List every quantization branch of a Hub repo with its GPTQ parameters, size on disk, "
        "the memory each backend needs and whether it fits this machine.",
    )
    branches.add_argument("repo", help="org/name, org/name:branch, or a huggingface.co URL")
    branches.add_argument(
        "--context",
        type=_positive_int,
        default=None,
        help="context length to plan for (default: the model's)",
    )
    branches.add_argument(
        "--cache",
        choices=[c.value for c in CacheType],
        default=CacheType.FP16.value,
        help="KV cache type (quantized caches are ExLlamaV2 only; default fp16)",
    )
    branches.add_argument(
        "--gpus",
        type=_gpu_sizes,
        default=None,
        metavar="GIB[,GIB...]",
        help="plan for these (empty) GPUs instead of the detected ones, e.g. 24,24",
    )
    branches.add_argument("--offline", action="store_true", help="show the cached table without the network")
    branches.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_download_parser(commands)
    _add_chat_parsers(commands)
    return parser


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _vram_cell(row: BranchRow, backend: str) -> str:
    assessment = row.backend(backend)
    if assessment.vram is None:
        return "-"
    value = format_size(assessment.vram.total) + (" RAM" if assessment.on_cpu else "")
    return value if assessment.compatibility.compatible else f"({value})"


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


def _branches(args: argparse.Namespace) -> int:
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
    rows = evaluate(catalog.branches, args.context, CacheType(args.cache), hardware)
    local = _local_states(catalog.repo_id, {b.branch: b.commit for b in catalog.branches})
    if args.json:
        print(json.dumps([row_to_json(r, local.get(r.info.branch)) for r in rows], indent=2))
    else:
        print(f"{catalog.repo_id}: {len(rows)} branch{'es' if len(rows) != 1 else ''}")
        print(format_table(rows, local))
        gpus = ", ".join(f"{g.name} ({gib(g.free_bytes):.1f} GiB free)" for g in hardware.gpus)
        print(f"\nGPUs: {gpus or hardware.gpu_note}")
        print(f"Cache type: {args.cache}. A size in parentheses: that backend cannot run the branch here.")
        for row in rows:
            for warning in row.info.warnings:
                print(f"warning [{row.info.branch}]: {warning}")
    if catalog.stale:
        print(f"note: {catalog.stale_reason}", file=sys.stderr)
    return 0


def _local_states(repo_id: str, commits: dict[str, str]) -> dict[str, str]:
    """Which branches are on this machine ("downloaded", "update available", "incomplete")."""
    from app.downloads.registry import branch_states

    return branch_states(repo_id, commits)


# -- quantdesk download -----------------------------------------------------------------------------


def _add_download_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    download = commands.add_parser(
        "download",
        help="download (or resume, or update) one branch of a repo",
        description="Download a branch's weights, configs and tokenizer files into the models folder, "
        "resumably: Ctrl-C keeps what was fetched and running the same command again resumes. "
        "Prints the model folder's path last when every file is verified.",
    )
    download.add_argument("repo", help="org/name or org/name:branch (default branch: main)")
    download.add_argument("--dir", default=None, help="the model folder (default: <data dir>/models/...)")
    download.add_argument("--jobs", type=_positive_int, default=4, help="files in parallel (default 4)")
    download.add_argument("--all-files", action="store_true", help="fetch every file of the branch")


def _download(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.catalog.repo_ref import parse_repo_ref
    from app.downloads import BranchDownload, DownloadOptions, Outcome
    from app.downloads.cli_progress import ProgressPrinter

    ref = parse_repo_ref(args.repo)
    options = DownloadOptions(
        target=Path(args.dir).expanduser() if args.dir else None, jobs=args.jobs, all_files=args.all_files
    )
    printer = ProgressPrinter(sys.stderr)
    job = BranchDownload(ref.repo_id, ref.branch or "main", options=options, on_progress=printer)
    try:
        result = job.run()
    except KeyboardInterrupt:
        printer.finish()
        print(
            "Paused: what was downloaded is kept. Run the same command again to resume.",
            file=sys.stderr,
        )
        return 130
    finally:
        printer.finish()
    if result.outcome is not Outcome.COMPLETE:
        print(f"error: download {result.outcome}.", file=sys.stderr)
        return 1
    if result.source == "hf-cache":
        print("Already in the Hugging Face cache; nothing downloaded.", file=sys.stderr)
    print(result.path)
    return 0


# -- quantdesk chat / quantdesk render ----------------------------------------------------------------


def _add_chat_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from app.chat.cli import add_chat_parser, add_render_parser

    add_chat_parser(commands)
    from app.remote_chat import add_remote_options  # --endpoint/--model/--api-key-env (remote servers)

    add_remote_options(commands.choices["chat"])
    add_render_parser(commands)


def _chat_command(args: argparse.Namespace) -> int:
    from app.chat.cli import run_chat, run_render
    from app.remote_chat import run_remote_chat, wants_remote

    if args.command == "chat" and wants_remote(args):
        return run_remote_chat(args)
    return run_chat(args) if args.command == "chat" else run_render(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``quantdesk`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        # No command: open the main window (Qt is imported only on this path; --help prints help).
        from app.ui.app import run_gui

        return run_gui()
    try:
        if args.command == "download":
            return _download(args)
        if args.command in ("chat", "render"):
            return _chat_command(args)
        return _branches(args)
    except QuantDeskError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
