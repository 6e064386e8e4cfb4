"""Test doubles for the chat engine: a character-level tokenizer and a scripted model.

The tokenizer maps each character to one id (so token counts are character counts and easy to reason
about), with BOS = 1 and EOS = 2 as separate ids. The model streams scripted chunks verbatim — it does
not match stop strings itself — so the engine's own matching is what the tests see.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.backends.base import GenerationStats, Sampling, StopReason

BOS_ID = 1
EOS_ID = 2
_OFFSET = 16  # ids below this are special


class CharTokenizer:
    """One token per character; special tokens only as ids."""

    bos_token_id: int | None = BOS_ID
    eos_token_id: int | None = EOS_ID
    bos_token: str | None = "<s>"
    eos_token: str | None = "</s>"
    chat_template: str | None = None

    def __init__(self) -> None:
        self.encode_calls = 0
        self.encoded_chars = 0

    def encode(self, text: str) -> list[int]:
        self.encode_calls += 1
        self.encoded_chars += len(text)
        return [ord(c) + _OFFSET for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(chr(i - _OFFSET) for i in ids if i >= _OFFSET)

    def spell(self, ids: Sequence[int]) -> str:
        """Ids back to text with BOS/EOS written as <s>/</s> (for assertions)."""
        names = {BOS_ID: "<s>", EOS_ID: "</s>"}
        return "".join(names[i] if i in names else chr(i - _OFFSET) for i in ids)


@dataclass
class ScriptedModel:
    """A LoadedModel whose replies are scripted lists of chunks (one list per generate call)."""

    replies: list[list[str]] = field(default_factory=list)
    context_length: int = 4096
    backend: str = "fake"
    model_dir: Path = Path("/nonexistent/fake-model")
    memory_bytes: int = 0
    load_seconds: float = 0.0
    chunk_delay: float = 0.0
    tokenizer: CharTokenizer = field(default_factory=CharTokenizer)
    prompts: list[list[int]] = field(default_factory=list)
    samplings: list[Sampling] = field(default_factory=list)
    stops: list[tuple[str, ...]] = field(default_factory=list)
    default_reply: tuple[str, ...] = ("OK",)
    unloaded: bool = False

    def generate(
        self, prompt: str | Sequence[int], sampling: Sampling, stop: Sequence[str], cancel: threading.Event
    ) -> Iterator[str | GenerationStats]:
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        self.prompts.append(ids)
        self.samplings.append(sampling)
        self.stops.append(tuple(stop))
        chunks = self.replies.pop(0) if self.replies else list(self.default_reply)
        started = time.perf_counter()
        reason = StopReason.EOS
        produced = 0
        for chunk in chunks:
            if cancel.is_set():
                reason = StopReason.CANCELLED
                break
            if produced >= sampling.max_new_tokens:
                reason = StopReason.LENGTH
                break
            if self.chunk_delay:
                time.sleep(self.chunk_delay)
            produced += 1
            yield chunk
        yield GenerationStats(len(ids), produced, time.perf_counter() - started, 0.0, reason)

    def unload(self) -> None:
        self.unloaded = True
