"""Argument types shared by the ``quantdesk`` subcommands."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeAlias


def positive_int(text: str) -> int:
    """An argparse type: a whole number above zero."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def gpu_sizes(text: str) -> list[float]:
    """An argparse type: GiB per GPU, comma-separated (``24`` or ``24,24``)."""
    try:
        sizes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError("give GiB per GPU, e.g. 24 or 24,24") from exc
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError("give GiB per GPU, e.g. 24 or 24,24")
    return sizes


if TYPE_CHECKING:
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time on Python 3.11
    Subcommands: TypeAlias = argparse._SubParsersAction
