"""What the server serves: one loaded model with its template and profile, and one generation at a time.

:class:`ServedModel` turns a request into token ids the way QuantDesk's chat does (the model's template
renders the messages; the profile's system prompt, sampler and stop strings are the defaults a request
overrides). :class:`GenerationJob` runs one request's generation on its own thread once the
:class:`~app.serve.gate.ModelGate` gives it the model, handing chunks to the server's event loop; setting
its ``cancel`` ends the backend's loop before its next token. Qt-free, HTTP-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from app.backends.base import GenerationStats, LoadedModel, Sampling, StopReason
from app.chat.detection import TemplateChoice
from app.chat.engine import ChatSettings
from app.chat.jinja_template import JinjaTemplate
from app.chat.templates import ChatMessage, Role, Special, encode_segments
from app.serve.gate import GatedModel, ModelGate, Ticket


class End:
    """The last item a job puts on its queue."""


END: Final = End()


@dataclass(frozen=True)
class PromptTooLong:
    """Why a prompt cannot be answered: its tokens against the context."""

    prompt_tokens: int
    max_tokens: int | None  # what the request asked for, None when it asked nothing
    context_length: int

    def message(self, what: str) -> str:
        """OpenAI's wording, with the numbers."""
        if self.max_tokens is None:
            return (
                f"This model's maximum context length is {self.context_length} tokens. However, your "
                f"{what} resulted in {self.prompt_tokens} tokens. Please reduce the length of the {what}."
            )
        total = self.prompt_tokens + self.max_tokens
        return (
            f"This model's maximum context length is {self.context_length} tokens. However, you requested "
            f"{total} tokens ({self.prompt_tokens} in the {what}, {self.max_tokens} in the completion). "
            f"Please reduce the length of the {what} or completion."
        )


