"""Export and import of conversations for the page: file names, text, and reading a file back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.chat.conversation import Conversation

# Export kinds: "md" the branch on screen, "md-all" every branch, "json" everything (always every branch).
FILTERS = {"md": "Markdown (*.md)", "md-all": "Markdown (*.md)", "json": "JSON (*.json)"}
_SUFFIX = {"md": "md", "md-all": "md", "json": "json"}


def export_name(conversation: Conversation, kind: str) -> str:
    """A file name from the title: ``Foxes.md``."""
    stem = "".join(c if c.isalnum() or c in "-_ " else "_" for c in conversation.title or "conversation")
    return f"{stem.strip() or 'conversation'}.{_SUFFIX[kind]}"


def export_text(conversation: Conversation, kind: str) -> str:
    """The conversation as Markdown ("md": the active path; "md-all": every branch) or JSON ("json")."""
    from app.chat.storage import conversation_to_json, conversation_to_markdown

    if kind in ("md", "md-all"):
        return conversation_to_markdown(conversation, all_branches=kind == "md-all")
    return json.dumps(conversation_to_json(conversation), indent=2, ensure_ascii=False)


def read_export(path: Path) -> dict[str, Any]:
    """A JSON export read from ``path``; ChatImportError (a sentence) when it is not one, OSError when
    the file cannot be read."""
    from app.errors import ChatImportError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ChatImportError(f"{path.name} is not valid JSON ({exc}).", "Choose an exported file.") from exc
    if not isinstance(data, dict):
        raise ChatImportError(f"{path.name} does not hold an exported conversation.", "")
    return data
