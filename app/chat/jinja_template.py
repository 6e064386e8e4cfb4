"""A model's own Jinja ``chat_template``, rendered in a sandbox the way transformers renders it.

The template comes from the downloaded repo, i.e. from whoever uploaded it, so it runs in
:class:`jinja2.sandbox.ImmutableSandboxedEnvironment` (no attribute access to internals, no mutation of
the messages). The environment mirrors transformers' ``apply_chat_template``: ``trim_blocks``,
``lstrip_blocks``, ``loopcontrols``, the ``{% generation %}`` tag, ``raise_exception``,
``strftime_now`` and a ``tojson`` that keeps non-ASCII text.

``bos_token``/``eos_token`` are passed as private sentinel strings and split out of the result as
:class:`~app.chat.templates.Special` markers, so the template's own BOS/EOS become token ids while a
user who types ``</s>`` still sends text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.runtime import Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.chat.templates import ChatMessage, Role, Segment, Special, merge_text
from app.errors import ChatTemplateError

# Private-use characters cannot come out of a tokenizer's vocabulary by accident.
_BOS_SENTINEL: Final = "\ue000quantdesk-bos\ue001"
_EOS_SENTINEL: Final = "\ue000quantdesk-eos\ue001"
_HINT: Final = "Choose a built-in template for this model (profile or --template)."


class _GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}`` (marks assistant text for training masks): body only."""

    tags = {"generation"}  # noqa: RUF012 - jinja2's Extension API declares it as a class attribute

    def parse(self, parser: Parser) -> nodes.Node:
        """Parse the tag into a call block that renders its body unchanged."""
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Macro) -> str:
        return str(caller())


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes HTML characters and forces ASCII; chat templates expect plain JSON.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


class JinjaTemplate:
    """A model's own chat template (see :class:`~app.chat.templates.PromptTemplate`)."""

    name: Final = "jinja"
    default_system: Final[str | None] = None  # the template applies its own default, if any
    builtin: Final = False

    def __init__(
        self,
        source: str,
        *,
        has_bos: bool = True,
        has_eos: bool = True,
        stop_strings: Sequence[str] = (),
        origin: str = "chat_template",
    ) -> None:
        """Compile ``source``; raises ChatTemplateError when it is not valid Jinja.

        ``has_bos``/``has_eos``: whether the tokenizer defines the token (when it does not, the
        variable is undefined, as in transformers). ``origin`` names the file, for error messages.
        """
        self.source = source
        self.origin = origin
        self.stop_strings: tuple[str, ...] = tuple(stop_strings)
        self._has_bos = has_bos
        self._has_eos = has_eos
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(
                f"The model's chat template ({origin}) is not valid Jinja: {exc}.", _HINT, detail=repr(exc)
            ) from exc

    def for_tokenizer(self, *, has_bos: bool, has_eos: bool) -> JinjaTemplate:
        """The same template for a tokenizer that does (not) define BOS/EOS (self when nothing changes)."""
        if (has_bos, has_eos) == (self._has_bos, self._has_eos):
            return self
        return JinjaTemplate(
            self.source, has_bos=has_bos, has_eos=has_eos, stop_strings=self.stop_strings, origin=self.origin
        )

    def render_string(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        """The raw rendered text, BOS/EOS still as sentinels (see :meth:`render`)."""
        variables: dict[str, Any] = {
            "messages": [{"role": m.role.value, "content": m.content} for m in messages],
            "add_generation_prompt": add_generation_prompt,
            "tools": None,
            "documents": None,
        }
        if self._has_bos:
            variables["bos_token"] = _BOS_SENTINEL
        if self._has_eos:
            variables["eos_token"] = _EOS_SENTINEL
        try:
            return self._template.render(**variables)
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(
                f"The model's chat template ({self.origin}) refused this conversation: {exc}.",
                _HINT,
                detail=repr(exc),
            ) from exc
        except Exception as exc:  # a template can fail in any way (TypeError on None + str, ...)
            raise ChatTemplateError(
                f"The model's chat template ({self.origin}) failed: {type(exc).__name__}: {exc}.",
                _HINT,
                detail=repr(exc),
            ) from exc

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        continue_final: bool = False,
    ) -> list[Segment]:
        """Render ``messages`` into segments.

        ``continue_final`` works as in transformers: render without a generation prompt and cut the
        text right after the final assistant message's content, so the model continues it.
        """
        continuing = continue_final and bool(messages) and messages[-1].role is Role.ASSISTANT
        text = self.render_string(messages, add_generation_prompt=add_generation_prompt and not continuing)
        if continuing:
            final = messages[-1].content.strip()
            if final:
                at = text.rfind(final)
                if at < 0:
                    raise ChatTemplateError(
                        "The model's chat template changes the reply's text, so it cannot be continued.",
                        "Regenerate instead, or choose a built-in template.",
                    )
                text = text[: at + len(final)]
        return _split_specials(text)


def _split_specials(text: str) -> list[Segment]:
    out: list[Segment] = []
    for i, bos_part in enumerate(text.split(_BOS_SENTINEL)):
        if i:
            out.append(Special.BOS)
        for j, part in enumerate(bos_part.split(_EOS_SENTINEL)):
            if j:
                out.append(Special.EOS)
            out.append(part)
    return merge_text(out)
