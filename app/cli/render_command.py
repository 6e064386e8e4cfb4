"""``quantdesk render``: print the exact prompt a template makes of a conversation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from app.chat.detection import TemplateChoice, detect_for_model
from app.chat.model_files import read_model_files
from app.chat.templates import (
    DEFAULT_BOS_TOKEN,
    DEFAULT_EOS_TOKEN,
    ChatMessage,
    Role,
    get_template,
    load_user_templates,
    render_text,
    template_names,
)
from app.cli.args import Subcommands
from app.errors import ChatError


def _shown(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for a message (a 5,000-character argument stays readable)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def add_parser(commands: Subcommands) -> None:
    """Register ``quantdesk render``."""
    render = commands.add_parser(
        "render",
        help="print the exact prompt a template makes of a conversation",
        description="Print the exact prompt text a template produces for the messages in FILE.json "
        '(a list of {role, content}, or {"messages": [...]}), BOS/EOS spelled as the tokenizer\'s '
        "strings ('<s>'/'</s>' without --model). Templates: " + ", ".join(template_names()) + ".",
    )
    render.add_argument("--template", default=None, help="template name (default: detected from --model)")
    render.add_argument("--system", default=None, help="system prompt ('' for none; default: the template's)")
    render.add_argument("--messages", required=True, type=Path, help="JSON file with the messages")
    render.add_argument(
        "--model", type=Path, default=None, help="model folder: its tokenizer's BOS/EOS and template"
    )
    render.add_argument(
        "--no-generation-prompt", action="store_true", help="do not open the assistant's turn at the end"
    )


# -- render -------------------------------------------------------------------------------------------


def _read_messages(path: Path) -> list[ChatMessage]:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ChatError(f"Cannot read {path}: {exc.strerror or exc}.", "Check the path.") from exc
    except ValueError as exc:
        raise ChatError(f"{path} is not valid JSON: {exc}.", "Fix the file.") from exc
    if isinstance(data, dict):
        data = data.get("messages")
    hint = 'Give a list like [{"role": "user", "content": "Hello!"}].'
    if not isinstance(data, list):
        raise ChatError(f"{path} holds no message list.", hint)
    messages: list[ChatMessage] = []
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise ChatError(f"Message {i} in {path} needs a text 'content'.", hint)
        try:
            role = Role(str(item.get("role")))
        except ValueError as exc:
            raise ChatError(
                f"Message {i} in {path} has role {item.get('role')!r}.", "Roles: system, user, assistant."
            ) from exc
        messages.append(ChatMessage(role, item["content"]))
    return messages


def _model_folder(path: Path) -> Path:
    """``path`` when it is a folder; else ChatError saying what it is instead."""
    try:
        if path.is_dir():
            return path
        what = "a file, not a model folder" if path.exists() else "not there"
    except OSError as exc:  # e.g. ENAMETOOLONG
        what = f"not a usable path ({exc.strerror or exc})"
    raise ChatError(
        f"--model {_shown(str(path))} is {what}.",
        "Give the folder a model was downloaded to (render does not read repo ids).",
    )


def render_prompt(
    messages: list[ChatMessage],
    choice_or_name: TemplateChoice | str,
    *,
    system: str | None = None,
    bos_token: str | None = DEFAULT_BOS_TOKEN,
    eos_token: str | None = DEFAULT_EOS_TOKEN,
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text for ``messages``: ``system`` (if given) replaces theirs; else theirs, else the
    template's default system prompt."""
    template = (
        get_template(choice_or_name, load_user_templates())
        if isinstance(choice_or_name, str)
        else choice_or_name.template
    )
    body = [m for m in messages if m.role is not Role.SYSTEM]
    own_system = next((m.content for m in messages if m.role is Role.SYSTEM), None)
    text = system if system is not None else own_system if own_system is not None else template.default_system
    full = ([ChatMessage(Role.SYSTEM, text)] if text else []) + body
    continuing = not add_generation_prompt and bool(body) and body[-1].role is Role.ASSISTANT
    segments = template.render(full, add_generation_prompt=add_generation_prompt, continue_final=continuing)
    return render_text(segments, bos_token, eos_token)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``quantdesk render``: print the exact prompt text (to ``out``, default stdout)."""
    out = out or sys.stdout
    messages = _read_messages(args.messages)
    if args.model is not None:
        files = read_model_files(_model_folder(args.model))
        choice = detect_for_model(files, chat_override=args.template, user_templates=load_user_templates())
        print(f"template: {choice.label}: {choice.detail}", file=sys.stderr)
        text = render_prompt(
            messages,
            choice,
            system=args.system,
            bos_token=files.bos_token,
            eos_token=files.eos_token,
            add_generation_prompt=not args.no_generation_prompt,
        )
    else:
        if not args.template:
            raise ChatError("Name a template with --template, or give a model folder with --model.", "")
        text = render_prompt(
            messages, args.template, system=args.system, add_generation_prompt=not args.no_generation_prompt
        )
    out.write(text)
    if out.isatty():
        out.write("\n")  # the exact text may not end in a newline; keep the shell prompt off it
    out.flush()
    return 0


run_render = run  # the name app.cli.chat re-exported
