"""Which prompt template a model gets, and why — a cascade whose winning source is always reported.

Order: an explicit override (this chat, then the model's profile) > the model's own Jinja
``chat_template`` > the model card's ``Prompt template: X`` > a small table of name rules > Raw.
Wrong templates are the commonest cause of gibberish replies, so the UI shows the source next to the
name and the user can override it; nothing here guesses silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from app.catalog.model_card import CardTemplate
from app.chat.jinja_template import JinjaTemplate
from app.chat.model_files import ModelFiles
from app.chat.templates import BUILTIN_TEMPLATES, PromptTemplate, TemplateSpec, get_template
from app.errors import ChatTemplateError, TemplateNotFoundError

# Override names that mean "the model's own template".
OWN_TEMPLATE_NAMES: Final = frozenset({"jinja", "model", "own", "auto-jinja"})


class TemplateSource(StrEnum):
    """Where the chosen template came from, strongest first."""

    CHAT = "this chat"
    PROFILE = "profile"
    MODEL = "model's own template"
    CARD = "model card"
    NAME_RULE = "name rule"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class NameRule:
    """A regular expression on the repo (or folder) name and the template it implies."""

    pattern: str
    template: str
    why: str


# First match wins, so specific names come before the general ones they contain ("wizard-vicuna"
# is Vicuna, "WizardMath" is Alpaca-CoT). Deliberately small: the model's own template and its card
# are the real sources; these only cover well-known older families whose repos state neither.
NAME_RULES: Final[tuple[NameRule, ...]] = (
    NameRule(r"llama-?2.*-chat", "Llama-2-chat", "Llama-2 chat models use Meta's [INST] format"),
    NameRule(r"codellama.*instruct", "Llama-2-chat", "Code Llama Instruct uses the Llama-2 [INST] format"),
    NameRule(r"wizard-?math", "Alpaca-CoT", "WizardMath answers step by step after an Alpaca prompt"),
    NameRule(r"vicuna|xwin-?lm|wizardlm-(?:13b|70b)-v1\.[12]", "Vicuna", "Vicuna v1.1 family"),
    NameRule(r"guanaco", "Guanaco", "Guanaco uses '### Human:'/'### Assistant:'"),
    NameRule(r"alpaca", "Alpaca", "Alpaca instruction format"),
    NameRule(r"openhermes|dolphin|chatml|causallm|qwen.*chat", "ChatML", "ChatML family"),
)


@dataclass(frozen=True)
class TemplateChoice:
    """The template a chat uses and the source that won the cascade."""

    template: PromptTemplate
    source: TemplateSource
    detail: str  # in words: which file, card label or rule decided
    notes: tuple[str, ...] = ()  # sources that were present but not usable, for the UI's tooltip

    @property
    def name(self) -> str:
        """The template's name ("jinja" for the model's own)."""
        return self.template.name

    @property
    def label(self) -> str:
        """``"ChatML (model card)"``: name and source for display."""
        return f"{self.name} ({self.source})"


def _name_rule(repo_name: str) -> NameRule | None:
    return next((r for r in NAME_RULES if re.search(r.pattern, repo_name, re.IGNORECASE)), None)


def detect_template(
    *,
    chat_override: str | None = None,
    profile_override: str | None = None,
    own_template: str | None = None,
    own_origin: str | None = None,
    card: CardTemplate | None = None,
    repo_name: str | None = None,
    has_bos: bool = True,
    has_eos: bool = True,
    user_templates: Mapping[str, TemplateSpec] | None = None,
) -> TemplateChoice:
    """Run the cascade over whatever sources are known.

    An override naming an unknown template raises TemplateNotFoundError; so does an override asking
    for the model's own template ("jinja") when the model has none. Everything else falls through.
    """
    notes: list[str] = []
    own: JinjaTemplate | None = None
    if own_template:
        try:
            own = JinjaTemplate(
                own_template, has_bos=has_bos, has_eos=has_eos, origin=own_origin or "chat_template"
            )
        except ChatTemplateError as exc:
            # A broken template is reported and skipped: the card or a name rule may still be right.
            notes.append(exc.message)

    for override, source in (
        (chat_override, TemplateSource.CHAT),
        (profile_override, TemplateSource.PROFILE),
    ):
        if not override:
            continue
        if override.strip().lower() in OWN_TEMPLATE_NAMES:
            if own is None:
                raise TemplateNotFoundError(
                    "This model has no chat template of its own.", "Choose one of the built-in templates."
                )
            return TemplateChoice(
                own, source, f"the model's own template ({own.origin}), chosen", tuple(notes)
            )
        return TemplateChoice(
            get_template(override, user_templates), source, f"set to {override!r}", tuple(notes)
        )

    if own is not None:
        return TemplateChoice(own, TemplateSource.MODEL, own.origin, tuple(notes))

    if card is not None:
        if card.name and card.name in BUILTIN_TEMPLATES:
            return TemplateChoice(
                BUILTIN_TEMPLATES[card.name],
                TemplateSource.CARD,
                f"'Prompt template: {card.label}'",
                tuple(notes),
            )
        notes.append(f"the model card's template '{card.label}' is not one QuantDesk knows")

    if repo_name:
        rule = _name_rule(repo_name)
        if rule is not None:
            return TemplateChoice(
                BUILTIN_TEMPLATES[rule.template],
                TemplateSource.NAME_RULE,
                f"'{repo_name}' matches /{rule.pattern}/: {rule.why}",
                tuple(notes),
            )

    return TemplateChoice(
        BUILTIN_TEMPLATES["Raw"], TemplateSource.FALLBACK, "no template found: plain text", tuple(notes)
    )


def detect_for_model(
    files: ModelFiles,
    *,
    chat_override: str | None = None,
    profile_override: str | None = None,
    user_templates: Mapping[str, TemplateSpec] | None = None,
) -> TemplateChoice:
    """The cascade for a downloaded model folder (name rules see the repo id, else the folder name)."""
    return detect_template(
        chat_override=chat_override,
        profile_override=profile_override,
        own_template=files.own_template,
        own_origin=files.own_template_origin,
        card=files.card_template,
        repo_name=files.repo_id or files.model_dir.name,
        has_bos=files.bos_token is not None,
        has_eos=files.eos_token is not None,
        user_templates=user_templates,
    )
