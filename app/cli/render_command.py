"""``quantdesk render``: print the exact prompt a template makes of a conversation."""

from __future__ import annotations

import argparse

from app.cli.args import Subcommands


def add_parser(commands: Subcommands) -> None:
    """Register ``quantdesk render``."""
    from app.cli.chat import add_render_parser

    add_render_parser(commands)


def run(args: argparse.Namespace) -> int:
    """Render the prompt."""
    from app.cli.chat import run_render

    return run_render(args)
