"""ExLlamaV2 0.3.2 at run time (CUDA only): config, model, cache of the chosen type, streaming generator.

Imported only by ``ExLlamaV2Rules.load``; ``import exllamav2`` builds its extension and needs a CUDA
torch. Written against the library's API as NOTES.md records it: ``ExLlamaV2Config(dir)``,
``ExLlamaV2(cfg)``, ``ExLlamaV2Cache[_8bit|_Q8|_Q6|_Q4](model, max_seq_len=, lazy=True)``,
``model.load_autosplit(cache)`` or ``model.load(gpu_split)``, ``ExLlamaV2Tokenizer(cfg)``,
``ExLlamaV2StreamingGenerator(model, cache, tok)``, ``set_stop_conditions``, ``begin_stream_ex(ids,
settings, abort_event=)`` and ``stream_ex()`` -> ``{"chunk", "eos", ...}``.

Stop strings go through QuantDesk's own matcher (the generator only gets the stop *tokens*), so the
stop reason is known exactly and the behaviour matches the GPTQModel backend.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from exllamav2 import (
    ExLlamaV2,
    ExLlamaV2Cache,
    ExLlamaV2Cache_8bit,
    ExLlamaV2Cache_Q4,
    ExLlamaV2Cache_Q6,
    ExLlamaV2Cache_Q8,
    ExLlamaV2Config,
    ExLlamaV2Tokenizer,
)
from exllamav2.generator import ExLlamaV2Sampler, ExLlamaV2StreamingGenerator

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
    check_cancel,
    check_files,
    check_remote_code,
    context_length,
    load_estimate_bytes,
    read_config,
    release_memory,
)
from app.catalog.vram import CacheType
from app.errors import LoadCancelledError, ModelLoadError, OutOfMemoryError, PromptTooLongError
from app.stop_strings import StopStringMatcher

_CACHE_CLASSES: dict[CacheType, Any] = {
    CacheType.FP16: ExLlamaV2Cache,
    CacheType.FP8: ExLlamaV2Cache_8bit,
    CacheType.Q8: ExLlamaV2Cache_Q8,
    CacheType.Q6: ExLlamaV2Cache_Q6,
    CacheType.Q4: ExLlamaV2Cache_Q4,
}


def _chat_template(model_dir: Path) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = model_dir / "tokenizer_config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        except (OSError, ValueError):
            return None
        return value if isinstance(value, str) else None
    return None


class ExLlamaTokenizer:
    """The chat engine's view of an ExLlamaV2Tokenizer."""

    def __init__(self, tokenizer: Any, model_dir: Path) -> None:
        self._tok = tokenizer
        self.bos_token_id: int | None = tokenizer.bos_token_id
        self.eos_token_id: int | None = tokenizer.eos_token_id
        self.bos_token: str | None = getattr(tokenizer, "bos_token", None)
        self.eos_token: str | None = getattr(tokenizer, "eos_token", None)
        self.chat_template: str | None = _chat_template(model_dir)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS/EOS (special-token text is encoded as the special token)."""
        ids = self._tok.encode(text, add_bos=False, add_eos=False, encode_special_tokens=True)
        return [int(i) for i in ids[0].tolist()]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` without special tokens."""
        out = self._tok.decode(torch.tensor([list(ids)], dtype=torch.long), decode_special_tokens=False)
        return str(out[0] if isinstance(out, list) else out)


