"""Prompt templates as data, rendered into segments: text runs and BOS/EOS markers.

A built-in template is one row of :data:`BUILTIN_TEMPLATES` — default system prompt, role
prefixes/suffixes, separators and stop strings — not a branch of an if/elif ladder. BOS and EOS appear
in that data as :class:`Special` markers, never as text: ``"</s>"`` written as text could be split by a
tokenizer into ``<``, ``/``, ``s``, ``>`` (and a user typing it must not end a turn), so rendering
keeps them apart and :func:`encode_segments` inserts the tokenizer's ids. :func:`render_text` shows the
same segments as one string, with BOS/EOS spelled as the tokenizer's strings, for previews and
``quantdesk render``.

The exact strings each template produces are pinned by golden tests against shared NOTES.md.
Extra templates can be dropped into ``<config dir>/templates/*.json`` in the :meth:`TemplateSpec.to_dict`
layout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Protocol

from app.errors import ChatTemplateError, TemplateNotFoundError

# Shown for BOS/EOS when no tokenizer is at hand (``quantdesk render`` without a model): the
# SentencePiece spellings every Llama-family template in the table was written for.
DEFAULT_BOS_TOKEN: Final = "<s>"
DEFAULT_EOS_TOKEN: Final = "</s>"


class Role(StrEnum):
    """Who wrote a message."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class Special(StrEnum):
    """A special token a template inserts by id (resolved against the model's tokenizer)."""

    BOS = "bos"
    EOS = "eos"


Segment = str | Special
Parts = tuple[Segment, ...]


@dataclass(frozen=True)
class ChatMessage:
    """One message as a template sees it."""

    role: Role
    content: str


class TokenizerLike(Protocol):
    """The part of :class:`app.backends.base.Tokenizer` that prompt encoding needs."""

    @property
    def bos_token_id(self) -> int | None: ...

    @property
    def eos_token_id(self) -> int | None: ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without any special tokens added."""
        ...


class PromptTemplate(Protocol):
    """What the chat engine needs of a template, built-in or the model's own Jinja one."""

    @property
    def name(self) -> str:
        """Canonical name ("Vicuna", ...) or "jinja" for a model's own template."""
        ...

    @property
    def default_system(self) -> str | None:
        """System prompt used when the user sets none (None: no system prompt by default)."""
        ...

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Strings that end a reply (never shown); EOS always ends it too."""
        ...

    @property
    def builtin(self) -> bool:
        """Whether this is a table template (the model's tokenizer rule for a leading BOS applies)."""
        ...

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        continue_final: bool = False,
    ) -> list[Segment]:
        """The prompt for ``messages`` as segments.

        ``add_generation_prompt`` opens the assistant's turn; ``continue_final`` leaves a final
        assistant message open (no suffix) so generation continues it.
        """
        ...


