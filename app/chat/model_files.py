"""What a downloaded model folder says about chatting with it, read from its small files only.

Nothing here imports transformers or a backend: the chat template, BOS/EOS spellings, the card's
template label, generation defaults and the context length are all plain JSON/text files, so the GUI
can show them (and ``quantdesk render`` can use them) before any model is loaded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from app.catalog.branch import BranchInfo, FileEntry
from app.catalog.model_card import CardTemplate, parse_model_card

# Big enough for any real config or template; a larger "config" is not one and is not read.
_MAX_FILE_BYTES: Final = 8 * 1024 * 1024
# ``.../models--org--name/snapshots/<commit>``: a Hugging Face cache snapshot.
_HF_SNAPSHOT: Final = re.compile(
    r"models--(?P<org>[^/\\]+?)--(?P<name>[^/\\]+)[/\\]snapshots[/\\](?P<commit>\w+)$"
)


@dataclass(frozen=True)
class ModelFiles:
    """Chat-relevant facts of one model folder; every field is None/empty when its file is absent."""

    model_dir: Path
    own_template: str | None = None  # the model's Jinja chat template
    own_template_origin: str | None = None  # "chat_template.jinja" or "tokenizer_config.json"
    bos_token: str | None = None
    eos_token: str | None = None
    add_bos_token: bool | None = None  # tokenizer_config.json's rule for a leading BOS
    card_template: CardTemplate | None = None
    generation_config: dict[str, Any] = field(default_factory=dict)
    context_length: int | None = None
    repo_id: str | None = None
    branch: str | None = None
    commit: str | None = None


def _read_text(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > _MAX_FILE_BYTES:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _read_json(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    # Tokenizer files store a special token as a string or as a serialized AddedToken object.
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def own_template(model_dir: Path) -> tuple[str | None, str | None]:
    """The model's own chat template and the file it came from (transformers 5 writes the .jinja file)."""
    text = _read_text(model_dir / "chat_template.jinja")
    if text and text.strip():
        return text, "chat_template.jinja"
    template = _read_json(model_dir / "tokenizer_config.json").get("chat_template")
    # Older tokenizers store several named templates; "default" is the chat one.
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if isinstance(template, str) and template.strip():
        return template, "tokenizer_config.json"
    return None, None


def _provenance(model_dir: Path) -> tuple[str | None, str | None, str | None]:
    """repo, branch and commit of a QuantDesk download folder or a Hugging Face cache snapshot."""
    try:
        from app.downloads.registry import folder_model

        local = folder_model(model_dir)
    except Exception:  # a damaged record must not stop a chat; the folder is still usable
        local = None
    if local is not None:
        return local.repo_id, local.branch, local.commit
    match = _HF_SNAPSHOT.search(str(model_dir.resolve()))
    if match:
        return f"{match['org']}/{match['name']}", None, match["commit"]
    return None, None, None


def read_model_files(model_dir: Path) -> ModelFiles:
    """Read ``model_dir``'s tokenizer config, chat template, README card, generation and model config."""
    tok = _read_json(model_dir / "tokenizer_config.json")
    special = _read_json(model_dir / "special_tokens_map.json")
    config = _read_json(model_dir / "config.json")
    template, origin = own_template(model_dir)
    card_text = _read_text(model_dir / "README.md")
    card = parse_model_card(card_text).template if card_text else None
    context = config.get("max_position_embeddings")
    add_bos = tok.get("add_bos_token")
    repo_id, branch, commit = _provenance(model_dir)
    return ModelFiles(
        model_dir=model_dir,
        own_template=template,
        own_template_origin=origin,
        bos_token=_token_text(tok.get("bos_token")) or _token_text(special.get("bos_token")),
        eos_token=_token_text(tok.get("eos_token")) or _token_text(special.get("eos_token")),
        add_bos_token=add_bos if isinstance(add_bos, bool) else None,
        card_template=card,
        generation_config=_read_json(model_dir / "generation_config.json"),
        context_length=context if isinstance(context, int) and context > 0 else None,
        repo_id=repo_id,
        branch=branch,
        commit=commit,
    )


def local_branch_info(files: ModelFiles) -> BranchInfo:
    """The catalog's view of a downloaded folder (GPTQ parameters, architecture, sizes), so backend
    selection can judge a local model exactly as it judges a branch on the Hub."""
    from app.catalog.branch_facts import FetchedBranch, build_branch_info

    folder = files.model_dir
    entries: list[FileEntry] = []
    try:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if path.is_file() and not relative.parts[0].startswith("."):  # skip .quantdesk/ bookkeeping
                entries.append(FileEntry(relative.as_posix(), path.stat().st_size))
    except OSError:
        pass  # an unreadable folder: backends' own checks will name what is missing
    quantize = _read_json(folder / "quantize_config.json")
    config = _read_json(folder / "config.json")
    card_text = _read_text(folder / "README.md")
    fetched = FetchedBranch(
        repo_id=files.repo_id or f"local/{folder.name}",
        branch=files.branch or "main",
        commit=files.commit or "",
        files=tuple(entries),
        config=config or None,
        quantize_config=quantize or None,
        tokenizer_config=_read_json(folder / "tokenizer_config.json") or None,
        chat_template_jinja=files.own_template
        if files.own_template_origin == "chat_template.jinja"
        else None,
    )
    return build_branch_info(fetched, parse_model_card(card_text or ""))
