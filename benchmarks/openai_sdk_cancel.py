"""Evidence for keeping QuantDesk's own remote engine rather than the official ``openai`` SDK.

Usage: ``.venv/bin/python -m benchmarks.openai_sdk_cancel``.

A server that accepts a connection and says nothing (a big model still reading a long prompt, a
stalled proxy) is asked for a streamed chat completion twice, and the caller gives up 0.5 s in:

- through the SDK, the only handle another thread has before the first byte is ``client.close()``;
- through :class:`~app.remote.engine.RemoteModel`, the chat engine's ``cancel`` event.

It prints how long each call took to return after the start. QuantDesk's Stop must end a reply within
one token; the SDK's call only returns when its timeout fires. It also prints the SDK's import time,
which ``quantdesk chat --endpoint`` and the window's "Test connection" would pay.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

from app.backends.base import GenerationStats, Sampling
from app.remote.engine import RemoteModel

GIVE_UP_AFTER_S = 0.5
SDK_TIMEOUT_S = 8.0


def _silent_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[object] = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    return server, server.getsockname()[1]


def _sdk(port: int) -> tuple[float, str]:
    import openai

    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=SDK_TIMEOUT_S
    )
    outcome: list[str] = []
    start = time.perf_counter()

    def call() -> None:
        try:
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            outcome.append("returned a stream")
        except Exception as exc:
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(GIVE_UP_AFTER_S)
    client.close()  # the caller gives up
    thread.join(SDK_TIMEOUT_S + 5)
    return time.perf_counter() - start, outcome[0] if outcome else "still running"


def _quantdesk(port: int) -> tuple[float, str]:
    model = RemoteModel(f"http://127.0.0.1:{port}/v1", "m")
    cancel = threading.Event()
    outcome: list[str] = []
    start = time.perf_counter()

    def call() -> None:
        items = list(model.generate("hi", Sampling(max_new_tokens=4), (), cancel))
        last = items[-1]
        outcome.append(f"ended {last.stop_reason}" if isinstance(last, GenerationStats) else "?")

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(GIVE_UP_AFTER_S)
    cancel.set()  # the user pressed Stop
    thread.join(SDK_TIMEOUT_S + 5)
    return time.perf_counter() - start, outcome[0] if outcome else "still running"


def main() -> int:
    """Run both and print the figures."""
    server, port = _silent_server()
    try:
        seconds, how = _sdk(port)
        print(f"openai SDK, client.close() after {GIVE_UP_AFTER_S} s: returned after {seconds:.2f} s ({how})")
        seconds, how = _quantdesk(port)
        print(
            f"QuantDesk RemoteModel, cancel after {GIVE_UP_AFTER_S} s: returned after {seconds:.2f} s ({how})"
        )
    finally:
        server.close()
    code = "import time; t = time.perf_counter(); import {m}; print(time.perf_counter() - t)"
    for module in ("httpx2", "openai"):
        out = subprocess.run([sys.executable, "-c", code.format(m=module)], capture_output=True, text=True)
        print(f"import {module}: {float(out.stdout.strip()) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
