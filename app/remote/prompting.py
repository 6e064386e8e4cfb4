"""How a chat reaches a server: the **server** template mode's message packing and the token estimates.

:class:`ServerTemplate` renders the messages in a private wire format (never shown to a model) that
:class:`~app.remote.engine.RemoteModel` turns back into the ``messages`` of ``/v1/chat/completions``,
so the server applies the model's own chat template. :class:`RemoteTokenizer` estimates token counts
for context budgets (the server's tokenizer is not at hand); its ids decode back to the exact text.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from typing import Final

from app.chat.templates import ChatMessage, Role, Segment
from app.errors import RemoteRequestError

# -- server-side templates: the messages travel inside the prompt ------------------------------------

_WIRE_MARK: Final = "\ue000quantdesk-messages\ue001"


def pack_messages(messages: Sequence[ChatMessage], *, continue_final: bool = False) -> str:
    """The private wire format :class:`ServerTemplate` renders (JSON after a private-use marker)."""
    payload = {"continue": continue_final, "messages": [[m.role.value, m.content] for m in messages]}
    return _WIRE_MARK + json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def unpack_messages(text: str) -> tuple[list[ChatMessage], bool] | None:
    """The messages (and the continue flag) packed by :func:`pack_messages`; None for a plain prompt."""
    if not text.startswith(_WIRE_MARK):
        return None
    try:
        payload = json.loads(text[len(_WIRE_MARK) :])
        messages = [ChatMessage(Role(role), str(content)) for role, content in payload["messages"]]
        return messages, bool(payload.get("continue", False))
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteRequestError("The chat messages could not be prepared for the server.", "") from exc


class ServerTemplate:
    """The template of the **server** mode: the server applies the model's chat template.

    Renders the messages in a wire format that :class:`RemoteModel` turns back into the ``messages`` of
    ``/v1/chat/completions``. No default system prompt (the server's template has its own) and no stop
    strings (the server stops at the model's end-of-turn token).
    """

    name = "server"
    default_system: str | None = None
    stop_strings: tuple[str, ...] = ()
    builtin = False

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        continue_final: bool = False,
    ) -> list[Segment]:
        """One text segment holding the messages (see :func:`pack_messages`)."""
        final_assistant = bool(messages) and messages[-1].role is Role.ASSISTANT
        return [pack_messages(messages, continue_final=continue_final and final_assistant)]


# -- the tokenizer stand-in -------------------------------------------------------------------------

# Letters in runs of up to 6, digits up to 3, every other character alone, each with one leading
# whitespace character; a whitespace character that precedes none of these stands alone. Finer than
# BPE for English (which averages ~4 characters a token), so estimates err towards more tokens.
_PIECE: Final = re.compile(r"\s?[A-Za-z]{1,6}|\s?\d{1,3}|\s?[^\sA-Za-z\d]|\s")
BOS_ID: Final = 0
EOS_ID: Final = 1


class RemoteTokenizer:
    """Token estimates for a model whose tokenizer lives on the server; ids decode to the exact text.

    Ids stand for text pieces interned on first sight, so ``decode(encode(t)) == t``. BOS/EOS are the
    Llama spellings ``<s>``/``</s>`` (the built-in templates that use them are Llama-family ones);
    servers read them in a prompt as the special tokens. No chat template: the server has it.
    """

    def __init__(self, bos_token: str | None = "<s>", eos_token: str | None = "</s>") -> None:
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.bos_token_id: int | None = BOS_ID if bos_token else None
        self.eos_token_id: int | None = EOS_ID if eos_token else None
        self.chat_template: str | None = None
        self._pieces: list[str] = [bos_token or "", eos_token or ""]
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        """Estimated tokens of ``text`` (no special tokens added)."""
        ids: list[int] = []
        with self._lock:
            for piece in _PIECE.findall(text):
                token = self._ids.get(piece)
                if token is None:
                    token = self._ids[piece] = len(self._pieces)
                    self._pieces.append(piece)
                ids.append(token)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, BOS/EOS skipped."""
        return "".join(self._pieces[i] for i in ids if i > EOS_ID)

    def render(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` with BOS/EOS spelled out (a prompt for ``/v1/completions``)."""
        return "".join(self._pieces[i] for i in ids)
