"""Streaming generate vs plain ``model.generate`` on the same loaded GPTQ model (target ratio >= 0.97).

Usage: ``.venv/bin/python -m benchmarks.generate [--model DIR] [--tokens 128] [--rounds 2]``.
Without ``--model`` it uses the SmolLM2-135M-Instruct GPTQ 4-bit g128 test model (built and cached by
``tests.models.build`` on first use). Greedy decoding; the runs alternate so background load hits both
alike, and the best of the rounds is reported. Also prints load time and RSS after load.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

from app.backends.base import GenerationStats, LoadSettings, Sampling
from app.backends.gptqmodel import GPTQModelRules
from app.backends.preflight import rss_bytes

PROMPT = "Write a long story about a robot who learns to paint. Describe every day of its first week."


def _chat_ids(model: Any, text: str) -> list[int]:
    ids = model.hf_tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    return [int(i) for i in ids]


def _streaming(model: Any, ids: list[int], tokens: int) -> tuple[int, float, float]:
    stats: GenerationStats | None = None
    for item in model.generate(ids, Sampling(temperature=0, max_new_tokens=tokens), (), threading.Event()):
        if isinstance(item, GenerationStats):
            stats = item
    assert stats is not None
    return stats.new_tokens, stats.seconds, stats.time_to_first_token


def _plain(model: Any, ids: list[int], tokens: int) -> tuple[int, float, float]:
    import torch
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls = 0
            self.first = 0.0

        def put(self, value: Any) -> None:
            self.calls += 1
            if self.calls == 2:  # the first put is the prompt
                self.first = time.perf_counter()

        def end(self) -> None:
            pass

    streamer = FirstToken()
    input_ids = torch.tensor([ids])
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            streamer=streamer,
        )
    seconds = time.perf_counter() - start
    return int(out.shape[1] - len(ids)), seconds, streamer.first - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a GPTQ model directory (default: SmolLM2 test model)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.model is None:
        from tests.models.build import ensure_built
        from tests.models.fixtures import SMOLLM2_BRANCH

        args.model = ensure_built("smollm2") / SMOLLM2_BRANCH
    backend = GPTQModelRules()
    model: Any = backend.load(args.model, LoadSettings(device="cpu", context_length=2048))
    print(f"model: {args.model}")
    print(
        f"load time: {model.load_seconds:.2f} s; RSS after load: {rss_bytes() / 2**20:.0f} MiB "
        f"(model: +{model.memory_bytes / 2**20:.0f} MiB)"
    )
    ids = _chat_ids(model, PROMPT)
    _streaming(model, ids, 8)  # warm-up
    _plain(model, ids, 8)
    best: dict[str, tuple[float, float, int]] = {}
    for round_no in range(args.rounds):
        for name, run in (("streaming", _streaming), ("plain", _plain)):
            # The plain run generates exactly as many tokens as the streaming one did (EOS may come first).
            want = best.get("streaming", (0, 0, args.tokens))[2] if name == "plain" else args.tokens
            n, seconds, ttft = run(model, ids, want)
            tps = n / seconds
            print(f"round {round_no + 1} {name:9s}: {n} tokens, {tps:6.2f} tok/s, TTFT {ttft * 1000:7.1f} ms")
            if name not in best or tps > best[name][0]:
                best[name] = (tps, ttft, n)
    ratio = best["streaming"][0] / best["plain"][0]
    print(
        f"streaming {best['streaming'][0]:.2f} tok/s (TTFT {best['streaming'][1] * 1000:.0f} ms) vs "
        f"plain generate {best['plain'][0]:.2f} tok/s (TTFT {best['plain'][1] * 1000:.0f} ms): "
        f"ratio {ratio:.3f} (target >= 0.97: {'met' if ratio >= 0.97 else 'NOT met'})"
    )
    model.unload()


if __name__ == "__main__":
    main()
