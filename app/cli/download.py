"""``quantdesk download REPO[:BRANCH]``: fetch one branch resumably into a model folder."""

from __future__ import annotations

import argparse
import sys

from app.cli.args import Subcommands, positive_int


def connection_count(text: str) -> int:
    """An argparse type: connections per file, 1 to 16."""
    value = positive_int(text)
    if value > 16:
        raise argparse.ArgumentTypeError("must be between 1 and 16")
    return value


def add_parser(commands: Subcommands) -> None:
    """Register ``quantdesk download``."""
    download = commands.add_parser(
        "download",
        help="download (or resume, or update) one branch of a repo",
        description="Download a branch's weights, configs and tokenizer files into the models folder, "
        "resumably: Ctrl-C keeps what was fetched and running the same command again resumes. "
        "Prints the model folder's path last when every file is verified.",
    )
    download.add_argument("repo", help="org/name or org/name:branch (default branch: main)")
    download.add_argument("--dir", default=None, help="the model folder (default: <data dir>/models/...)")
    download.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        help="files in parallel (default 8; all of them share at most 32 connections)",
    )
    download.add_argument(
        "--connections",
        type=connection_count,
        default=8,
        metavar="N",
        help="connections per file of 16 MiB or more, 1-16 (default 8; at most 32 in all)",
    )
    download.add_argument("--all-files", action="store_true", help="fetch every file of the branch")


def run(args: argparse.Namespace) -> int:
    """Download one branch; print the model folder last."""
    from pathlib import Path

    from app.catalog.repo_ref import parse_repo_ref
    from app.cli.progress import ProgressPrinter
    from app.downloads import BranchDownload, DownloadOptions, Outcome

    ref = parse_repo_ref(args.repo)
    options = DownloadOptions(
        target=Path(args.dir).expanduser() if args.dir else None,
        connections=args.connections,
        all_files=args.all_files,
    )
    if args.jobs is not None:
        options.jobs = args.jobs
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
        print_notices()
    if result.outcome is not Outcome.COMPLETE:
        print(f"error: download {result.outcome}.", file=sys.stderr)
        return 1
    if result.source == "hf-cache":
        print("Already in the Hugging Face cache; nothing downloaded.", file=sys.stderr)
    elif result.was_complete:
        print(
            f"Already complete; nothing downloaded. To check its files against the Hub's hashes: "
            f"quantdesk verify {result.path}",
            file=sys.stderr,
        )
    print(result.path)
    return 0


def print_notices() -> None:
    """Print what the download stores had to tell (a damaged record set aside) on stderr."""
    from app.downloads import notices

    for sentence in notices.take():
        print(f"warning: {sentence}", file=sys.stderr)
