"""The chat session: a loaded model + a template + a conversation, streaming replies inside the budget.

``send(text)`` adds the user's message, builds the prompt (planning which turns fit, then checking the
exact token count) and returns an iterator of text chunks ending with one :class:`ReplyEnd`. The
conversation is a tree (see :mod:`app.chat.conversation`): the prompt is built from its active path,
``regenerate`` adds a new version of a reply, ``edit`` a new version of a message, and nothing the
user or the model wrote is dropped by either. Each reply keeps its :class:`ReplyStats`. Stop
strings are matched across chunk boundaries by :class:`app.stop_strings.StopStringMatcher` (the
backend matches them too; matching again here keeps the promise "a stop string is never shown" for any
backend). Whatever happens to the stream — a stop string, the user's stop, the consumer walking away,
an exception — the partial reply stays in the conversation, and with a store it is written to disk
every few chunks while it streams.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Final

from app.backends.base import GenerationStats, LoadedModel, StopReason
from app.chat.conversation import (
    ContextPlan,
    Conversation,
    Message,
    ReplyStats,
    TokenCounter,
    plan_context,
)
from app.chat.detection import TemplateChoice
from app.chat.jinja_template import JinjaTemplate
from app.chat.session_types import ChatSettings, ChatStoreLike, PromptPreview, ReplyEnd
from app.chat.templates import ChatMessage, Role, Segment, Special, encode_segments, render_text
from app.errors import ChatError, ContextBudgetError
from app.stop_strings import StopStringMatcher

__all__ = ["ChatSession", "ChatSettings", "ChatStoreLike", "PromptPreview", "ReplyEnd"]

# Never reserve more than this share of the context for the reply: a large max_new_tokens must not
# push the whole history out; generation is still capped by what is left of the context.
_MAX_RESERVE_SHARE: Final = 0.5
_SYSTEM_ID: Final = "__system__"
# The planner estimates per message; the exact prompt may differ by a few tokens at message joins.
# This many extra drops is far beyond any real discrepancy and only bounds the loop.
_MAX_CORRECTIONS: Final = 64


@dataclass(frozen=True)
class _Prompt:
    segments: list[Segment]
    ids: list[int]
    plan: ContextPlan


class ChatSession:
    """One conversation with one loaded model.

    Not thread-safe except :meth:`stop`, which any thread may call while a reply streams.
    """

    def __init__(
        self,
        model: LoadedModel,
        choice: TemplateChoice,
        *,
        settings: ChatSettings | None = None,
        conversation: Conversation | None = None,
        store: ChatStoreLike | None = None,
        flush_every_chunks: int = 8,
        flush_every_seconds: float = 0.5,
    ) -> None:
        """``store`` (e.g. :class:`app.chat.storage.ChatStore`) receives every change and the streaming
        reply every ``flush_every_chunks`` chunks or ``flush_every_seconds``, whichever comes first."""
        self.model = model
        self.settings = settings or ChatSettings()
        self.conversation = conversation or Conversation(system_prompt=self.settings.system_prompt)
        self.store = store
        self.flush_every_chunks = max(1, flush_every_chunks)
        self.flush_every_seconds = flush_every_seconds
        self._choice = self._for_tokenizer(choice)
        self.counter = TokenCounter(model.tokenizer, self._choice.template)
        self.last_plan: ContextPlan | None = None
        self._cancel = threading.Event()
        self._streaming = False

    # -- configuration ---------------------------------------------------------------------------

    @property
    def choice(self) -> TemplateChoice:
        """The template in use and where it came from."""
        return self._choice

    def set_template(self, choice: TemplateChoice) -> None:
        """Switch templates (token counts are per template, so the cache starts again)."""
        self._choice = self._for_tokenizer(choice)
        self.counter = TokenCounter(self.model.tokenizer, self._choice.template)

    def _for_tokenizer(self, choice: TemplateChoice) -> TemplateChoice:
        # Detection read BOS/EOS from the folder's files; the loaded tokenizer is the authority.
        template = choice.template
        if isinstance(template, JinjaTemplate):
            tok = self.model.tokenizer
            adapted = template.for_tokenizer(
                has_bos=tok.bos_token is not None, has_eos=tok.eos_token is not None
            )
            if adapted is not template:
                return replace(choice, template=adapted)
        return choice

    def system_text(self) -> str | None:
        """The system prompt in effect (the conversation's, else the template's default)."""
        own = self.conversation.system_prompt
        text = self._choice.template.default_system if own is None else own
        return text or None

    def stop_strings(self) -> tuple[str, ...]:
        """The template's stop strings plus the chat's extra ones."""
        return tuple(dict.fromkeys((*self._choice.template.stop_strings, *self.settings.extra_stop_strings)))

    def reserve(self) -> int:
        """Tokens kept free for the reply."""
        context = self.model.context_length
        return max(1, min(self.settings.sampling.max_new_tokens, int(context * _MAX_RESERVE_SHARE)))

    # -- prompt ------------------------------------------------------------------------------------

    def _add_bos(self, segments: list[Segment]) -> bool:
        return (
            self.settings.add_bos
            and self._choice.template.builtin
            and self.model.tokenizer.bos_token_id is not None
            and not (segments and segments[0] is Special.BOS)
        )

    def _fixed_tokens(self, system: str | None, continuing: bool) -> int:
        fixed = 0 if continuing else self.counter.generation_overhead()
        if system:
            fixed += self.counter.message_tokens(Message(Role.SYSTEM, system, id=_SYSTEM_ID))
        return fixed + (1 if self._add_bos([]) else 0)

    def _build(self, messages: Sequence[Message], continuing: bool) -> _Prompt:
        system = self.system_text()
        fixed = self._fixed_tokens(system, continuing)
        for extra in range(_MAX_CORRECTIONS):
            plan = plan_context(
                messages,
                self.counter.message_tokens,
                fixed_tokens=fixed,
                context_length=self.model.context_length,
                reserve=self.reserve(),
                extra_drop=extra,
            )
            wanted = set(plan.kept)
            chat = [m.as_chat() for m in messages if m.id in wanted]
            if system:
                chat.insert(0, ChatMessage(Role.SYSTEM, system))
            segments = self._choice.template.render(
                chat, add_generation_prompt=not continuing, continue_final=continuing
            )
            if self._add_bos(segments):
                segments.insert(0, Special.BOS)
            ids = encode_segments(segments, self.model.tokenizer)
            if len(ids) <= plan.budget:
                return _Prompt(segments, ids, replace(plan, prompt_tokens=len(ids)))
        raise ContextBudgetError(
            "The prompt does not fit the context even after dropping older turns.",
            "Lower max new tokens or load the model with a longer context.",
        )

    def preview_prompt(self, pending_user_text: str | None = None) -> PromptPreview:
        """The exact prompt for the conversation as it stands, or as if ``pending_user_text`` were sent.

        A conversation ending in an assistant message previews a continuation of it.
        """
        messages = self.conversation.active_path()
        if pending_user_text is not None:
            messages.append(Message(Role.USER, pending_user_text))
        continuing = bool(messages) and messages[-1].role is Role.ASSISTANT
        prompt = self._build(messages, continuing)
        tok = self.model.tokenizer
        return PromptPreview(
            text=render_text(prompt.segments, tok.bos_token, tok.eos_token),
            token_ids=tuple(prompt.ids),
            segments=tuple(prompt.segments),
            plan=prompt.plan,
            template=self._choice.name,
            template_source=str(self._choice.source),
            template_detail=self._choice.detail,
            stop_strings=self.stop_strings(),
        )

    # -- actions -----------------------------------------------------------------------------------

    def send(self, text: str) -> Iterator[str | ReplyEnd]:
        """Add the user's message and stream the reply.

        Budget errors (MessageTooLongError, ContextBudgetError) raise here, before anything streams,
        and leave the conversation as it was.
        """
        self._check_idle()
        user = self.conversation.add(Role.USER, text)
        try:
            prompt = self._build(self.conversation.active_path(), continuing=False)
        except Exception:
            # Never shown, never saved: the message goes as if it had not been sent.
            self.conversation.delete_branch(user.id)
            raise
        return self._start(prompt, user.id)

    def reply(self) -> Iterator[str | ReplyEnd]:
        """Stream a reply to the conversation's last message (a user message), e.g. after :meth:`edit`."""
        self._check_idle()
        last = self.conversation.last()
        if last is None or last.role is not Role.USER:
            raise ChatError("There is no message waiting for a reply.", "Send a message first.")
        return self._start(self._build(self.conversation.active_path(), continuing=False), last.id)

    def regenerate(self, message_id: str | None = None) -> Iterator[str | ReplyEnd]:
        """Stream a new version of a reply (default: the last reply); the old version stays, one
        ``‹ n/m ›`` arrow away. With no reply yet after the last user message, this is :meth:`reply`."""
        self._check_idle()
        if message_id is None:
            last_user = self.conversation.last(Role.USER)
            if last_user is None:
                raise ChatError("There is nothing to regenerate.", "Send a message first.")
            parent_id: str | None = last_user.id
        else:
            message = self._message(message_id)
            if message.role is not Role.ASSISTANT:
                raise ChatError("Only a reply can be regenerated.", "Edit your message instead.")
            parent_id = message.parent_id
        history = self.conversation.path_to(parent_id) if parent_id is not None else []
        return self._start(self._build(history, continuing=False), parent_id)

    def continue_reply(self) -> Iterator[str | ReplyEnd]:
        """Stream more of the last reply (after a stop, a length limit or an interrupted stream); the
        current version grows, no new version is made."""
        self._check_idle()
        last = self.conversation.last()
        if last is None or last.role is not Role.ASSISTANT:
            raise ChatError("There is no reply to continue.", "Send a message first.")
        return self._start(self._build(self.conversation.active_path(), continuing=True), None, last)

    def edit(self, message_id: str, text: str) -> Message:
        """A new version of a past message with ``text`` (returned, and active); the old version and
        everything after it stay as another branch. Call :meth:`reply` to answer an edited user message."""
        self._check_idle()
        self._message(message_id)
        edited = self.conversation.edit(message_id, text)
        self._sync()
        return edited

    def select_version(self, message_id: str) -> None:
        """Show another version of a message (``‹ n/m ›``); the active path below follows it."""
        self._check_idle()
        self._message(message_id)
        self.conversation.select_version(message_id)
        self._sync()

    def delete_message(self, message_id: str) -> Message:
        """Delete one message (the user confirmed); what followed it moves up. Returns it."""
        self._check_idle()
        self._message(message_id)
        deleted = self.conversation.delete_message(message_id)
        self._sync()
        return deleted

    def delete_branch(self, message_id: str) -> list[Message]:
        """Delete a message and everything below it on every branch (the user confirmed)."""
        self._check_idle()
        self._message(message_id)
        deleted = self.conversation.delete_branch(message_id)
        self._sync()
        return deleted

    def set_pinned(self, message_id: str, pinned: bool = True) -> None:
        """Pin (or unpin) a message's turn so it never drops out of context."""
        self._message(message_id)
        self.conversation.set_pinned(message_id, pinned)
        self._sync()

    def _message(self, message_id: str) -> Message:
        try:
            return self.conversation.get(message_id)
        except KeyError as exc:
            raise ChatError(
                "That message is not in this conversation.", "It may have been deleted; reopen the chat."
            ) from exc

    def stop(self) -> None:
        """Stop the streaming reply (from any thread); the partial reply is kept."""
        self._cancel.set()

    def reset(self) -> Conversation:
        """Start a new, empty conversation with the same system prompt and model; returns it. With a
        store it is saved at once, so it is listed before its first message. A conversation that is
        still empty is kept rather than replaced (no pile of empty chats)."""
        self._check_idle()
        old = self.conversation
        if not old.all_messages():
            self._sync()
            return old
        self.conversation = Conversation(system_prompt=old.system_prompt, meta=replace(old.meta))
        self.last_plan = None
        self._sync()
        return self.conversation

    # -- streaming ---------------------------------------------------------------------------------

    def _check_idle(self) -> None:
        if self._streaming:
            raise ChatError("A reply is still streaming.", "Stop it or wait for it to finish.")

    def _sync(self) -> None:
        if self.store is not None:
            self.store.sync(self.conversation)

    def _start(
        self, prompt: _Prompt, parent_id: str | None, continuing: Message | None = None
    ) -> Iterator[str | ReplyEnd]:
        self.last_plan = prompt.plan
        self._sync()
        return self._stream(prompt, parent_id, continuing)

    def _stream(
        self, prompt: _Prompt, parent_id: str | None, continuing: Message | None
    ) -> Iterator[str | ReplyEnd]:
        """Stream a new reply after ``parent_id``, or more of ``continuing``."""
        # The reply exists from the first next() on: an iterator that is never started leaves no
        # empty reply behind.
        self._check_idle()
        if continuing is None:
            reply = self.conversation.add_child(parent_id, Role.ASSISTANT, "", complete=False)
        else:
            reply = continuing
            reply.complete = False
        earlier = reply.stats if continuing is not None else None
        self._streaming = True
        self._cancel = cancel = threading.Event()
        self._sync()
        stops = self.stop_strings()
        matcher = StopStringMatcher(stops)
        sampling = self.settings.sampling
        room = self.model.context_length - len(prompt.ids)
        sampling = replace(sampling, max_new_tokens=max(1, min(sampling.max_new_tokens, room)))
        # A fresh reply starts after the template's "ASSISTANT:"; the model's leading space or newline
        # is formatting, not content (the template adds its own when the reply is replayed).
        leading = not reply.content
        stats: GenerationStats | None = None
        stop_hit: str | None = None
        unsaved = 0
        last_save = time.monotonic()
        started = time.perf_counter()
        outcome = StopReason.CANCELLED.value  # what a consumer that walks away leaves behind

        def take(text: str) -> str:
            nonlocal leading, unsaved, last_save
            if leading:
                text = text.lstrip()
                leading = not text
            if text:
                reply.content += text
                unsaved += 1
                if self.store is not None and (
                    unsaved >= self.flush_every_chunks
                    or time.monotonic() - last_save >= self.flush_every_seconds
                ):
                    reply.updated_at = time.time()
                    self.store.update_message(reply)
                    unsaved, last_save = 0, time.monotonic()
            return text

        try:
            for item in self.model.generate(prompt.ids, sampling, stops, cancel):
                if isinstance(item, GenerationStats):
                    stats = item
                    continue
                if stop_hit is not None:
                    continue  # drain: the backend ends within a token once cancel is set
                fed = matcher.feed(item)
                text = take(fed.text)
                if text:
                    yield text
                if fed.stop is not None:
                    stop_hit = fed.stop
                    cancel.set()
            if stop_hit is None:
                text = take(matcher.flush())
                if text:
                    yield text
            final = self._final_stats(stats, prompt, stop_hit, cancel, started)
            outcome = final.stop_reason.value
            sampler = asdict(self.settings.sampling)
            reply.stats = ReplyStats.of_generation(final, self.model.backend, sampler, earlier)
        except Exception:
            outcome = "error"
            raise
        finally:
            # Runs for a normal end, an exception and a consumer that stops iterating (GeneratorExit):
            # the partial reply is kept either way.
            cancel.set()
            reply.content = reply.content.rstrip()
            reply.complete = True
            reply.stop_reason = outcome
            reply.updated_at = time.time()
            self.counter.content_tokens(reply)
            if self.store is not None:
                self.store.update_message(reply)
            self._streaming = False
        yield ReplyEnd(reply, final, prompt.plan)

    def _final_stats(
        self,
        stats: GenerationStats | None,
        prompt: _Prompt,
        stop_hit: str | None,
        cancel: threading.Event,
        started: float,
    ) -> GenerationStats:
        if stats is None:  # a backend that ended without its stats item
            reason = StopReason.CANCELLED if cancel.is_set() else StopReason.EOS
            stats = GenerationStats(len(prompt.ids), 0, time.perf_counter() - started, 0.0, reason)
        if stop_hit is not None:
            # We cancelled the backend because the stop string completed across its chunks.
            stats = replace(stats, stop_reason=StopReason.STOP_STRING, stop_string=stop_hit)
        return stats
