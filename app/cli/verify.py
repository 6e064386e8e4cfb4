"""``quantdesk verify DIR [--repair]``: re-hash a downloaded model against the Hub's recorded identities.

Repair is a flag, not a prompt: ``download`` and ``verify`` are otherwise non-interactive (scripts run
them), and a repair fetches from the network, which a user should ask for in the command they type.
"""

from __future__ import annotations

import argparse
import sys

from app.cli.args import Subcommands


def add_parser(commands: Subcommands) -> None:
    """Register ``quantdesk verify``."""
    verify = commands.add_parser(
        "verify",
        help="check a downloaded model's files against the Hub's hashes (and repair them)",
        description="Re-hash every file of a model folder QuantDesk downloaded: sha256 for weights (LFS), "
        "the git blob id for small files. Prints one line per damaged file and a summary; exit 0 when "
        "every file is intact (or was repaired), 1 otherwise. --repair re-fetches only the damaged files.",
    )
    verify.add_argument("dir", help="the model folder (as printed by 'quantdesk download')")
    verify.add_argument(
        "--repair", action="store_true", help="re-fetch the damaged files (same commit) and check again"
    )


def run(args: argparse.Namespace) -> int:
    """Verify (and optionally repair) one model folder."""
    from pathlib import Path

    from app.cli.download import print_notices
    from app.cli.progress import ProgressPrinter
    from app.downloads.verify import repair_folder, verify_folder

    folder = Path(args.dir).expanduser()
    try:
        report = verify_folder(folder)
    finally:
        print_notices()
    for check in report.bad:
        print(f"{check.status}: {check.path}" + (f" ({check.detail})" if check.detail else ""))
    if report.ok or not args.repair:
        print(report.summary())
        if not report.ok:
            print(f"Run 'quantdesk verify {folder} --repair' to re-fetch them.", file=sys.stderr)
        return 0 if report.ok else 1
    printer = ProgressPrinter(sys.stderr)
    try:
        repair_folder(report, on_progress=printer)
    finally:
        printer.finish()
        print_notices()
    again = verify_folder(folder)
    print(f"Repaired {len(report.bad)} file(s). {again.summary()}")
    return 0 if again.ok else 1
