"""GPTQModel at run time: load a GPTQ checkpoint and stream tokens from our own decode loop.

Imported only by ``GPTQModelBackend.load`` (it imports torch, transformers and gptqmodel). The decode
loop calls the model once per token with its KV cache (``past_key_values``), samples with transformers'
logits processors, checks the cancel event before every forward pass (so cancel takes effect within
one token) and measures time to first token exactly.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.models.auto import configuration_auto

from app.backends.base import (
    GenerationStats,
    LoadSettings,
    ProgressCallback,
    Sampling,
    StopReason,
    Tokenizer,
)
from app.backends.preflight import (
    backend_failure,
    check_architecture,
    check_cancel,
    check_files,
    check_ram,
    context_length,
    load_estimate_bytes,
    read_config,
    release_memory,
    rss_bytes,
)
from app.errors import (
    MissingFilesError,
    ModelLoadError,
    OutOfMemoryError,
    PromptTooLongError,
    QuantDeskError,
)
from app.stop_strings import StopStringMatcher

# TORCHDYNAMO_DISABLE is read when torch is first imported; if anything imported torch before
# prepare_environment() ran, BACKEND.TORCH would torch.compile (0.5 s per token instead of a few ms
# on the tiny model here), so apply the setting to the live config as well.
if os.environ.get("TORCHDYNAMO_DISABLE") == "1":
    import torch._dynamo

    torch._dynamo.config.disable = True


class HFTokenizer:
    """The chat engine's view of a transformers tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self.bos_token_id: int | None = tokenizer.bos_token_id
        self.eos_token_id: int | None = tokenizer.eos_token_id
        self.bos_token: str | None = tokenizer.bos_token
        self.eos_token: str | None = tokenizer.eos_token
        template = getattr(tokenizer, "chat_template", None)
        self.chat_template: str | None = template if isinstance(template, str) else None

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens added."""
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens skipped."""
        return str(self._tok.decode(list(ids), skip_special_tokens=True))


class IncrementalDecoder:
    """Turns a token stream into text pieces without re-decoding everything or splitting a character.

    Decodes a small window (from the last emitted boundary) and emits the new suffix once it no longer
    ends in an incomplete UTF-8 sequence (U+FFFD), so multi-token characters come out whole.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def add(self, token: int) -> str:
        """Add one token; returns the text it completes (often all of it, sometimes "")."""
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held at the end of the stream."""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :]


def _processors(sampling: Sampling) -> LogitsProcessorList:
    processors = LogitsProcessorList()
    if sampling.repetition_penalty and sampling.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty))
    if sampling.greedy:
        return processors
    if sampling.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(sampling.temperature))
    if sampling.top_k and sampling.top_k > 0:
        processors.append(TopKLogitsWarper(sampling.top_k))
    if 0.0 < sampling.top_p < 1.0:
        processors.append(TopPLogitsWarper(sampling.top_p))
    if sampling.min_p and sampling.min_p > 0.0:
        processors.append(MinPLogitsWarper(sampling.min_p))
    return processors


def eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Every token id that ends generation: the tokenizer's EOS and generation_config's eos_token_id."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    value = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(value, int):
        ids.add(value)
    elif isinstance(value, list | tuple):
        ids.update(int(v) for v in value)
    return frozenset(ids)


