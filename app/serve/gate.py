"""The model gate: one loaded model, shared fairly by the chat window and the API (Qt-free).

Whoever wants to generate takes a ticket (:meth:`ModelGate.reserve`), waits for its turn
(:meth:`ModelGate.wait`) and gives it back (:meth:`ModelGate.release`). Turns go first come, first served,
one generation at a time, so the GUI's chat and an API request never run ``generate`` concurrently. API
tickets are bounded: past ``max_waiting`` waiting requests, :meth:`reserve` refuses at once with
:class:`~app.errors.ModelBusyError` (the server answers 429 with its ``retry_after``); the GUI's turn
is never refused, it queues like everyone else.

:class:`GatedModel` wraps a :class:`~app.backends.base.LoadedModel` so that its ``generate`` goes through
the gate: the chat engine and the GUI's worker use it unchanged. Listeners (:meth:`subscribe`) hear every
change of :class:`GateState`, from the thread that made it (a GUI marshals it onto its own thread).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from app.backends.base import GenerationStats, LoadedModel, Sampling, StopReason, Tokenizer
from app.errors import ModelBusyError

DEFAULT_MAX_WAITING: Final = 8
# How often a waiter looks at its cancel event (it is woken at once by every release).
_CANCEL_POLL_S: Final = 0.02
# Until a first generation was timed, a wait is estimated at this many seconds per request ahead.
_FIRST_GUESS_S: Final = 10.0


class Owner(StrEnum):
    """Who generates: the chat window or a request to the API."""

    GUI = "gui"
    API = "api"


@dataclass(frozen=True)
class GateState:
    """What the gate is doing now."""

    generating: Owner | None  # who holds the model, None when idle
    waiting: int  # tickets in line behind the holder
    api_requests: int  # API requests that got their turn since the gate was made


@dataclass(frozen=True, eq=False)
class Ticket:
    """A place in the line."""

    number: int
    owner: Owner


class ModelGate:
    """A FIFO line in front of one model; thread-safe."""

    def __init__(self, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        self.max_waiting = max(0, max_waiting)
        self._cond = threading.Condition(threading.RLock())
        self._line: deque[Ticket] = deque()
        self._holder: Ticket | None = None
        self._held_since = 0.0
        self._numbers = itertools.count(1)
        self._api_requests = 0
        self._mean_turn_s: float | None = None
        self._listeners: list[Callable[[GateState], None]] = []

    # -- state -------------------------------------------------------------------------------------

    def state(self) -> GateState:
        """The gate now."""
        with self._cond:
            return self._state()

    def _state(self) -> GateState:
        holder = self._holder.owner if self._holder is not None else None
        return GateState(holder, len(self._line), self._api_requests)

    def subscribe(self, listener: Callable[[GateState], None]) -> Callable[[], None]:
        """Call ``listener`` with every new state (from the changing thread); returns the unsubscribe."""
        with self._cond:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _announce(self, state: GateState) -> None:
        with self._cond:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(state)

    def retry_after(self) -> int:
        """Seconds a client refused now should wait: the line ahead times the mean turn (at least 1)."""
        with self._cond:
            ahead = len(self._line) + (1 if self._holder is not None else 0)
            per_turn = self._mean_turn_s if self._mean_turn_s is not None else _FIRST_GUESS_S
        return max(1, round(ahead * per_turn))

    # -- turns -------------------------------------------------------------------------------------

    def reserve(self, owner: Owner) -> Ticket:
        """A place at the end of the line. An API request past the bound is refused at once
        (ModelBusyError with ``retry_after``); the GUI is never refused."""
        with self._cond:
            busy = self._holder is not None or bool(self._line)
            if owner is Owner.API and busy and len(self._line) >= self.max_waiting:
                wait = self.retry_after()  # the Condition's lock is re-entrant
                raise ModelBusyError(
                    f"The model is busy: {len(self._line)} requests are already waiting.",
                    f"Retry in {wait} s.",
                    retry_after=wait,
                )
            ticket = Ticket(next(self._numbers), owner)
            self._line.append(ticket)
            state = self._state()
        self._announce(state)
        return ticket

    def wait(self, ticket: Ticket, cancel: threading.Event | None = None) -> bool:
        """Block until it is ``ticket``'s turn (True), or until ``cancel`` is set while it waits (False,
        the ticket leaves the line)."""
        with self._cond:
            got_turn = self._await_turn(ticket, cancel)
            state = self._state()
        self._announce(state)
        return got_turn

    def _await_turn(self, ticket: Ticket, cancel: threading.Event | None) -> bool:
        while not (self._holder is None and self._line and self._line[0] is ticket):
            if cancel is not None and cancel.is_set():
                if ticket in self._line:
                    self._line.remove(ticket)
                self._cond.notify_all()
                return False
            self._cond.wait(_CANCEL_POLL_S if cancel is not None else None)
        self._line.popleft()
        self._holder = ticket
        self._held_since = time.monotonic()
        if ticket.owner is Owner.API:
            self._api_requests += 1
        return True

    def release(self, ticket: Ticket) -> None:
        """End ``ticket``'s turn (or take it out of the line); the next in line goes on."""
        with self._cond:
            if self._holder is ticket:
                self._holder = None
                turn = time.monotonic() - self._held_since
                self._mean_turn_s = (
                    turn if self._mean_turn_s is None else 0.8 * self._mean_turn_s + 0.2 * turn
                )
            elif ticket in self._line:
                self._line.remove(ticket)
            else:
                return
            self._cond.notify_all()
            state = self._state()
        self._announce(state)


class GatedModel:
    """A :class:`LoadedModel` whose ``generate`` waits for its turn at a :class:`ModelGate`.

    Everything else (tokenizer, context length, unload) is the wrapped model's. The turn is taken when
    the reply starts streaming (the first ``next()``) and given back when it ends, however it ends.
    """

    def __init__(self, model: LoadedModel, gate: ModelGate, owner: Owner = Owner.GUI) -> None:
        self.inner = model
        self.gate = gate
        self.owner = owner
        self.backend: str = model.backend
        self.model_dir: Path = model.model_dir
        self.tokenizer: Tokenizer = model.tokenizer
        self.memory_bytes: int = model.memory_bytes
        self.load_seconds: float = model.load_seconds

    @property
    def context_length(self) -> int:
        """The wrapped model's context length."""
        return self.inner.context_length

    @context_length.setter
    def context_length(self, value: int) -> None:
        self.inner.context_length = value

    def generate(
        self, prompt: str | Sequence[int], sampling: Sampling, stop: Sequence[str], cancel: threading.Event
    ) -> Iterator[str | GenerationStats]:
        """The wrapped model's stream, once it is this caller's turn. Cancelled while waiting: a
        cancelled GenerationStats and nothing else."""
        started = time.perf_counter()
        ticket = self.gate.reserve(self.owner)
        try:
            if not self.gate.wait(ticket, cancel):
                prompt_tokens = len(prompt) if not isinstance(prompt, str) else 0
                seconds = time.perf_counter() - started
                yield GenerationStats(prompt_tokens, 0, seconds, 0.0, StopReason.CANCELLED)
                return
            yield from self.inner.generate(prompt, sampling, stop, cancel)
        finally:
            self.gate.release(ticket)

    def unload(self) -> None:
        """Unload the wrapped model."""
        self.inner.unload()
