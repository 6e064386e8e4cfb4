"""The context budget: which turns of the active path fit the model's context.

Budget rule: system prompt + kept history + the reply's reserved tokens <= the model's context
length. Over budget, whole turns (a user message and the replies to it) drop out, oldest first; the
system prompt, pinned turns and the newest turn never do. What dropped is reported (the UI greys it
out), a message is never cut in half, and one message that cannot fit on its own is a typed error.

Token counts are cached per message (keyed by its content), so planning a long conversation costs
the same per turn as a short one: only new or edited messages are tokenized. The planner sees a flat
list of messages: the engine gives it the conversation's active path, never other branches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from app.chat.message import Message
from app.chat.templates import ChatMessage, PromptTemplate, Role, TokenizerLike, encode_segments
from app.errors import ContextBudgetError, MessageTooLongError

# Template tokens assumed around a message when the template cannot render a probe conversation
# (e.g. a Jinja template that insists on strict alternation); the exact prompt is checked afterwards.
_FALLBACK_OVERHEAD: Final = 8


def group_turns(messages: Sequence[Message]) -> list[list[Message]]:
    """Split messages into turns: each user message starts one; replies join the turn before them."""
    turns: list[list[Message]] = []
    for message in messages:
        if message.role is Role.USER or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


class TokenCounter:
    """Token counts of messages for one tokenizer and template, cached by message id and content."""

    def __init__(self, tokenizer: TokenizerLike, template: PromptTemplate) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self._content: dict[str, tuple[str, int]] = {}
        self._overhead: dict[str, int] = {}
        self.encoded_chars = 0  # characters tokenized so far (lets tests check the caching)

    def _encode(self, text: str) -> list[int]:
        self.encoded_chars += len(text)
        return self.tokenizer.encode(text)

    def text_tokens(self, text: str) -> int:
        """Tokens of a bare text (not cached)."""
        return len(self._encode(text)) if text else 0

    def content_tokens(self, message: Message) -> int:
        """Tokens of the message's content; cached until the content changes."""
        cached = self._content.get(message.id)
        if cached is not None and cached[0] == message.content:
            return cached[1]
        count = self.text_tokens(message.content)
        self._content[message.id] = (message.content, count)
        message.token_count = count
        return count

    def _rendered(self, messages: list[ChatMessage], generation: bool) -> int:
        segments = self.template.render(messages, add_generation_prompt=generation)
        return len(encode_segments(segments, _CountingTokenizer(self)))

    def overhead(self, role: Role) -> int:
        """Template tokens one message of ``role`` adds around its content (measured once, by difference).

        Each probe adds the message where it usually sits — a later user turn, a reply, a system
        prompt before the first turn — so folded layouts such as Llama-2's system block are priced right.
        """
        key = role.value
        if key not in self._overhead:
            probe = ChatMessage(role, "x")
            sys_, user, reply = (
                ChatMessage(Role.SYSTEM, "s"),
                ChatMessage(Role.USER, "u"),
                ChatMessage(Role.ASSISTANT, "a"),
            )
            base, with_message = {
                Role.SYSTEM: ([user], [probe, user]),
                Role.USER: ([sys_, user, reply], [sys_, user, reply, probe]),
                Role.ASSISTANT: ([sys_, user], [sys_, user, probe]),
            }[role]
            try:
                value = (
                    self._rendered(with_message, False) - self._rendered(base, False) - self.text_tokens("x")
                )
            except Exception:  # a template may refuse the probe conversation; the exact check corrects
                value = _FALLBACK_OVERHEAD
            self._overhead[key] = max(0, value)
        return self._overhead[key]

    def generation_overhead(self) -> int:
        """Tokens of the generation prompt (the opened assistant turn)."""
        if "generation" not in self._overhead:
            base = [ChatMessage(Role.SYSTEM, "s"), ChatMessage(Role.USER, "u")]
            try:
                value = max(0, self._rendered(base, True) - self._rendered(base, False))
            except Exception:
                value = _FALLBACK_OVERHEAD
            self._overhead["generation"] = value
        return self._overhead["generation"]

    def message_tokens(self, message: Message) -> int:
        """Estimated tokens the message costs in a prompt: content plus its template overhead."""
        return self.content_tokens(message) + self.overhead(message.role)