@dataclass(frozen=True)
class TemplateSpec:
    """A built-in (or user-defined) template: pure data, rendered by :meth:`render`.

    A message renders as ``prefix + content + suffix`` for its role; ``separator`` goes between
    consecutive rendered messages. The system prompt renders as ``system_prefix + text +
    system_suffix``, as a block of its own or, with ``system_in_first_user``, inside the first user
    message right after ``user_prefix`` (Llama-2-chat). ``assistant_prefix`` precedes a finished
    reply, ``generation_prompt`` opens the turn the model is to write.
    """

    name: str
    description: str = ""
    default_system: str | None = None
    system_prefix: Parts = ()
    system_suffix: Parts = ()
    system_in_first_user: bool = False
    user_prefix: Parts = ()
    user_suffix: Parts = ()
    assistant_prefix: Parts = ()
    assistant_suffix: Parts = ()
    generation_prompt: Parts = ()
    separator: Parts = ()
    stop_strings: tuple[str, ...] = ()

    @property
    def builtin(self) -> bool:
        """Always True: table templates leave the leading BOS to the tokenizer's rule."""
        return True

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        continue_final: bool = False,
    ) -> list[Segment]:
        """Render ``messages`` (see :class:`PromptTemplate`)."""
        msgs = list(messages)
        out: list[Segment] = []
        # Llama-2-chat folds the leading system prompt into the first user message.
        folded: str | None = None
        if self.system_in_first_user and msgs and msgs[0].role is Role.SYSTEM:
            folded = msgs.pop(0).content or None
            if folded is not None and not any(m.role is Role.USER for m in msgs):
                # Nothing to fold into: the system prompt gets a user turn of its own.
                msgs.insert(0, ChatMessage(Role.USER, ""))
        rendered_any = False
        for index, message in enumerate(msgs):
            if message.role is Role.SYSTEM and not message.content:
                continue  # an explicitly empty system prompt means "none", not an empty block
            if rendered_any:
                out.extend(self.separator)
            rendered_any = True
            last = index == len(msgs) - 1
            if message.role is Role.SYSTEM:
                out += [*self.system_prefix, message.content, *self.system_suffix]
            elif message.role is Role.USER:
                out.extend(self.user_prefix)
                if folded is not None:
                    out += [*self.system_prefix, folded, *self.system_suffix]
                    folded = None
                out += [message.content, *self.user_suffix]
            else:
                out += [*self.assistant_prefix, message.content]
                if not (last and continue_final):
                    out.extend(self.assistant_suffix)
        if add_generation_prompt and not (continue_final and msgs and msgs[-1].role is Role.ASSISTANT):
            out.extend(self.generation_prompt)
        return merge_text(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON layout of a template (a user template file has exactly this shape).

        Parts are lists whose items are text or ``{"special": "bos"|"eos"}``.
        """

        def parts(value: Parts) -> list[Any]:
            return [{"special": p.value} if isinstance(p, Special) else p for p in value]

        return {
            "name": self.name,
            "description": self.description,
            "default_system": self.default_system,
            "system_prefix": parts(self.system_prefix),
            "system_suffix": parts(self.system_suffix),
            "system_in_first_user": self.system_in_first_user,
            "user_prefix": parts(self.user_prefix),
            "user_suffix": parts(self.user_suffix),
            "assistant_prefix": parts(self.assistant_prefix),
            "assistant_suffix": parts(self.assistant_suffix),
            "generation_prompt": parts(self.generation_prompt),
            "separator": parts(self.separator),
            "stop_strings": list(self.stop_strings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TemplateSpec:
        """Build from :meth:`to_dict` output; raises ChatTemplateError on anything malformed."""

        def parts(key: str) -> Parts:
            raw = data.get(key, [])
            if isinstance(raw, str):
                raw = [raw]
            if not isinstance(raw, list):
                raise ValueError(f"{key} must be a list")
            result: list[Segment] = []
            for item in raw:
                if isinstance(item, str):
                    result.append(item)
                elif isinstance(item, dict) and item.get("special") in ("bos", "eos"):
                    result.append(Special(item["special"]))
                else:
                    raise ValueError(f"{key}: {item!r} is neither text nor a special token")
            return tuple(result)

        try:
            name = data["name"]
            system = data.get("default_system")
            stops = data.get("stop_strings", [])
            if not isinstance(name, str) or not name.strip():
                raise ValueError("name must be a non-empty string")
            if system is not None and not isinstance(system, str):
                raise ValueError("default_system must be a string or null")
            if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
                raise ValueError("stop_strings must be a list of non-empty strings")
            return cls(
                name=name.strip(),
                description=str(data.get("description", "")),
                default_system=system,
                system_prefix=parts("system_prefix"),
                system_suffix=parts("system_suffix"),
                system_in_first_user=bool(data.get("system_in_first_user", False)),
                user_prefix=parts("user_prefix"),
                user_suffix=parts("user_suffix"),
                assistant_prefix=parts("assistant_prefix"),
                assistant_suffix=parts("assistant_suffix"),
                generation_prompt=parts("generation_prompt"),
                separator=parts("separator"),
                stop_strings=tuple(stops),
            )
        except (KeyError, ValueError) as exc:
            raise ChatTemplateError(
                f"The template definition is invalid: {exc}.",
                "Compare it with 'quantdesk render' output of a built-in template.",
            ) from exc


BOS: Final = Special.BOS
EOS: Final = Special.EOS

_VICUNA_SYSTEM: Final = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_ALPACA_SYSTEM: Final = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)

# The built-in templates. Sources: FastChat's conversation.py (Vicuna v1.1), the Stanford Alpaca and
# WizardMath READMEs, the Guanaco card, OpenAI's ChatML and Meta's Llama-2 reference code; the exact
# strings are in shared NOTES.md. EOS ends every reply in addition to each row's stop strings.
BUILTIN_TEMPLATES: Final[Mapping[str, TemplateSpec]] = {
    t.name: t
    for t in (
        TemplateSpec(
            name="Vicuna",
            description="Vicuna v1.1 (FastChat; also Xwin-LM, WizardLM 1.x)",
            default_system=_VICUNA_SYSTEM,
            system_suffix=(" ",),
            user_prefix=("USER: ",),
            user_suffix=(" ",),
            assistant_prefix=("ASSISTANT: ",),
            assistant_suffix=(EOS,),
            generation_prompt=("ASSISTANT:",),
        ),
        TemplateSpec(
            name="Alpaca",
            description="Stanford Alpaca instruction format",
            default_system=_ALPACA_SYSTEM,
            system_suffix=("\n\n",),
            user_prefix=("### Instruction:\n",),
            user_suffix=("\n\n",),
            assistant_prefix=("### Response:\n",),
            assistant_suffix=("\n\n",),
            generation_prompt=("### Response:\n",),
            stop_strings=("\n\n### Instruction:", "\n\n### Response:"),
        ),
        TemplateSpec(
            name="Alpaca-CoT",
            description="Alpaca with a chain-of-thought response prefix (WizardMath)",
            default_system=_ALPACA_SYSTEM,
            system_suffix=("\n\n",),
            user_prefix=("### Instruction:\n",),
            user_suffix=("\n\n",),
            # A finished reply follows the fixed prefix after one space, as the model wrote it.
            assistant_prefix=("### Response: Let's think step by step. ",),
            assistant_suffix=("\n\n",),
            generation_prompt=("### Response: Let's think step by step.",),
            stop_strings=("\n\n### Instruction:", "\n\n### Response:"),
        ),
        TemplateSpec(
            name="Guanaco",
            description="Guanaco (QLoRA) '### Human:' format",
            system_suffix=("\n",),
            user_prefix=("### Human: ",),
            user_suffix=("\n",),
            assistant_prefix=("### Assistant: ",),
            assistant_suffix=("\n",),
            generation_prompt=("### Assistant:",),
            stop_strings=("\n### Human:", "###"),
        ),
        TemplateSpec(
            name="ChatML",
            description="ChatML (<|im_start|>role ... <|im_end|>)",
            system_prefix=("<|im_start|>system\n",),
            system_suffix=("<|im_end|>\n",),
            user_prefix=("<|im_start|>user\n",),
            user_suffix=("<|im_end|>\n",),
            assistant_prefix=("<|im_start|>assistant\n",),
            assistant_suffix=("<|im_end|>\n",),
            generation_prompt=("<|im_start|>assistant\n",),
            stop_strings=("<|im_end|>",),
        ),
        TemplateSpec(
            name="Llama-2-chat",
            description="Meta Llama-2-chat ([INST] ... [/INST], <<SYS>> block in the first turn)",
            system_prefix=("<<SYS>>\n",),
            system_suffix=("\n<</SYS>>\n\n",),
            system_in_first_user=True,
            user_prefix=(BOS, "[INST] "),
            user_suffix=(" [/INST]",),
            assistant_prefix=(" ",),
            assistant_suffix=(" ", EOS),
        ),
        TemplateSpec(
            name="Raw",
            description="No template: the messages' text as is, one per line",
            separator=("\n",),
        ),
    )
}

_NON_ALNUM: Final = re.compile(r"[^a-z0-9]+")


def _compact(name: str) -> str:
    return _NON_ALNUM.sub("", name.lower())


# Spellings people type (``--template vicuna_v1.1``) -> canonical names; the canonical names themselves
# are matched case- and punctuation-insensitively.
_ALIASES: Final[Mapping[str, str]] = {
    "vicunav11": "Vicuna",
    "vicuna11": "Vicuna",
    "llama2": "Llama-2-chat",
    "llama2chat": "Llama-2-chat",
    "alpacacot": "Alpaca-CoT",
    "wizardmath": "Alpaca-CoT",
    "none": "Raw",
    "plain": "Raw",
}


def user_templates_dir() -> Path:
    """Where user-defined template files live: ``<config dir>/templates``."""
    from app.paths import app_paths

    return app_paths().config_dir / "templates"


def load_user_templates(directory: Path | None = None) -> dict[str, TemplateSpec]:
    """User templates from ``directory`` (default :func:`user_templates_dir`), keyed by name.

    A file that cannot be read raises ChatTemplateError naming it: a template the user wrote and
    asked for should not silently vanish.
    """
    folder = directory or user_templates_dir()
    templates: dict[str, TemplateSpec] = {}
    if not folder.is_dir():
        return templates
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ChatTemplateError(f"Cannot read template file {path}: {exc}.", "Fix or remove it.") from exc
        if not isinstance(data, dict):
            raise ChatTemplateError(f"Template file {path} does not hold a JSON object.", "Fix or remove it.")
        spec = TemplateSpec.from_dict(data)
        templates[spec.name] = spec
    return templates


def template_names(user: Iterable[str] = ()) -> list[str]:
    """Built-in template names in table order, then user template names."""
    return [*BUILTIN_TEMPLATES, *(n for n in user if n not in BUILTIN_TEMPLATES)]


def get_template(name: str, user_templates: Mapping[str, TemplateSpec] | None = None) -> TemplateSpec:
    """The template called ``name`` (case/punctuation-insensitive, common aliases accepted).

    User templates shadow nothing: a built-in name always means the built-in template.
    """
    key = _compact(name)
    key = _compact(_ALIASES.get(key, name))
    for spec in BUILTIN_TEMPLATES.values():
        if _compact(spec.name) == key:
            return spec
    for spec in (user_templates or {}).values():
        if _compact(spec.name) == key:
            return spec
    known = ", ".join(template_names(user_templates or {}))
    raise TemplateNotFoundError(f"There is no prompt template called '{name}'.", f"Known templates: {known}.")


# -- segments ---------------------------------------------------------------------------------------


def merge_text(segments: Iterable[Segment]) -> list[Segment]:
    """Join adjacent text segments and drop empty ones (tokenizers see whole runs of text)."""
    out: list[Segment] = []
    for seg in segments:
        if isinstance(seg, Special):
            out.append(seg)
        elif seg:
            if out and not isinstance(out[-1], Special):
                out[-1] = out[-1] + seg
            else:
                out.append(seg)
    return out


def render_text(
    segments: Iterable[Segment],
    bos_token: str | None = DEFAULT_BOS_TOKEN,
    eos_token: str | None = DEFAULT_EOS_TOKEN,
) -> str:
    """The segments as one string, BOS/EOS spelled ``bos_token``/``eos_token`` (display only)."""
    spelled = {Special.BOS: bos_token or "", Special.EOS: eos_token or ""}
    return "".join(spelled[s] if isinstance(s, Special) else s for s in segments)


def encode_segments(segments: Iterable[Segment], tokenizer: TokenizerLike) -> list[int]:
    """Token ids of the segments: each text run encoded whole, BOS/EOS inserted as the tokenizer's ids.

    A special token the tokenizer lacks (e.g. Qwen has no BOS) is left out rather than guessed.
    """
    ids: list[int] = []
    for seg in merge_text(segments):
        if isinstance(seg, Special):
            token_id = tokenizer.bos_token_id if seg is Special.BOS else tokenizer.eos_token_id
            if token_id is not None:
                ids.append(token_id)
        else:
            ids.extend(tokenizer.encode(seg))
    return ids