def stream_generate(
    model: Any,
    tokenizer: Tokenizer,
    prompt_ids: list[int],
    sampling: Sampling,
    stop: Sequence[str],
    cancel: threading.Event,
    *,
    eos: frozenset[int],
    context: int,
    device: torch.device,
) -> Iterator[str | GenerationStats]:
    """The decode loop shared by the GPTQModel backend (and usable for any transformers causal LM)."""
    if not prompt_ids:
        raise PromptTooLongError("The prompt is empty.", "Type something to send.")
    room = context - len(prompt_ids)
    if room <= 0:
        raise PromptTooLongError(
            f"The prompt has {len(prompt_ids)} tokens; the context holds {context}.",
            "Shorten the conversation or raise the context length.",
        )
    budget = min(sampling.max_new_tokens, room)
    processors = _processors(sampling)
    generator: torch.Generator | None = None
    if not sampling.greedy:
        generator = torch.Generator(device=device)
        if sampling.seed is not None:
            generator.manual_seed(sampling.seed)
        else:
            generator.seed()
    matcher = StopStringMatcher(stop)
    decoder = IncrementalDecoder(tokenizer.decode)
    history = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    step_input = history
    past: Any = None
    new_tokens = 0
    first_token_at = 0.0
    reason = StopReason.LENGTH
    stop_hit: str | None = None
    start = time.perf_counter()

    def emit(piece: str) -> tuple[str, str | None]:
        fed = matcher.feed(piece)
        return fed.text, fed.stop

    with torch.inference_mode():
        while new_tokens < budget:
            if cancel.is_set():
                reason = StopReason.CANCELLED
                break
            out = model(input_ids=step_input, past_key_values=past, use_cache=True, logits_to_keep=1)
            past = out.past_key_values
            logits = out.logits[:, -1, :].float()
            if processors:
                logits = processors(cast(torch.LongTensor, history), logits)
            if generator is None:
                token = logits.argmax(dim=-1, keepdim=True)
            else:
                probs = torch.softmax(logits, dim=-1)
                token = torch.multinomial(probs, num_samples=1, generator=generator)
            token_id = int(token.item())
            new_tokens += 1
            if new_tokens == 1:
                first_token_at = time.perf_counter() - start
            if token_id in eos:
                reason = StopReason.EOS
                break
            step_input = token
            if processors:
                history = torch.cat([history, token], dim=-1)
            piece = decoder.add(token_id)
            if piece:
                text, stop_hit = emit(piece)
                if text:
                    yield text
                if stop_hit is not None:
                    reason = StopReason.STOP_STRING
                    break
        del past
        if stop_hit is None:
            text, stop_hit = emit(decoder.flush())
            if stop_hit is not None:
                reason = StopReason.STOP_STRING
            tail = text + matcher.flush()
            if tail:
                yield tail
    yield GenerationStats(
        prompt_tokens=len(prompt_ids),
        new_tokens=new_tokens,
        seconds=time.perf_counter() - start,
        time_to_first_token=first_token_at,
        stop_reason=reason,
        stop_string=stop_hit,
    )


class GPTQModelLoaded:
    """A GPTQ model loaded by GPTQModel, on the CPU (BACKEND.TORCH) or a CUDA GPU (its best kernel)."""

    backend = "gptqmodel"

    def __init__(
        self,
        qmodel: Any,
        model_dir: Path,
        device: torch.device,
        context: int,
        memory_bytes: int,
        load_seconds: float,
    ) -> None:
        self._qmodel: Any = qmodel
        self.model: Any = qmodel.model  # the transformers model (for benchmarks: plain .generate)
        self.hf_tokenizer: Any = getattr(qmodel.tokenizer, "tokenizer", qmodel.tokenizer)
        self.tokenizer: Tokenizer = HFTokenizer(self.hf_tokenizer)
        self.model_dir = model_dir
        self.device = device
        self.context_length = context
        self.memory_bytes = memory_bytes
        self.load_seconds = load_seconds
        self._eos = eos_ids(self.model, self.hf_tokenizer)
        self._lock = threading.Lock()

    def _prompt_ids(self, prompt: str | Sequence[int]) -> list[int]:
        return self.tokenizer.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]

    def generate(
        self, prompt: str | Sequence[int], sampling: Sampling, stop: Sequence[str], cancel: threading.Event
    ) -> Iterator[str | GenerationStats]:
        """Stream text chunks, then one GenerationStats (see :func:`stream_generate`)."""
        if self.model is None:
            raise ModelLoadError("The model has been unloaded.", "Load it again to chat.")
        ids = self._prompt_ids(prompt)
        with self._lock:  # one generation at a time: the model holds no per-request state, but memory does
            try:
                yield from stream_generate(
                    self.model,
                    self.tokenizer,
                    ids,
                    sampling,
                    stop,
                    cancel,
                    eos=self._eos,
                    context=self.context_length,
                    device=self.device,
                )
            except QuantDeskError:
                raise
            except torch.OutOfMemoryError as exc:
                raise OutOfMemoryError(
                    "GPU", 0, int(torch.cuda.mem_get_info(self.device)[0]), detail=str(exc)
                ) from exc
            except Exception as exc:  # the library failing inside a forward pass
                raise backend_failure(self.model_dir, "GPTQModel", exc, during="generate") from exc

    def unload(self) -> None:
        """Drop every reference to the model and give the memory back (RSS or CUDA)."""
        self._qmodel = None
        self.model = None
        release_memory()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def tensor_bytes(model: Any) -> int:
    """Bytes held by a module's parameters and buffers (quantized weights included: they are buffers)."""
    tensors = [*model.parameters(), *model.buffers()]
    return int(sum(t.numel() * t.element_size() for t in tensors))


