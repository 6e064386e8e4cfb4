"""Conversations as files: Markdown (readable; the active path, or every branch on request) and JSON
(always the whole tree, so an import restores every version), and JSON import.

JSON format version 2 adds ``parent_id``, ``active`` and ``stats`` to each message and ``active_path``
to the conversation; version-1 files (a flat message list) still import, as a one-branch conversation.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from app.chat.conversation import ChatMeta, Conversation, Message, ReplyStats, new_id
from app.chat.templates import Role
from app.errors import ChatImportError

EXPORT_FORMAT: Final = "quantdesk-conversation"
EXPORT_VERSION: Final = 2
_ROLE_HEADINGS: Final = {Role.USER: "User", Role.ASSISTANT: "Assistant", Role.SYSTEM: "System"}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _from_iso(text: Any, field_name: str) -> float:
    if isinstance(text, int | float):
        return float(text)
    if not isinstance(text, str):
        raise ChatImportError(f"'{field_name}' is not a timestamp.", "Import a file QuantDesk exported.")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError as exc:
        raise ChatImportError(f"'{field_name}' is not a timestamp: {text!r}.", "") from exc


def conversation_to_json(conversation: Conversation) -> dict[str, Any]:
    """A JSON-ready export of the whole tree: every message of every branch (creation order) with its
    parent, whether it is the active version, timestamps, token count and reply stats, plus the model
    (repo, branch, commit), template and sampler settings, and the active path's ids."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "id": conversation.id,
        "title": conversation.title,
        "created_at": _iso(conversation.created_at),
        "system_prompt": conversation.system_prompt,
        "model": {
            "repo_id": conversation.meta.repo_id,
            "branch": conversation.meta.branch,
            "commit": conversation.meta.commit,
            "backend": conversation.meta.backend,
            "model_dir": conversation.meta.model_dir,
        },
        "template": {"name": conversation.meta.template, "source": conversation.meta.template_source},
        "sampler": conversation.meta.sampler,
        "active_path": [m.id for m in conversation.active_path()],
        "messages": [
            {
                "id": m.id,
                "parent_id": m.parent_id,
                "active": conversation.is_active(m.id),
                "role": m.role.value,
                "content": m.content,
                "pinned": m.pinned,
                "complete": m.complete,
                "stop_reason": m.stop_reason,
                "token_count": m.token_count,
                "created_at": _iso(m.created_at),
                "updated_at": _iso(m.updated_at),
                "stats": m.stats.to_json() if m.stats is not None else None,
            }
            for m in conversation.all_messages()
        ],
    }


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ChatImportError(f"'{key}' must be text.", "Import a file QuantDesk exported.")
    return value


def _message_from_json(i: int, raw: object) -> tuple[Message, bool]:
    """Message ``i`` (0-based) of an export, and whether it is marked active."""
    if not isinstance(raw, Mapping):
        raise ChatImportError(f"Message {i + 1} is not an object.", "")
    try:
        role = Role(str(raw.get("role")))
    except ValueError as exc:
        raise ChatImportError(f"Message {i + 1} has an unknown role {raw.get('role')!r}.", "") from exc
    if role is Role.SYSTEM:
        raise ChatImportError(f"Message {i + 1} is a system message; the system prompt is separate.", "")
    content = raw.get("content")
    if not isinstance(content, str):
        raise ChatImportError(f"Message {i + 1} has no text content.", "")
    count = raw.get("token_count")
    created = _from_iso(raw.get("created_at", time.time()), "created_at")
    message = Message(
        role=role,
        content=content,
        id=_opt_str(raw, "id") or new_id(),
        pinned=bool(raw.get("pinned", False)),
        created_at=created,
        updated_at=_from_iso(raw.get("updated_at", created), "updated_at"),
        complete=bool(raw.get("complete", True)),
        stop_reason=_opt_str(raw, "stop_reason"),
        token_count=count if isinstance(count, int) else None,
        parent_id=_opt_str(raw, "parent_id"),
        stats=ReplyStats.from_json(raw.get("stats")),
    )
    return message, bool(raw.get("active", True))


