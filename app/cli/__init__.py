"""The ``quantdesk`` command line: one module per subcommand, registered in :data:`COMMANDS`.

Each command module offers ``add_parser(commands)`` and ``run(args) -> exit code``; nothing heavy is
imported until a command runs (a backend loads torch only once a model is about to be loaded).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from app import __version__
from app.errors import QuantDeskError
from app.logging_setup import setup_logging

_VERBOSE_HELP = "also show the libraries' logs and warnings on stderr (they always go to the log file)"
_COMMANDS_HELP = (
    "Run 'quantdesk search llama 70b gptq' to find a model, then 'quantdesk branches "
    "TheBloke/Llama-2-70B-GPTQ' to see a repo's quantization branches."
)

# Subcommand name → module under app.cli holding its add_parser/run. Order is the order of --help.
COMMANDS: dict[str, str] = {
    "search": "app.cli.search",
    "branches": "app.cli.branches",
    "download": "app.cli.download",
    "verify": "app.cli.verify",
    "chat": "app.cli.chat_command",
    "render": "app.cli.render_command",
    "serve": "app.cli.serve",
}


def build_parser(only: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``quantdesk`` command (``only``: register just these commands)."""
    parser = argparse.ArgumentParser(
        prog="quantdesk",
        description="Browse, download and chat with GPTQ-quantized LLMs from the Hugging Face Hub.",
        epilog=_COMMANDS_HELP,
    )
    parser.add_argument("--version", action="version", version=f"quantdesk {__version__}")
    parser.add_argument("--verbose", "-v", action="store_true", help=_VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is None or name in only:
            importlib.import_module(module).add_parser(commands)
    for command in commands.choices.values():  # also after the command: `quantdesk chat DIR --verbose`
        command.add_argument(
            "--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP
        )
    return parser


def _commands_needed(words: Sequence[str]) -> list[str] | None:
    """The commands whose parsers this command line needs (None: all, for help or a mistyped command).

    Registering a command imports its module, so ``quantdesk download`` and the window start without
    importing the chat engine or the catalog table.
    """
    if "-h" in words or "--help" in words:
        return None
    first = next((w for w in words if not w.startswith("-")), None)
    if first is None:
        return []  # no command: the window
    return [first] if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``quantdesk`` console script."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_commands_needed(words))
    args = parser.parse_args(words)
    # Before anything imports a library: their logs, warnings and banners go to the log file.
    setup_logging(verbose=args.verbose)
    if args.command is None:
        # No command: open the main window (Qt is imported only on this path; --help prints help).
        from app.ui.app import run_gui

        return run_gui()
    try:
        exit_code: int = importlib.import_module(COMMANDS[args.command]).run(args)
        return exit_code
    except QuantDeskError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
