"""``quantdesk chat``: with a local model (:mod:`app.cli.chat`) or a server (``--endpoint``)."""

from __future__ import annotations

import argparse

from app.cli.args import Subcommands


def add_parser(commands: Subcommands) -> None:
    """Register ``quantdesk chat`` with its local and remote-server options."""
    from app.cli.chat import add_chat_parser
    from app.cli.remote_chat import add_remote_options

    add_chat_parser(commands)
    add_remote_options(commands.choices["chat"])


def run(args: argparse.Namespace) -> int:
    """Chat with a server when ``--endpoint`` is given, else with a local model."""
    from app.cli.chat import run_chat
    from app.cli.remote_chat import run_remote_chat, wants_remote

    return run_remote_chat(args) if wants_remote(args) else run_chat(args)