def warm_up(model: Any, device: torch.device) -> None:
    """One forward pass over a single token (id 0), without a cache: the model can run, or this raises."""
    with torch.inference_mode():
        model(
            input_ids=torch.zeros((1, 1), dtype=torch.long, device=device), use_cache=False, logits_to_keep=1
        )


def _choose_device(settings: LoadSettings) -> torch.device:
    if settings.device == "cpu":
        return torch.device("cpu")
    if settings.device == "cuda" or torch.cuda.is_available():
        if not torch.cuda.is_available():
            raise ModelLoadError(
                "A CUDA GPU was requested, but PyTorch sees none.",
                "Choose the CPU, or install a CUDA build of PyTorch.",
            )
        return torch.device("cuda", 0)
    return torch.device("cpu")


def load(
    model_dir: Path,
    settings: LoadSettings,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> GPTQModelLoaded:
    """Load a GPTQ checkpoint with GPTQModel. Cancel is honoured between the load's stages."""
    from gptqmodel import BACKEND, GPTQModel

    report = progress or (lambda fraction, message: None)
    config = read_config(model_dir)
    check_files(model_dir, config)
    from gptqmodel.models.auto import MODEL_MAP

    # True only when the folder ships code the user allowed; every other load passes False explicitly.
    run_repo_code = check_architecture(
        model_dir,
        config,
        set(configuration_auto.__dict__["CONFIG_MAPPING_NAMES"]) | set(MODEL_MAP),
        settings.trust_remote_code,
        "GPTQModel",
    )
    context = context_length(config, settings.context_length)
    device = _choose_device(settings)
    estimate = load_estimate_bytes(model_dir, config, context)
    if device.type == "cpu":
        check_ram(estimate)
    else:
        free, _total = torch.cuda.mem_get_info(device)
        if estimate > free:
            raise OutOfMemoryError("GPU", estimate, int(free))
    check_cancel(cancel)
    report(0.2, "Loading the weights")
    release_memory()
    rss_before = rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    try:
        qmodel = GPTQModel.load(
            str(model_dir),
            device=str(device),
            backend=BACKEND.TORCH if device.type == "cpu" else BACKEND.AUTO,
            trust_remote_code=run_repo_code,
        )
    except torch.OutOfMemoryError as exc:
        raise OutOfMemoryError(
            "GPU", estimate, int(torch.cuda.mem_get_info(device)[0]), detail=str(exc)
        ) from exc
    except MemoryError as exc:
        raise OutOfMemoryError("system", estimate, rss_bytes(), detail=str(exc)) from exc
    except FileNotFoundError as exc:
        raise MissingFilesError(
            str(model_dir), [Path(exc.filename or str(exc)).name], detail=str(exc)
        ) from exc
    except Exception as exc:  # the library's own failure (e.g. IndexError dequantizing broken weights)
        raise backend_failure(model_dir, "GPTQModel", exc) from exc
    if cancel is not None and cancel.is_set():
        del qmodel
        release_memory()
        check_cancel(cancel)
    report(0.9, "Checking that the model runs")
    try:
        # GPTQModel dequantizes lazily: damaged weights (an out-of-range g_idx) fail only in a forward
        # pass. One token now makes that a load failure, not a crash on the first message.
        warm_up(qmodel.model, device)
    except Exception as exc:
        del qmodel
        release_memory()
        raise backend_failure(model_dir, "GPTQModel", exc) from exc
    load_seconds = time.perf_counter() - started
    if device.type == "cuda":
        memory = int(torch.cuda.memory_allocated(device))
    else:
        release_memory()
        # The resident growth, but never less than the model's own tensors: memory freed by a model
        # unloaded earlier in this process is reused without growing the resident size at all.
        memory = max(rss_bytes() - rss_before, tensor_bytes(qmodel.model))
    report(1.0, "Loaded")
    return GPTQModelLoaded(qmodel, model_dir, device, context, memory, load_seconds)