@dataclass(frozen=True)
class ServedModel:
    """A loaded model as the server offers it under ``model_id``."""

    model_id: str
    model: LoadedModel
    choice: TemplateChoice
    settings: ChatSettings
    # Run on each generation's thread before it generates. The window sets it so a served request leaves
    # the window a core, as its own chat does (app.backends.cpu_threads); the CLI leaves torch's default.
    thread_setup: Callable[[], object] | None = None

    @classmethod
    def create(
        cls, model_id: str, model: LoadedModel, choice: TemplateChoice, settings: ChatSettings
    ) -> ServedModel:
        """The model with its template fitted to the loaded tokenizer (as the chat session does).

        A :class:`~app.serve.gate.GatedModel` (the chat window's) is unwrapped: the server takes its turns
        at the gate itself, and taking a turn twice would wait forever."""
        if isinstance(model, GatedModel):
            model = model.inner
        template = choice.template
        if isinstance(template, JinjaTemplate):
            tok = model.tokenizer
            adapted = template.for_tokenizer(
                has_bos=tok.bos_token is not None, has_eos=tok.eos_token is not None
            )
            if adapted is not template:
                choice = replace(choice, template=adapted)
        return cls(model_id, model, choice, settings)

    @property
    def context_length(self) -> int:
        """Tokens the loaded model holds."""
        return self.model.context_length

    def _bos(self) -> list[int]:
        bos = self.model.tokenizer.bos_token_id
        return [bos] if self.settings.add_bos and bos is not None else []

    def chat_prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Token ids of ``messages`` rendered with the model's template. Without a system message the
        profile's system prompt (else the template's default) is used; a last assistant message is
        continued rather than answered."""
        chat = list(messages)
        if not any(m.role is Role.SYSTEM for m in chat):
            own = self.settings.system_prompt
            system = self.choice.template.default_system if own is None else own
            if system:
                chat.insert(0, ChatMessage(Role.SYSTEM, system))
        continuing = chat[-1].role is Role.ASSISTANT
        segments = self.choice.template.render(
            chat, add_generation_prompt=not continuing, continue_final=continuing
        )
        if self.choice.template.builtin and self._bos() and not (segments and segments[0] is Special.BOS):
            segments.insert(0, Special.BOS)
        return encode_segments(segments, self.model.tokenizer)

    def completion_prompt(self, text: str) -> list[int]:
        """Token ids of a raw prompt (with BOS when the model's tokenizer adds one)."""
        return self._bos() + self.model.tokenizer.encode(text)

    def chat_stops(self, requested: Sequence[str]) -> tuple[str, ...]:
        """The template's and the profile's stop strings plus the request's."""
        own = (*self.choice.template.stop_strings, *self.settings.extra_stop_strings)
        return tuple(dict.fromkeys((*own, *requested)))

    def budget(self, prompt_tokens: int, sampling: Sampling, asked: int | None) -> Sampling | PromptTooLong:
        """``sampling`` with max_new_tokens fitted to the context: a default is shortened, an explicit
        ``max_tokens`` that does not fit is refused (as OpenAI does)."""
        room = self.context_length - prompt_tokens
        if room <= 0 or (asked is not None and asked > room):
            return PromptTooLong(prompt_tokens, asked, self.context_length)
        return replace(sampling, max_new_tokens=min(sampling.max_new_tokens, room))


@dataclass
class JobRecord:
    """What one finished generation did (kept for the monitor and the tests)."""

    number: int
    prompt_tokens: int
    new_tokens: int = 0
    stop_reason: StopReason | None = None
    disconnected: bool = False  # the client went away and cancelled it
    chunks_after_cancel: int = 0  # text chunks the backend produced after cancel was set
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None  # when it got the model
    ended_at: float | None = None
    error: str | None = None


class GenerationJob:
    """One request's generation on its own thread; items arrive on ``events`` (an asyncio queue):
    text chunks, then one GenerationStats (or an exception), then :data:`END`."""

    def __init__(
        self,
        served: ServedModel,
        gate: ModelGate,
        ticket: Ticket,
        prompt_ids: list[int],
        sampling: Sampling,
        stop: Sequence[str],
        *,
        strip_leading: bool,
        record: JobRecord,
    ) -> None:
        self.served = served
        self.gate = gate
        self.ticket = ticket
        self.prompt_ids = prompt_ids
        self.sampling = sampling
        self.stop = tuple(stop)
        self.strip_leading = strip_leading
        self.record = record
        self.cancel = threading.Event()
        self.events: asyncio.Queue[str | GenerationStats | BaseException | End] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        """Run on a new thread (it first waits for its turn at the gate)."""
        threading.Thread(target=self._run, name=f"serve-job-{self.record.number}", daemon=True).start()

    def disconnect(self) -> None:
        """The client went away: stop generating (the backend checks before every token)."""
        if not self.cancel.is_set():
            self.record.disconnected = True
            self.cancel.set()

    def abandon(self) -> None:
        """The answer will not be read (its response ended without reading it): stop if still running."""
        if self.record.ended_at is None:
            self.disconnect()

    def _put(self, item: str | GenerationStats | BaseException | End) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is shutting down
            self._loop.call_soon_threadsafe(self.events.put_nowait, item)

    def _run(self) -> None:
        record = self.record
        try:
            if not self.gate.wait(self.ticket, self.cancel):
                record.stop_reason = StopReason.CANCELLED
                return
            record.started_at = time.monotonic()
            if self.served.thread_setup is not None:
                self.served.thread_setup()
            leading = self.strip_leading
            stream = self.served.model.generate(self.prompt_ids, self.sampling, self.stop, self.cancel)
            for item in stream:
                if isinstance(item, GenerationStats):
                    record.new_tokens, record.stop_reason = item.new_tokens, item.stop_reason
                    self._put(item)
                    continue
                if self.cancel.is_set():
                    record.chunks_after_cancel += 1
                if leading:  # as the chat engine: the model's first space or newline is formatting
                    item = item.lstrip()
                    leading = not item
                if item:
                    self._put(item)
        except Exception as exc:  # reported to the client as an OpenAI error
            record.error = str(exc)
            self._put(exc)
        finally:
            record.ended_at = time.monotonic()
            self.gate.release(self.ticket)
            self._put(END)
