"""The model gate: one generation at a time, first come first served, a bounded line for the API.

The gate is the component under test; the model behind :class:`GatedModel` is the scripted test double
(tests/chat_fakes.py), which records when each generation ran.
"""

from __future__ import annotations

import threading
import time

import pytest

from app.backends.base import GenerationStats, Sampling, StopReason
from app.errors import ModelBusyError
from app.serve.gate import GatedModel, GateState, ModelGate, Owner
from tests.chat_fakes import ScriptedModel


def _take_turn_in_thread(gate: ModelGate, owner: Owner, order: list[int], number: int) -> threading.Thread:
    ticket = gate.reserve(owner)  # reserved now, in call order

    def run() -> None:
        assert gate.wait(ticket)
        order.append(number)
        time.sleep(0.01)
        gate.release(ticket)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_turns_go_first_come_first_served() -> None:
    gate = ModelGate(max_waiting=10)
    holder = gate.reserve(Owner.GUI)
    assert gate.wait(holder)
    order: list[int] = []
    threads = [_take_turn_in_thread(gate, Owner.API, order, n) for n in range(5)]
    time.sleep(0.05)
    assert order == []  # nobody passes the holder
    gate.release(holder)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert gate.state() == GateState(None, 0, 5)


def test_api_requests_past_the_bound_are_refused_with_a_wait_but_the_gui_never_is() -> None:
    gate = ModelGate(max_waiting=1)
    holder = gate.reserve(Owner.API)
    assert gate.wait(holder)
    waiting = gate.reserve(Owner.API)  # one may wait
    with pytest.raises(ModelBusyError) as refused:
        gate.reserve(Owner.API)
    assert refused.value.retry_after >= 1
    gui = gate.reserve(Owner.GUI)  # the chat window queues instead
    assert gate.state().waiting == 2
    for ticket in (holder, waiting, gui):
        gate.release(ticket)
    assert gate.state() == GateState(None, 0, 1)


def test_an_idle_gate_admits_a_request_even_with_no_waiting_room() -> None:
    gate = ModelGate(max_waiting=0)
    ticket = gate.reserve(Owner.API)
    assert gate.wait(ticket)
    gate.release(ticket)


def test_cancel_while_waiting_leaves_the_line_and_the_next_goes_on() -> None:
    gate = ModelGate()
    holder = gate.reserve(Owner.GUI)
    assert gate.wait(holder)
    quitter, patient = gate.reserve(Owner.API), gate.reserve(Owner.API)
    cancel = threading.Event()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(gate.wait(quitter, cancel)))
    thread.start()
    cancel.set()
    thread.join(2)
    assert result == [False]
    assert gate.state().waiting == 1
    gate.release(holder)
    assert gate.wait(patient, threading.Event())
    assert gate.state().generating is Owner.API


def test_listeners_hear_who_generates() -> None:
    gate = ModelGate()
    heard: list[GateState] = []
    unsubscribe = gate.subscribe(heard.append)
    ticket = gate.reserve(Owner.API)
    gate.wait(ticket)
    gate.release(ticket)
    unsubscribe()
    gate.release(gate.reserve(Owner.GUI))
    assert [s.generating for s in heard] == [None, Owner.API, None]
    assert heard[-1].api_requests == 1


def test_gated_models_never_generate_at_the_same_time() -> None:
    model = ScriptedModel(replies=[["a"] * 5, ["b"] * 5], chunk_delay=0.01)
    gate = ModelGate()
    spans: list[tuple[float, float]] = []

    def chat(owner: Owner) -> None:
        gated = GatedModel(model, gate, owner)
        items = gated.generate([5, 6], Sampling(), (), threading.Event())
        first = next(items)
        started = time.monotonic()
        assert first in ("a", "b")
        rest = list(items)
        spans.append((started, time.monotonic()))
        assert isinstance(rest[-1], GenerationStats)

    threads = [threading.Thread(target=chat, args=(owner,)) for owner in (Owner.GUI, Owner.API)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    (_, a_end), (b_start, _) = sorted(spans)
    assert a_end <= b_start
    assert gate.state() == GateState(None, 0, 1)


def test_a_gated_generation_cancelled_while_waiting_ends_cancelled_without_running() -> None:
    model = ScriptedModel()
    gate = ModelGate()
    holder = gate.reserve(Owner.API)
    gate.wait(holder)
    cancel = threading.Event()
    cancel.set()
    items = list(GatedModel(model, gate).generate([5], Sampling(), (), cancel))
    assert len(items) == 1 and isinstance(items[0], GenerationStats)
    assert items[0].stop_reason is StopReason.CANCELLED
    assert model.prompts == []  # the model never ran
    gate.release(holder)