class _CountingTokenizer:
    """A tokenizer view that counts what the probe renderings encode."""

    def __init__(self, counter: TokenCounter) -> None:
        self._counter = counter
        self.bos_token_id = counter.tokenizer.bos_token_id
        self.eos_token_id = counter.tokenizer.eos_token_id

    def encode(self, text: str) -> list[int]:
        return self._counter._encode(text)


@dataclass(frozen=True)
class ContextPlan:
    """Which messages go into the prompt and which are out of context, and the numbers behind it."""

    kept: tuple[str, ...]  # message ids in the prompt, in conversation order
    dropped: tuple[str, ...]  # message ids out of context (oldest turns first)
    prompt_tokens: int  # estimated by the planner; exact once the engine has encoded the prompt
    budget: int  # tokens the prompt may use: context_length - reserve
    context_length: int
    reserve: int  # tokens kept free for the reply

    @property
    def truncated(self) -> bool:
        """Whether any message is out of context."""
        return bool(self.dropped)


def plan_context(
    messages: Sequence[Message],
    cost: Callable[[Message], int],
    *,
    fixed_tokens: int,
    context_length: int,
    reserve: int,
    extra_drop: int = 0,
) -> ContextPlan:
    """Choose the turns that fit.

    ``cost`` gives a message's tokens; ``fixed_tokens`` is what every prompt pays (system prompt,
    generation prompt, BOS). ``extra_drop`` drops that many more of the oldest unpinned turns (the
    engine's correction when the exact prompt came out longer than the estimate).
    Raises MessageTooLongError when one message that must stay cannot fit even alone, and
    ContextBudgetError when the newest turn plus the pinned ones do not fit together.
    """
    budget = context_length - reserve
    turns = group_turns(messages)
    if not turns:
        return ContextPlan((), (), fixed_tokens, budget, context_length, reserve)
    newest = turns[-1]
    required = [t for t in turns[:-1] if any(m.pinned for m in t)] + [newest]
    for turn in required:
        for message in turn:
            if fixed_tokens + cost(message) > budget:
                who = "Your message" if message.role is Role.USER else "A reply"
                raise MessageTooLongError(
                    f"{who} ({cost(message)} tokens, '{message.preview()}') does not fit the context: "
                    f"{context_length} tokens, minus {reserve} kept for the reply and {fixed_tokens} for "
                    "the system prompt and template, leaves "
                    f"{max(0, budget - fixed_tokens)}.",
                    "Shorten it, shorten the system prompt, lower max new tokens or load the model with a "
                    "longer context.",
                )
    total = fixed_tokens + sum(cost(m) for turn in required for m in turn)
    if total > budget:
        raise ContextBudgetError(
            f"The newest turn and the pinned turns need {total} tokens; {budget} are available "
            f"({context_length} context - {reserve} for the reply).",
            "Unpin some turns, lower max new tokens or load the model with a longer context.",
        )
    kept_turns = {id(t) for t in required}
    history: list[tuple[list[Message], int]] = []  # unpinned turns that fit, newest first
    for turn in reversed(turns[:-1]):
        if id(turn) in kept_turns:
            continue
        turn_cost = sum(cost(m) for m in turn)
        if total + turn_cost > budget:
            break  # this turn and every older unpinned one drop: history stays contiguous
        total += turn_cost
        history.append((turn, turn_cost))
    if extra_drop > len(history):
        # The estimate said it fits, the exact count said no, and nothing unpinned is left to drop.
        raise ContextBudgetError(
            f"The prompt does not fit {budget} tokens even without older turns.",
            "Unpin some turns, lower max new tokens or load the model with a longer context.",
        )
    for turn, _cost in history[: len(history) - extra_drop]:
        kept_turns.add(id(turn))
    total -= sum(turn_cost for _turn, turn_cost in history[len(history) - extra_drop :])
    kept = tuple(m.id for t in turns if id(t) in kept_turns for m in t)
    dropped = tuple(m.id for t in turns if id(t) not in kept_turns for m in t)
    return ContextPlan(kept, dropped, total, budget, context_length, reserve)
