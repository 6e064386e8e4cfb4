"""Streamed tokens/s through ``quantdesk serve`` vs the same model's in-process generate (target >= 0.95),
and the API's added time to first token (target <= 20 ms).

Usage: ``.venv/bin/python -m benchmarks.serve [--model DIR] [--tokens 64] [--rounds 5] [--threads 1]``.

Without ``--model`` it serves SmolLM2-135M GPTQ as the tests build it (cached under
$QUANTDESK_TEST_MODELS). One model is loaded once; the server runs in this process on a free port, as
``quantdesk serve`` runs it. Each round runs both sides on the same chat prompt, greedy, ``--tokens``
tokens: in process, ``model.generate`` on the prompt ids the server would build; through the API, a
plain ``httpx2`` stream of ``POST /v1/chat/completions`` counting content events (one per token). Runs
alternate (and alternate which goes first) so background load hits both alike; tokens/s is completion
tokens over the whole request time; time to first token is from the call (the request) to the first text.
The ratios compare the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import httpx2

from app.backends.base import GenerationStats, LoadedModel, LoadSettings, Sampling
from app.backends.gptqmodel import GPTQModelRules
from app.chat.profiles import ProfileStore
from app.chat.session_setup import LocalTarget, plan_local_chat
from app.chat.templates import ChatMessage, Role
from app.serve.app import ServeState
from app.serve.runner import ServerRunner
from app.serve.setup import model_id, served_model

QUESTION = "Write a long story about a lighthouse keeper and a storm."
TOKENS_TARGET = 0.95
TTFT_TARGET_MS = 20.0


def _in_process(model: LoadedModel, ids: list[int], tokens: int) -> tuple[int, float, float]:
    sampling = Sampling(temperature=0, max_new_tokens=tokens)
    start = time.perf_counter()
    first = 0.0
    stats: GenerationStats | None = None
    for item in model.generate(ids, sampling, (), threading.Event()):
        if isinstance(item, GenerationStats):
            stats = item
        elif not first:
            first = time.perf_counter() - start
    seconds = time.perf_counter() - start
    assert stats is not None
    return stats.new_tokens, seconds, first


def _api(client: httpx2.Client, url: str, body: dict[str, object]) -> tuple[int, float, float]:
    start = time.perf_counter()
    first = 0.0
    tokens = 0
    with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = int(event["usage"]["completion_tokens"])
            elif event["choices"] and event["choices"][0]["delta"].get("content") and not first:
                first = time.perf_counter() - start
    return tokens, time.perf_counter() - start, first


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print each run and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a GPTQ model folder (default SmolLM2)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (on a busy 2-core machine 2 ran 20x slower)"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    model_dir = args.model
    if model_dir is None:
        from tests.models.build import ensure_built
        from tests.models.fixtures import SMOLLM2_BRANCH

        model_dir = ensure_built("smollm2") / SMOLLM2_BRANCH
    plan = plan_local_chat(LocalTarget(model_dir), profiles=ProfileStore())
    model = GPTQModelRules().load(model_dir, LoadSettings(device="cpu"))
    served = served_model(plan, model)
    ids = served.chat_prompt([ChatMessage(Role.USER, QUESTION)])
    state = ServeState(model_id(plan))
    state.set_loaded(served)
    runner = ServerRunner(state, port=0)
    url = runner.start() + "/chat/completions"
    body: dict[str, object] = {
        "model": state.model_id,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": args.tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    local: list[tuple[int, float, float]] = []
    remote: list[tuple[int, float, float]] = []
    try:
        with httpx2.Client(timeout=600) as client:
            _api(client, url, body)  # warm-up: the first forward pass and connection
            _in_process(model, ids, args.tokens)
            for r in range(args.rounds):
                order = ("local", "api") if r % 2 == 0 else ("api", "local")
                for side in order:
                    if side == "local":
                        local.append(_in_process(model, ids, args.tokens))
                        run = local[-1]
                    else:
                        remote.append(_api(client, url, body))
                        run = remote[-1]
                    n, seconds, first = run
                    rate = n / seconds
                    print(
                        f"round {r + 1} {side:5s}: {n} tokens in {seconds:.3f} s = {rate:6.1f} tokens/s, "
                        f"first token {first * 1000:6.1f} ms"
                    )
    finally:
        runner.stop()
        model.unload()
    local_tps = statistics.median(n / s for n, s, _ in local)
    api_tps = statistics.median(n / s for n, s, _ in remote)
    added_ttft_ms = (
        statistics.median(f for _, _, f in remote) - statistics.median(f for _, _, f in local)
    ) * 1000
    ratio = api_tps / local_tps
    print(f"in-process {local_tps:.1f} tokens/s, through the API {api_tps:.1f} tokens/s")
    print(f"tokens/s ratio API / in-process: {ratio:.3f} (target >= {TOKENS_TARGET})")
    print(f"API's added time to first token: {added_ttft_ms:.1f} ms (target <= {TTFT_TARGET_MS:.0f} ms)")
    return 0 if ratio >= TOKENS_TARGET and added_ttft_ms <= TTFT_TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