class ExLlamaV2Loaded:
    """A GPTQ model loaded by ExLlamaV2 on one or more CUDA GPUs."""

    backend = "exllamav2"

    def __init__(
        self,
        model: Any,
        cache: Any,
        tokenizer: Any,
        model_dir: Path,
        context: int,
        memory_bytes: int,
        load_seconds: float,
    ) -> None:
        self._model: Any = model
        self._cache: Any = cache
        self._xtok: Any = tokenizer
        self._generator: Any = ExLlamaV2StreamingGenerator(model, cache, tokenizer)
        self._generator.set_stop_conditions([tokenizer.eos_token_id])
        self.tokenizer: Tokenizer = ExLlamaTokenizer(tokenizer, model_dir)
        self.model_dir = model_dir
        self.context_length = context
        self.memory_bytes = memory_bytes
        self.load_seconds = load_seconds
        self._lock = threading.Lock()

    @staticmethod
    def _settings(sampling: Sampling) -> Any:
        settings = ExLlamaV2Sampler.Settings()
        if sampling.greedy:
            settings.temperature = 1.0
            settings.top_k = 1
            settings.top_p = 0.0
        else:
            settings.temperature = sampling.temperature
            settings.top_k = max(0, sampling.top_k)
            settings.top_p = sampling.top_p if 0 < sampling.top_p < 1 else 0.0
        settings.min_p = sampling.min_p
        settings.token_repetition_penalty = sampling.repetition_penalty
        return settings

    def generate(
        self, prompt: str | Sequence[int], sampling: Sampling, stop: Sequence[str], cancel: threading.Event
    ) -> Iterator[str | GenerationStats]:
        """Stream text chunks, then one GenerationStats; cancel aborts prefill and stops per token."""
        if self._generator is None:
            raise ModelLoadError("The model has been unloaded.", "Load it again to chat.")
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
        room = self.context_length - len(ids)
        if not ids or room <= 0:
            raise PromptTooLongError(
                f"The prompt has {len(ids)} tokens; the context holds {self.context_length}.",
                "Shorten the conversation or raise the context length.",
            )
        budget = min(sampling.max_new_tokens, room)
        if sampling.seed is not None:
            random.seed(sampling.seed)
            torch.manual_seed(sampling.seed)
        matcher = StopStringMatcher(stop)
        with self._lock:
            start = time.perf_counter()
            self._generator.begin_stream_ex(
                torch.tensor([ids], dtype=torch.long), self._settings(sampling), abort_event=cancel
            )
            new_tokens, first_at = 0, 0.0
            reason, stop_hit = StopReason.LENGTH, None
            while new_tokens < budget:
                if cancel.is_set():
                    reason = StopReason.CANCELLED
                    break
                result = self._generator.stream_ex()
                new_tokens += 1
                if new_tokens == 1:
                    first_at = time.perf_counter() - start
                fed = matcher.feed(str(result.get("chunk", "")))
                if fed.text:
                    yield fed.text
                if fed.stop is not None:
                    reason, stop_hit = StopReason.STOP_STRING, fed.stop
                    break
                if result.get("eos"):
                    reason = StopReason.CANCELLED if cancel.is_set() else StopReason.EOS
                    break
            tail = matcher.flush()
            if tail:
                yield tail
            yield GenerationStats(
                prompt_tokens=len(ids),
                new_tokens=new_tokens,
                seconds=time.perf_counter() - start,
                time_to_first_token=first_at,
                stop_reason=reason,
                stop_string=stop_hit,
            )

    def unload(self) -> None:
        """Unload the model from the GPUs and free the cache."""
        if self._model is not None:
            self._model.unload()
        self._model = self._cache = self._generator = self._xtok = None
        release_memory()
        torch.cuda.empty_cache()


def _allocated() -> int:
    return sum(int(torch.cuda.memory_allocated(i)) for i in range(torch.cuda.device_count()))


def load(
    model_dir: Path,
    settings: LoadSettings,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ExLlamaV2Loaded:
    """Load with ExLlamaV2: autosplit across GPUs, or the user's ``gpu_split`` (GiB per GPU)."""
    report = progress or (lambda fraction, message: None)
    config_json = read_config(model_dir)
    check_files(model_dir, config_json)
    # ExLlamaV2 never imports a repo's modules (it has no trust_remote_code), but a folder that ships
    # code is held to the same consent as with every other backend.
    check_remote_code(model_dir, config_json, settings.trust_remote_code)
    if not torch.cuda.is_available():
        raise ModelLoadError("ExLlamaV2 needs a CUDA GPU; PyTorch sees none.", "Use GPTQModel instead.")
    context = context_length(config_json, settings.context_length)
    cache_class = _CACHE_CLASSES.get(settings.cache_type, ExLlamaV2Cache)
    started = time.perf_counter()
    try:
        config = ExLlamaV2Config(str(model_dir))
        config.max_seq_len = context
        model = ExLlamaV2(config)
    except Exception as exc:  # a config.json or weight layout the library cannot read
        raise backend_failure(model_dir, "ExLlamaV2", exc) from exc

    def callback(done: int, total: int) -> None:
        report(0.1 + 0.85 * done / max(total, 1), f"Loading layer {done} of {total}")
        if cancel is not None and cancel.is_set():
            raise LoadCancelledError("Loading was cancelled.")

    try:
        if settings.gpu_split:
            model.load(list(settings.gpu_split), callback=callback)
            cache = cache_class(model, max_seq_len=context)
        else:
            cache = cache_class(model, max_seq_len=context, lazy=True)
            model.load_autosplit(cache, callback=callback)
        tokenizer = ExLlamaV2Tokenizer(config)
    except LoadCancelledError:
        model.unload()
        release_memory()
        torch.cuda.empty_cache()
        raise
    except torch.OutOfMemoryError as exc:
        model.unload()
        torch.cuda.empty_cache()
        free = sum(int(torch.cuda.mem_get_info(i)[0]) for i in range(torch.cuda.device_count()))
        estimate = load_estimate_bytes(model_dir, config_json, context)
        raise OutOfMemoryError("GPU", estimate, free, detail=str(exc)) from exc
    except Exception as exc:  # the library's own failure (broken weights, an unexpected layout)
        model.unload()
        torch.cuda.empty_cache()
        raise backend_failure(model_dir, "ExLlamaV2", exc) from exc
    check_cancel(cancel)
    report(1.0, "Loaded")
    return ExLlamaV2Loaded(
        model, cache, tokenizer, model_dir, context, _allocated(), time.perf_counter() - started
    )
