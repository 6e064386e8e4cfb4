"""Turn what was fetched for one branch (tree, configs, card) into a :class:`BranchInfo`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from app.catalog.architecture import architecture_from_config
from app.catalog.branch import BranchInfo, FileEntry, TemplateInfo
from app.catalog.model_card import ModelCard
from app.catalog.quantization import (
    QuantizationParams,
    QuantSource,
    from_branch_name,
    from_card_row,
    from_quant_config,
    merge_sources,
)
from app.catalog.sizing import gptq_checkpoint_bytes

# Listed weights further than this from the size the config implies suggest mismatched files.
_SIZE_MISMATCH_SHARE = 0.10


@dataclass(frozen=True)
class FetchedBranch:
    """The raw material fetched for one branch; None for a file the branch does not have."""

    repo_id: str
    branch: str
    commit: str
    files: tuple[FileEntry, ...]
    config: Mapping[str, Any] | None
    quantize_config: Mapping[str, Any] | None
    tokenizer_config: Mapping[str, Any] | None
    chat_template_jinja: str | None
    problems: tuple[str, ...] = ()  # e.g. "config.json is not valid JSON"


def _own_template(fetched: FetchedBranch) -> TemplateInfo | None:
    if fetched.chat_template_jinja and fetched.chat_template_jinja.strip():
        return TemplateInfo("jinja", "chat_template.jinja", fetched.chat_template_jinja)
    template = (fetched.tokenizer_config or {}).get("chat_template")
    # Older tokenizers store several named templates; "default" is the chat one.
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if isinstance(template, str) and template.strip():
        return TemplateInfo("jinja", "tokenizer_config.json", template)
    return None


def _template(fetched: FetchedBranch, card: ModelCard) -> TemplateInfo:
    own = _own_template(fetched)
    if own:
        return own
    if card.template:
        return TemplateInfo(card.template.name or card.template.label, "model card", card.template.text)
    return TemplateInfo(None, "none")


def _quantization(fetched: FetchedBranch, card: ModelCard) -> tuple[QuantizationParams, list[str], bool]:
    """Merged parameters, warnings, and whether the branch's own files state them."""
    sources: list[QuantizationParams] = []
    if fetched.quantize_config is not None:
        sources.append(from_quant_config(fetched.quantize_config, QuantSource.QUANTIZE_CONFIG))
    quant_config = (fetched.config or {}).get("quantization_config")
    if isinstance(quant_config, Mapping):
        sources.append(from_quant_config(quant_config, QuantSource.CONFIG_JSON))
    from_files = bool(sources)
    row = card.row(fetched.branch)
    if row is not None and row.bits is not None:
        sources.append(from_card_row(row))
    by_name = from_branch_name(fetched.branch)
    if by_name is not None:
        sources.append(by_name)
    merged, warnings = merge_sources(sources)
    return merged, warnings, from_files


def build_branch_info(fetched: FetchedBranch, card: ModelCard) -> BranchInfo:
    """Assemble the facts of one branch; never raises on odd content, it reports warnings instead."""
    warnings = list(fetched.problems)
    quant, quant_warnings, from_files = _quantization(fetched, card)
    warnings.extend(quant_warnings)
    arch = architecture_from_config(fetched.config) if fetched.config else None
    if fetched.config is None:
        warnings.append("The branch has no config.json, so its architecture is unknown.")
    elif arch is None:
        warnings.append("config.json lacks the model's shape (layers, hidden size, heads, vocabulary).")

    has_weights = any(f.is_weight for f in fetched.files)
    method = (quant.quant_method or "gptq").lower()
    not_gptq = ""
    if not has_weights:
        not_gptq = "the branch has no weight files."
    elif method != "gptq":
        not_gptq = f"it is quantized with {method.upper()}, not GPTQ."
    elif quant.bits is None:
        not_gptq = "it has no GPTQ quantization config; it looks like an unquantized model."
    elif not from_files:
        warnings.append(
            f"The branch has no quantize_config.json; its parameters come from the {quant.source}."
        )

    row = card.row(fetched.branch)
    info = BranchInfo(
        repo_id=fetched.repo_id,
        branch=fetched.branch,
        commit=fetched.commit,
        is_gptq=not not_gptq,
        not_gptq_reason=not_gptq,
        quantization=quant,
        dataset=row.dataset if row else None,
        seq_len=row.seq_len if row else None,
        description=row.description if row else "",
        card_exllama=row.exllama if row else None,
        files=fetched.files,
        architecture=arch,
        template=_template(fetched, card),
        warnings=(),
    )
    if info.is_gptq and arch is not None and quant.bits is not None and info.weight_bytes:
        expected = gptq_checkpoint_bytes(arch, quant.bits, quant.group_size)
        if abs(info.weight_bytes - expected) > expected * _SIZE_MISMATCH_SHARE:
            warnings.append(
                f"The weight files hold {info.weight_bytes / 1e9:.2f} GB, but {quant.bits}-bit GPTQ of this "
                f"architecture should be about {expected / 1e9:.2f} GB; files and config may not match."
            )
    return replace(info, warnings=tuple(dict.fromkeys(warnings)))