def conversation_from_json(data: Mapping[str, Any]) -> Conversation:
    """Rebuild a conversation, every branch included, from :func:`conversation_to_json` output (format
    version 1 or 2); ChatImportError on anything else."""
    if not isinstance(data, Mapping) or data.get("format") != EXPORT_FORMAT:
        raise ChatImportError(
            "This is not a QuantDesk conversation export.", "Import a .json file QuantDesk exported."
        )
    version = data.get("version")
    if not isinstance(version, int) or version > EXPORT_VERSION:
        raise ChatImportError(
            f"The export is format version {version!r}; this QuantDesk reads up to {EXPORT_VERSION}.",
            "Update QuantDesk to import it.",
        )
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list):
        raise ChatImportError("The export has no message list.", "Import a file QuantDesk exported.")
    model = data.get("model") or {}
    template = data.get("template") or {}
    sampler = data.get("sampler") or {}
    if not isinstance(model, Mapping) or not isinstance(template, Mapping) or not isinstance(sampler, dict):
        raise ChatImportError("The export's model, template or sampler is malformed.", "")
    parsed = [_message_from_json(i, raw) for i, raw in enumerate(raw_messages)]
    ids = [m.id for m, _active in parsed]
    if len(set(ids)) != len(ids):
        raise ChatImportError("The export has two messages with the same id.", "")
    if version < 2:  # a flat list: each message follows the one before it
        for (message, _active), previous in zip(parsed, [None, *ids], strict=False):
            message.parent_id = previous
    conversation = Conversation(
        id=_opt_str(data, "id") or new_id(),
        title=_opt_str(data, "title") or "",
        system_prompt=_opt_str(data, "system_prompt"),
        created_at=_from_iso(data.get("created_at", time.time()), "created_at"),
        meta=ChatMeta(
            repo_id=_opt_str(model, "repo_id"),
            branch=_opt_str(model, "branch"),
            commit=_opt_str(model, "commit"),
            backend=_opt_str(model, "backend"),
            model_dir=_opt_str(model, "model_dir"),
            template=_opt_str(template, "name"),
            template_source=_opt_str(template, "source"),
            sampler=dict(sampler),
        ),
    )
    conversation.restore((m for m, _a in parsed), [m.id for m, active in parsed if active])
    return conversation


def with_fresh_ids(conversation: Conversation) -> Conversation:
    """A copy of the conversation with new ids for it and every message (parents and the active
    versions follow), e.g. to import a file twice."""
    mapping = {m.id: new_id() for m in conversation.all_messages()}
    active = [mapping[m.id] for m in conversation.all_messages() if conversation.is_active(m.id)]
    copied = Conversation(
        title=conversation.title,
        system_prompt=conversation.system_prompt,
        meta=conversation.meta,
        created_at=conversation.created_at,
    )
    messages = []
    for m in conversation.all_messages():
        parent = mapping[m.parent_id] if m.parent_id is not None else None
        messages.append(
            Message(
                role=m.role,
                content=m.content,
                id=mapping[m.id],
                pinned=m.pinned,
                created_at=m.created_at,
                updated_at=m.updated_at,
                complete=m.complete,
                stop_reason=m.stop_reason,
                token_count=m.token_count,
                parent_id=parent,
                stats=m.stats,
            )
        )
    copied.restore(messages, active)
    return copied


def _message_markdown(conversation: Conversation, message: Message, heading_level: str) -> list[str]:
    notes = [_iso(message.created_at)]
    n, count = conversation.version_position(message.id)
    if count > 1:
        notes.append(f"version {n} of {count}")
    if message.token_count is not None:
        notes.append(f"{message.token_count} tokens")
    if message.stats is not None:
        notes.append(f"{message.stats.tokens_per_second:.1f} tokens/s")
    if message.pinned:
        notes.append("pinned")
    if not message.complete:
        notes.append("interrupted")
    elif message.stop_reason and message.stop_reason not in ("eos", "stop_string"):
        notes.append(f"stopped: {message.stop_reason}")
    heading = _ROLE_HEADINGS[message.role]
    return ["", f"{heading_level} {heading}", "", f"*{', '.join(notes)}*", "", message.content]


def _branch_from(conversation: Conversation, message: Message) -> list[Message]:
    """``message`` and the active versions below it."""
    branch = [message]
    while children := conversation.children(branch[-1].id):
        active = [c for c in children if conversation.is_active(c.id)]
        branch.append(active[0] if active else children[-1])
    return branch


def conversation_to_markdown(conversation: Conversation, *, all_branches: bool = False) -> str:
    """A readable Markdown export with the model, branch, template and sampler at the top, then the
    active path; with ``all_branches``, each other version follows as a branch of its own (every
    message of the tree appears exactly once)."""
    meta = conversation.meta
    model = meta.repo_id or meta.model_dir or "unknown model"
    if meta.branch:
        model += f" (branch `{meta.branch}`" + (f", commit `{meta.commit[:12]}`" if meta.commit else "") + ")"
    lines = [f"# {conversation.title or 'Conversation'}", ""]
    lines.append(f"- **Model:** {model}")
    if meta.backend:
        lines.append(f"- **Backend:** {meta.backend}")
    lines.append(
        f"- **Template:** {meta.template or 'unknown'}"
        + (f" ({meta.template_source})" if meta.template_source else "")
    )
    if meta.sampler:
        sampler = ", ".join(f"{k}={v}" for k, v in sorted(meta.sampler.items()))
        lines.append(f"- **Sampler:** {sampler}")
    lines.append(f"- **Started:** {_iso(conversation.created_at)}")
    if conversation.system_prompt:
        lines += ["", "## System", "", conversation.system_prompt]
    for message in conversation.active_path():
        lines += _message_markdown(conversation, message, "##")
    if all_branches:
        others = [m for m in conversation.all_messages() if not conversation.is_active(m.id)]
        for number, start in enumerate(others, 1):
            n, count = conversation.version_position(start.id)
            depth = len(conversation.path_to(start.id))
            lines += ["", "---", "", f"## Branch {number}: version {n} of {count} of message {depth}"]
            for message in _branch_from(conversation, start):
                lines += _message_markdown(conversation, message, "###")
    return "\n".join(lines) + "\n"
