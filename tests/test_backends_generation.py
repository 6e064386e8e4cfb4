"""Backends on real GPTQ models: streaming, determinism, cancel, stop strings, load errors, unload.

The behavioural suite runs on every backend that can run here: GPTQModel on the CPU always, ExLlamaV2
(``gpu`` marker) only where CUDA and exllamav2 exist. Models come from ``tests.models.build``.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2.sandbox
import pytest

from app.backends.base import GenerationStats, LoadedModel, LoadSettings, Sampling, StopReason
from app.backends.exllamav2 import ExLlamaV2Rules
from app.backends.gptqmodel import GPTQModelRules
from app.backends.preflight import release_memory, rss_bytes
from app.errors import (
    LoadCancelledError,
    MissingFilesError,
    OutOfMemoryError,
    PromptTooLongError,
    RemoteCodeConsentError,
    UnsupportedArchitectureError,
)
from tests.models.build import TINY_BRANCHES
from tests.models.fixtures import TINY_MAIN

GREEDY = Sampling(temperature=0, max_new_tokens=32)
PROMPT = "The quick brown"
CONTINUATION = " fox jumps over the lazy dog."


def _exllama_usable() -> bool:
    if not ExLlamaV2Rules().probe().available:
        return False
    import torch

    return bool(torch.cuda.is_available())


@pytest.fixture(
    scope="module",
    params=[
        "gptqmodel",
        pytest.param("exllamav2", marks=pytest.mark.gpu),
    ],
)
def loaded(request: pytest.FixtureRequest, tiny_models: dict[str, Path]) -> Iterator[LoadedModel]:
    """The tiny 4-bit model, loaded by each backend that can run here."""
    if request.param == "gptqmodel":
        yield request.getfixturevalue("tiny_gptqmodel")
        return
    if not _exllama_usable():
        pytest.skip("ExLlamaV2 needs a CUDA GPU and the exllamav2 package")
    model = ExLlamaV2Rules().load(tiny_models[TINY_MAIN], LoadSettings(device="cuda"))
    yield model
    model.unload()


def _ids(model: LoadedModel, text: str) -> list[int]:
    bos = model.tokenizer.bos_token_id
    return ([bos] if bos is not None else []) + model.tokenizer.encode(text)


def _run(
    model: LoadedModel,
    prompt: str | list[int],
    sampling: Sampling = GREEDY,
    stop: tuple[str, ...] = (),
    cancel: threading.Event | None = None,
) -> tuple[list[str], GenerationStats]:
    chunks: list[str] = []
    stats: GenerationStats | None = None
    for item in model.generate(prompt, sampling, stop, cancel or threading.Event()):
        if isinstance(item, GenerationStats):
            stats = item
        else:
            assert stats is None, "text after the final stats"
            chunks.append(item)
    assert stats is not None
    return chunks, stats


# -- the behavioural suite (every backend) ---------------------------------------------------------------


def test_greedy_output_is_deterministic_and_meaningful(loaded: LoadedModel) -> None:
    first, stats = _run(loaded, _ids(loaded, PROMPT))
    second, _ = _run(loaded, _ids(loaded, PROMPT))
    assert "".join(first) == "".join(second) == CONTINUATION
    assert stats.stop_reason == StopReason.EOS
    assert stats.new_tokens >= len(first) > 1
    assert stats.prompt_tokens == len(_ids(loaded, PROMPT))
    assert 0 < stats.time_to_first_token <= stats.seconds and stats.tokens_per_second > 0


def test_text_and_token_id_prompts_agree(loaded: LoadedModel) -> None:
    as_text, _ = _run(loaded, (loaded.tokenizer.bos_token or "") + PROMPT)
    as_ids, _ = _run(loaded, _ids(loaded, PROMPT))
    assert "".join(as_text) == "".join(as_ids)


def test_cancel_stops_within_one_token(loaded: LoadedModel) -> None:
    cancel = threading.Event()
    chunks: list[str] = []
    stats: GenerationStats | None = None
    for item in loaded.generate(_ids(loaded, PROMPT), GREEDY, (), cancel):
        if isinstance(item, GenerationStats):
            stats = item
        else:
            chunks.append(item)
            cancel.set()  # the user presses Stop on seeing the first text
    assert stats is not None and stats.stop_reason == StopReason.CANCELLED
    assert chunks and stats.new_tokens <= 2  # the token being shown, at most one more

    cancel = threading.Event()
    cancel.set()
    chunks, stats = _run(loaded, _ids(loaded, PROMPT), cancel=cancel)
    assert chunks == [] and stats.new_tokens == 0 and stats.stop_reason == StopReason.CANCELLED


@pytest.mark.parametrize("stop", ["lazy", "r the la", "dog.", "s over"])
def test_stop_string_ends_generation_and_is_not_returned(loaded: LoadedModel, stop: str) -> None:
    chunks, stats = _run(loaded, _ids(loaded, PROMPT), stop=(stop, "never appears"))
    text = "".join(chunks)
    assert text == CONTINUATION[: CONTINUATION.index(stop)]
    assert stop not in text
    assert stats.stop_reason == StopReason.STOP_STRING and stats.stop_string == stop


def test_length_limit(loaded: LoadedModel) -> None:
    chunks, stats = _run(loaded, _ids(loaded, PROMPT), Sampling(temperature=0, max_new_tokens=3))
    assert stats.new_tokens == 3 and stats.stop_reason == StopReason.LENGTH
    assert CONTINUATION.startswith("".join(chunks))


def test_prompt_longer_than_the_context_is_refused(loaded: LoadedModel) -> None:
    with pytest.raises(PromptTooLongError):
        _run(loaded, [loaded.tokenizer.bos_token_id or 0] * (loaded.context_length + 1))


def test_sampling_is_reproducible_with_a_seed(loaded: LoadedModel) -> None:
    hot = Sampling(temperature=1.5, top_p=0.95, top_k=50, min_p=0.01, repetition_penalty=1.1, seed=7)
    a, _ = _run(loaded, _ids(loaded, "Once"), hot)
    b, _ = _run(loaded, _ids(loaded, "Once"), hot)
    assert "".join(a) == "".join(b)
    outputs = {
        "".join(_run(loaded, _ids(loaded, "Once"), Sampling(temperature=2.0, seed=s))[0]) for s in range(6)
    }
    assert len(outputs) > 1  # a high temperature really samples
    top1, _ = _run(loaded, _ids(loaded, PROMPT), Sampling(temperature=1.0, top_k=1, seed=1))
    assert "".join(top1) == CONTINUATION  # top-k 1 is greedy


def test_loaded_model_reports_its_facts(loaded: LoadedModel) -> None:
    assert loaded.context_length == 512
    assert loaded.memory_bytes >= 0 and loaded.load_seconds > 0
    tok = loaded.tokenizer
    assert (tok.bos_token, tok.eos_token) == ("<s>", "</s>") and tok.bos_token_id is not None
    assert tok.chat_template and "messages" in tok.chat_template
    assert tok.decode(tok.encode("The capital of France")) == "The capital of France"


# -- GPTQModel specifics ---------------------------------------------------------------------------------


def test_streamed_chunks_concatenate_to_plain_generate_output(tiny_gptqmodel: Any) -> None:
    import torch

    ids = _ids(tiny_gptqmodel, "Once upon a time")
    chunks, _stats = _run(tiny_gptqmodel, ids, Sampling(temperature=0, max_new_tokens=40))
    with torch.inference_mode():
        out = tiny_gptqmodel.model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False)
    reference = tiny_gptqmodel.hf_tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
    assert len(chunks) > 5 and "".join(chunks) == reference
    assert "robot" in reference


@pytest.mark.parametrize("branch", list(TINY_BRANCHES))
def test_every_tiny_branch_loads_and_generates(tiny_models: dict[str, Path], branch: str) -> None:
    model = GPTQModelRules().load(tiny_models[branch], LoadSettings(device="cpu"))
    try:
        chunks, stats = _run(model, _ids(model, PROMPT), Sampling(temperature=0, max_new_tokens=12))
        assert stats.new_tokens > 0 and "fox" in "".join(chunks)
    finally:
        model.unload()


def _copy(src: Path, dst: Path, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*drop))
    return dst


def _edit_config(model_dir: Path, **changes: object) -> None:
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_missing_files_are_named(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    broken = _copy(tiny_models[TINY_MAIN], tmp_path / "m", drop=("model.safetensors", "tokenizer.json"))
    with pytest.raises(MissingFilesError) as err:
        GPTQModelRules().load(broken, LoadSettings(device="cpu"))
    assert "weight file" in err.value.user_message and "tokenizer" in err.value.user_message
    with pytest.raises(MissingFilesError):
        GPTQModelRules().load(tmp_path / "nowhere", LoadSettings(device="cpu"))


def test_remote_code_needs_consent_and_unknown_architectures_are_refused(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    custom = _copy(tiny_models[TINY_MAIN], tmp_path / "custom")
    _edit_config(
        custom,
        model_type="quantdesk_custom",
        architectures=["QuantDeskCustomForCausalLM"],
        auto_map={"AutoModelForCausalLM": "modeling_custom.QuantDeskCustomForCausalLM"},
    )
    with pytest.raises(RemoteCodeConsentError) as err:
        GPTQModelRules().load(custom, LoadSettings(device="cpu"))
    assert "auto_map in config.json" in err.value.user_message and "consent" in err.value.user_message

    unknown = _copy(tiny_models[TINY_MAIN], tmp_path / "unknown")
    _edit_config(unknown, model_type="quantdesk_unknown", architectures=["MysteryForCausalLM"])
    with pytest.raises(UnsupportedArchitectureError) as err2:
        GPTQModelRules().load(unknown, LoadSettings(device="cpu"))
    assert "MysteryForCausalLM" in err2.value.user_message


def test_out_of_memory_shows_estimate_and_available(
    tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.backends.preflight as preflight

    monkeypatch.setattr(preflight.psutil, "virtual_memory", lambda: SimpleNamespace(available=1024))
    with pytest.raises(OutOfMemoryError) as err:
        GPTQModelRules().load(tiny_models[TINY_MAIN], LoadSettings(device="cpu"))
    assert err.value.available_bytes == 1024 and err.value.estimate_bytes > 1024
    assert "needs about" in err.value.message and "is available" in err.value.message


def test_load_is_cancellable(tiny_models: dict[str, Path]) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(LoadCancelledError):
        GPTQModelRules().load(tiny_models[TINY_MAIN], LoadSettings(device="cpu"), cancel=cancel)

    cancel = threading.Event()
    stages: list[str] = []

    def progress(fraction: float, message: str) -> None:
        stages.append(message)
        if fraction >= 0.2:
            cancel.set()  # the user cancels while the weights load

    with pytest.raises(LoadCancelledError):
        GPTQModelRules().load(tiny_models[TINY_MAIN], LoadSettings(device="cpu"), progress, cancel)
    assert any("weights" in s for s in stages)


# -- the real SmolLM2-135M-Instruct ----------------------------------------------------------------------


def _chat_prompt(model: LoadedModel, question: str) -> str:
    template = model.tokenizer.chat_template
    assert template, "SmolLM2 ships a chat template"
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        messages=[{"role": "user", "content": question}],
        add_generation_prompt=True,
        bos_token=model.tokenizer.bos_token or "",
        eos_token=model.tokenizer.eos_token or "",
    )


@pytest.mark.slow
def test_smollm2_gptq_knows_the_capital_of_france_and_unload_frees_memory(
    smollm2_dir: Path, tiny_models: dict[str, Path]
) -> None:
    backend = GPTQModelRules()
    # Warm up (imports, allocator pools) so the baseline only excludes the model itself.
    backend.load(tiny_models[TINY_MAIN], LoadSettings(device="cpu")).unload()
    release_memory()
    baseline = rss_bytes()

    model = backend.load(smollm2_dir, LoadSettings(device="cpu", context_length=2048))
    assert model.memory_bytes > 80 * 2**20  # ~110 MB of GPTQ weights
    prompt = _chat_prompt(model, "What is the capital of France?")
    assert "<|im_start|>assistant" in prompt
    chunks, stats = _run(model, prompt, Sampling(temperature=0, max_new_tokens=24))
    answer = "".join(chunks)
    assert "Paris" in answer, answer
    assert stats.stop_reason in (StopReason.EOS, StopReason.LENGTH)
    loaded_rss = rss_bytes() - baseline

    model.unload()
    release_memory()
    residue = rss_bytes() - baseline
    assert residue < 0.4 * loaded_rss, (residue, loaded_rss)
