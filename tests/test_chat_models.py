"""The chat engine on a real model: SmolLM2-135M-Instruct quantized to 4-bit GPTQ, run by GPTQModel on CPU.

The model is built once (``smollm2_dir``, a session fixture from tests/models/fixtures.py, cached by its
inputs) and loaded once per module.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from app.backends.base import LoadedModel, LoadSettings, Sampling
from app.chat.detection import TemplateSource, detect_for_model
from app.chat.engine import ChatSession, ChatSettings, ReplyEnd
from app.chat.model_files import read_model_files
from app.chat.templates import ChatMessage, Role, encode_segments, render_text
from app.cli import main

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path) -> Iterator[LoadedModel]:
    """SmolLM2 loaded by GPTQModel on the CPU, shared by this module's tests."""
    from app.backends.gptqmodel import GPTQModelBackend

    model = GPTQModelBackend().load(smollm2_dir, LoadSettings(context_length=2048, device="cpu"))
    yield model
    model.unload()


class _Recording:
    """A LoadedModel wrapper that records the prompt ids each generate call received."""

    def __init__(self, model: LoadedModel) -> None:
        self._model = model
        self.backend = model.backend
        self.model_dir = model.model_dir
        self.tokenizer = model.tokenizer
        self.context_length = model.context_length
        self.memory_bytes = model.memory_bytes
        self.load_seconds = model.load_seconds
        self.prompts: list[list[int]] = []

    def generate(
        self, prompt: str | Sequence[int], sampling: Sampling, stop: Sequence[str], cancel: threading.Event
    ) -> Iterator[Any]:
        self.prompts.append(list(prompt) if not isinstance(prompt, str) else self.tokenizer.encode(prompt))
        return self._model.generate(prompt, sampling, stop, cancel)

    def unload(self) -> None:
        self._model.unload()


def _reply(stream: Iterator[str | ReplyEnd]) -> ReplyEnd:
    end = None
    for item in stream:
        if isinstance(item, ReplyEnd):
            end = item
    assert end is not None
    return end


def test_two_turn_chat_replays_the_first_turn_exactly_as_the_template_renders_it(
    smollm2: LoadedModel, smollm2_dir: Path
) -> None:
    files = read_model_files(smollm2_dir)
    choice = detect_for_model(files)
    assert (choice.name, choice.source) == ("jinja", TemplateSource.MODEL)  # SmolLM2 ships its own template
    model = _Recording(smollm2)
    session = ChatSession(
        model,  # type: ignore[arg-type]
        choice,
        settings=ChatSettings(sampling=Sampling(temperature=0.0, max_new_tokens=40)),
    )
    first = _reply(session.send(QUESTION))
    assert "Paris" in first.message.content
    assert first.stats.new_tokens > 0

    preview = session.preview_prompt("And what about Italy?")
    second = _reply(session.send("And what about Italy?"))
    assert list(preview.token_ids) == model.prompts[1]  # the preview is exactly what was sent

    # The first turn, rendered by the model's own template on its own, appears verbatim in the second
    # prompt — as text and as the same token ids at the start of the prompt.
    first_turn = [ChatMessage(Role.USER, QUESTION), ChatMessage(Role.ASSISTANT, first.message.content)]
    rendered = choice.template.render(first_turn, add_generation_prompt=False)
    tok = smollm2.tokenizer
    assert render_text(rendered, tok.bos_token, tok.eos_token) in preview.text
    first_ids = encode_segments(rendered, tok)
    assert model.prompts[1][: len(first_ids)] == first_ids
    assert model.prompts[1][: len(model.prompts[0])] == model.prompts[0]
    assert second.message.content and second.plan.dropped == ()


def test_cli_one_shot_answers_paris(smollm2_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["chat", str(smollm2_dir), "--prompt", QUESTION, "--temperature", "0", "--max-new-tokens", "40"]
    assert main([*args, "--context", "2048"]) == 0
    out = capsys.readouterr().out
    assert "Paris" in out
