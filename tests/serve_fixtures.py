"""A running QuantDesk server over a real loaded model, for the serve tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.backends.base import LoadedModel
from app.chat.profiles import ProfileStore
from app.chat.session_setup import LocalTarget, plan_local_chat
from app.serve.app import ServeState
from app.serve.gate import ModelGate
from app.serve.runner import ServerRunner
from app.serve.service import JobRecord
from app.serve.setup import model_id, served_model


@contextmanager
def running_server(
    model_dir: Path,
    model: LoadedModel | None,
    *,
    api_key: str | None = None,
    max_waiting: int = 8,
    host: str = "127.0.0.1",
    gate: ModelGate | None = None,
) -> Iterator[tuple[ServerRunner, ServeState]]:
    """A server on a free port serving ``model`` (planned from ``model_dir`` as ``quantdesk serve``
    does); ``model`` None: still loading."""
    plan = plan_local_chat(LocalTarget(model_dir), profiles=ProfileStore())
    state = ServeState(model_id(plan), gate or ModelGate(max_waiting), api_key)
    if model is not None:
        state.set_loaded(served_model(plan, model))
    runner = ServerRunner(state, host, 0)
    runner.start()
    try:
        yield runner, state
    finally:
        runner.stop()


def wait_for_records(state: ServeState, count: int, timeout: float = 180.0) -> list[JobRecord]:
    """The server's first ``count`` generation records, once all have ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = list(state.records)[:count]
        if len(records) == count and all(r.ended_at is not None for r in records):
            return records
        time.sleep(0.01)
    raise AssertionError(f"{count} generations did not end in {timeout} s: {list(state.records)}")
