"""A branch's GPTQ parameters, read from its files, its card row or its name, with disagreements reported."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from app.catalog.model_card import CardBranchRow


class QuantSource:
    """Where quantization facts came from, strongest first."""

    QUANTIZE_CONFIG = "quantize_config.json"
    CONFIG_JSON = "config.json"
    CARD = "model card"
    BRANCH_NAME = "branch name"


@dataclass(frozen=True)
class QuantizationParams:
    """GPTQ parameters of one branch. Fields are None when no source states them."""

    bits: int | None = None
    group_size: int | None = None  # None means no grouping (-1 in the files)
    act_order: bool | None = None
    damp_percent: float | None = None
    sym: bool | None = None
    true_sequential: bool | None = None
    checkpoint_format: str | None = None
    quant_method: str | None = None
    source: str | None = None  # the strongest source that gave the bit width


# The fields compared across sources when looking for disagreements, with their user-facing names.
_COMPARED_FIELDS = {"bits": "bits", "group_size": "group size", "act_order": "act order"}

_BRANCH_NAME = re.compile(
    r"^gptq-(?P<bits>\d+)(?:bit|b)?-(?P<gs>-?\d+|none)g?(?:-actorder_(?P<act>true|false))?", re.IGNORECASE
)


def _group(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return int(value)


def _bool_or_none(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def from_quant_config(config: Mapping[str, Any], source: str) -> QuantizationParams:
    """Read quantize_config.json or config.json's ``quantization_config``."""
    bits = config.get("bits", config.get("w_bit"))
    damp = config.get("damp_percent")
    method = config.get("quant_method")
    return QuantizationParams(
        bits=int(bits) if isinstance(bits, int) and not isinstance(bits, bool) else None,
        group_size=_group(config.get("group_size", config.get("q_group_size"))),
        act_order=_bool_or_none(config.get("desc_act")),
        damp_percent=float(damp) if isinstance(damp, int | float) and not isinstance(damp, bool) else None,
        sym=_bool_or_none(config.get("sym")),
        true_sequential=_bool_or_none(config.get("true_sequential")),
        checkpoint_format=str(config.get("checkpoint_format") or config.get("format") or "gptq")
        if source == QuantSource.QUANTIZE_CONFIG or method == "gptq"
        else None,
        quant_method=str(method) if method else ("gptq" if source == QuantSource.QUANTIZE_CONFIG else None),
        source=source,
    )


def from_card_row(row: CardBranchRow) -> QuantizationParams:
    """Quantization as the card's "Provided files" table states it."""
    return QuantizationParams(
        bits=row.bits,
        group_size=row.group_size,
        act_order=row.act_order,
        damp_percent=row.damp_percent,
        quant_method="gptq" if row.bits else None,
        source=QuantSource.CARD,
    )


def from_branch_name(branch: str) -> QuantizationParams | None:
    """Parse names like ``gptq-4bit-32g-actorder_True``, ``gptq-3bit--1g-actorder_True``, ``gptq-4-32g``."""
    match = _BRANCH_NAME.match(branch)
    if not match:
        return None
    gs_text = match.group("gs").lower()
    act = match.group("act")
    return QuantizationParams(
        bits=int(match.group("bits")),
        group_size=None if gs_text in ("none", "-1") else _group(int(gs_text)),
        act_order=None if act is None else act.lower() == "true",
        quant_method="gptq",
        source=QuantSource.BRANCH_NAME,
    )


def _describe(name: str, value: Any) -> str:
    if name == "group_size":
        return "none" if value is None else str(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _states(params: QuantizationParams, name: str) -> bool:
    # A group size of None means "no grouping" when the source states the bit width, "unknown" otherwise.
    if name == "group_size":
        return params.bits is not None
    return getattr(params, name) is not None


def merge_sources(sources: list[QuantizationParams]) -> tuple[QuantizationParams, list[str]]:
    """Combine sources (strongest first): each field comes from the strongest source stating it.

    Returns the merged parameters and one warning per fact on which a weaker source disagrees with
    the one that won, so the branch's own files win over the card and the card over the branch name.
    """
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for f in fields(QuantizationParams):
        stating = [s for s in sources if _states(s, f.name)]
        if not stating:
            continue
        winner = stating[0]
        values[f.name] = getattr(winner, f.name)
        label = _COMPARED_FIELDS.get(f.name)
        if label is None:
            continue
        for weaker in stating[1:]:
            theirs, ours = getattr(weaker, f.name), values[f.name]
            if theirs != ours:
                warnings.append(
                    f"The {weaker.source} says {label} {_describe(f.name, theirs)}, but the "
                    f"{winner.source} says {_describe(f.name, ours)}; using {_describe(f.name, ours)}."
                )
    values["source"] = next((s.source for s in sources if s.bits is not None), None)
    return QuantizationParams(**values), warnings
