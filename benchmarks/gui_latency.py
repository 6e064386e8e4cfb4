"""Benchmark: the GUI never freezes. A QTimer probe measures the longest event-loop stall while a
catalog loads (cold: first Hub access, huggingface_hub imported on a worker) and while throttled
downloads run with progress on screen. The Hub emulator runs in a child process, as the real Hub is
remote: its server threads would otherwise compete with the GUI for this process's GIL.

Target (issue 6): longest stall < 50 ms in each scenario. Run: ``.venv/bin/python benchmarks/gui_latency.py``
(offscreen unless QT_QPA_PLATFORM says otherwise; ``--chat`` runs only the chat case, ``--search`` only the
search case). Prints the figures and PASS/FAIL.

The search case (issue 14): at 100 ms emulated latency per request, "llama 70b gptq" is searched on the
Models page; the probe runs until the results and the fit badges of every visible GPTQ row are shown.
Targets: longest stall < 50 ms, and the first results drawn (the results view's first paint with rows)
within one request's latency + 100 ms of the search starting. The first search of a session also
imports huggingface_hub on its worker; it is reported separately, and the target applies from the
second search on (a new query, nothing cached).

The chat case (issue 7): SmolLM2-135M GPTQ (the test model, built and cached by ``tests/models/build.py``)
loaded on the chat page's thread streams a greedy reply in a new chat while the probe runs. Targets:
longest stall < 50 ms (the worst of every measured reply), and tokens/s seen by the GUI (reply tokens /
time from Send to the reply shown complete) at least 0.95 of the backend alone (the same prompt ids
through ``model.generate`` on the chat thread while the GUI thread waits). Rounds alternate the two,
after a warm-up of each; each round is a pair (backend alone, then the GUI), and the verdict is the
median of the pairs' ratios: this shared CPU's speed drifts by 15 % from one reply to the next, and a
ratio taken within a pair cancels that drift where a ratio of the two medians does not (printed too).

The long-conversation case (issue 13): a saved 1,000-message conversation opened on the chat page, timed
on the GUI thread from the click to the transcript painted (the median of several opens, alternating
with another conversation so each one lays out afresh). Target < 100 ms. ``--open`` runs only this case;
``--chat`` runs both chat cases (``--chat --tiny``: the chat case on the tiny Llama GPTQ instead, when
SmolLM2 is too slow on a busy CPU).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gui_env import remote_hub
from tests.hub_emulator import Faults

TARGET_MS = 50.0
TICK_MS = 5
HUB_LATENCY_S = 0.05  # per request, like a real connection to the Hub
THROTTLE_BPS = 120_000  # per download connection to the CDN


class StallProbe:
    """A 5 ms QTimer; a late tick means the event loop was blocked for the difference."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.gaps: list[float] = []
        self.when: list[float] = []  # seconds since start() of each tick
        self._started = 0.0
        self._last = 0.0
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.gaps.clear()
        self.when.clear()
        self._started = self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now - self._last) * 1000 - TICK_MS)
        self.when.append(now - self._started)
        self._last = now

    def worst(self, count: int = 3) -> str:
        """The longest stalls and when they ended, e.g. '35 ms @ 0.05 s'."""
        ranked = sorted(zip(self.gaps, self.when, strict=True), reverse=True)[:count]
        return ", ".join(f"{gap:.0f} ms @ {at:.2f} s" for gap, at in ranked)

    def summary(self) -> tuple[float, float, int]:
        """(longest stall ms, 99th percentile ms, ticks)."""
        if not self.gaps:
            return 0.0, 0.0, 0
        ordered = sorted(self.gaps)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return max(0.0, ordered[-1]), max(0.0, p99), len(ordered)


@dataclass
class Result:
    """One scenario's figures."""

    name: str
    longest_ms: float
    p99_ms: float
    ticks: int
    seconds: float
    worst: str
    completed: bool = True

    @property
    def passed(self) -> bool:
        """Whether the stall target was met and the scenario did what it should."""
        return self.completed and self.longest_ms < TARGET_MS


def run_scenario(name: str, start: Callable[[], None], done: Callable[[], bool], timeout_s: float) -> Result:
    """Run the event loop from ``start()`` until ``done()`` (plus 200 ms), probing stalls."""
    from PySide6.QtCore import QEventLoop, QTimer

    probe = StallProbe()
    loop = QEventLoop()
    began = time.perf_counter()

    def check() -> None:
        if done() or time.perf_counter() - began > timeout_s:
            checker.stop()
            QTimer.singleShot(200, loop.quit)

    checker = QTimer()
    checker.setInterval(20)
    checker.timeout.connect(check)
    probe.start()
    QTimer.singleShot(0, start)
    checker.start()
    loop.exec()
    probe.stop()
    longest, p99, ticks = probe.summary()
    return Result(name, longest, p99, ticks, time.perf_counter() - began, probe.worst(), done())


SEARCH_LATENCY_S = 0.1
SEARCH_FIRST_RESULTS_TARGET_S = SEARCH_LATENCY_S + 0.1


def search_scenario(window: object, hub: object) -> tuple[list[Result], list[tuple[str, float]]]:
    """Search on the Models page: (stall results, [(label, seconds to the first drawn results)])."""
    from PySide6.QtCore import QEvent, QObject

    from app.ui.main_window import MainWindow
    from benchmarks.gui_env import RemoteHub

    assert isinstance(window, MainWindow) and isinstance(hub, RemoteHub)
    page = window.models_page
    panel = page.search_panel
    view = panel.table.viewport()
    hub.set_faults(Faults(latency_s=SEARCH_LATENCY_S))
    state: dict[str, float] = {}

    class FirstPaint(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint and panel.model.rowCount() and "drawn" not in state:
                state["drawn"] = time.perf_counter()
            return False

    watcher = FirstPaint()
    view.installEventFilter(watcher)

    def visible_fits_done() -> bool:
        if "drawn" not in state or panel.is_searching or panel.fits_in_flight:
            return False
        rows = [panel.model.hits[r] for r in panel._visible_rows()]
        return all(panel.model.fit_of(h.repo_id) is not None for h in rows if h.is_gptq)

    results: list[Result] = []
    firsts: list[tuple[str, float]] = []
    for label, words in (("first search of the session", "mistral"), ("search", "llama 70b gptq")):
        state.clear()

        def start(w: str = words) -> None:
            state["start"] = time.perf_counter()
            page.search(w)

        result = run_scenario(f"{label} '{words}' + fit badges ({SEARCH_LATENCY_S * 1000:.0f} ms/request)",
                              start, visible_fits_done, 60)  # fmt: skip
        result.completed &= panel.model.rowCount() > 0
        results.append(result)
        firsts.append((f"{label} '{words}'", state.get("drawn", float("inf")) - state["start"]))
    view.removeEventFilter(watcher)
    return results, firsts


CHAT_PROMPT = "Write a short story about a fox who learns to fly."
CHAT_TOKENS = 32  # SmolLM2 makes about one token a second on a 2-core CPU
RATIO_TARGET = 0.95


CHAT_ROUNDS = 9  # measured rounds after a warm-up of each (SmolLM2: 10 s a reply; one pair varies by 10 %)
CHAT_ROUNDS_TINY = 9  # the tiny Llama answers in a quarter of a second: more rounds, a steadier median


def chat_scenario() -> tuple[Result, list[float], list[float]]:
    """The chat page streaming replies: (stall result over every measured reply, GUI tokens/s per round,
    backend-alone tokens/s per round), over :data:`CHAT_ROUNDS` (tiny: :data:`CHAT_ROUNDS_TINY`) rounds
    that alternate the two contenders."""
    import threading

    from PySide6.QtCore import QTimer

    from app.backends.base import GenerationStats
    from app.chat.profiles import ModelSettings, ProfileStore, local_profile_key
    from app.ui.app import create_application
    from app.ui.chat import ChatPage
    from app.ui.error_center import ErrorCenter
    from app.ui.settings import UiSettings
    from benchmarks.gui_env import pump, wait_until
    from tests.models.build import ensure_built
    from tests.models.fixtures import SMOLLM2_BRANCH

    create_application()
    if "--tiny" in sys.argv[1:]:  # the tiny Llama: the same GUI path, a backend fast enough on a busy CPU
        from tests.models.fixtures import TINY_MAIN

        folder = ensure_built("tiny") / TINY_MAIN
    else:
        folder = ensure_built("smollm2") / SMOLLM2_BRANCH
    ProfileStore().update(
        "local",
        local_profile_key(folder)[1],
        ModelSettings(context_length=2048, temperature=0.0, max_new_tokens=CHAT_TOKENS),
    )
    page = ChatPage(UiSettings(), ErrorCenter())
    page.resize(1360, 860)
    page.show()
    page.add_model_folder(folder, "SmolLM2-135M-Instruct")
    done: dict[str, object] = {}
    page.load_finished.connect(lambda ok: done.__setitem__("loaded", ok))
    page.reply_done.connect(lambda outcome: done.__setitem__("reply", outcome))
    page.load_selected()
    wait_until(lambda: "loaded" in done, 300)
    assert done["loaded"] is True, [r.message for r in page.errors.history]

    def fresh_chat() -> None:
        # Every reply answers the same prompt in a new chat (the page may have reopened a long one): the
        # same tokens in as the backend-alone runs, so the two differ only by the app around the model.
        page.new_chat()
        wait_until(lambda: page.state is not None and not page.state.conversation.messages, 30)
        wait_until(lambda: page.state is not None and page.state.budget is not None, 30)

    fresh_chat()
    # The backend alone: the exact prompt the page will send, on the chat thread the page runs it on (a
    # model run on another thread gets another OpenMP team: two teams of two on two cores slow each
    # other down), while this thread waits without processing events (the GUI does nothing).
    worker = page.controller.worker
    assert worker.session is not None and worker.model is not None
    session, model = worker.session, worker.model
    ids = list(session.preview_prompt(CHAT_PROMPT).token_ids)

    def alone() -> float:
        measured: list[float] = []
        finished = threading.Event()

        def run() -> None:
            try:
                began = time.perf_counter()
                items = list(
                    model.generate(ids, session.settings.sampling, session.stop_strings(), threading.Event())
                )
                stats = items[-1]
                assert isinstance(stats, GenerationStats)
                measured.append(stats.new_tokens / (time.perf_counter() - began))
            finally:
                finished.set()

        QTimer.singleShot(0, worker, run)  # queued to the worker's thread
        finished.wait(300)
        assert measured, "the backend-alone run did not finish"
        return measured[0]

    model_name = "tiny Llama" if "--tiny" in sys.argv[1:] else "SmolLM2"
    rounds = CHAT_ROUNDS_TINY if "--tiny" in sys.argv[1:] else CHAT_ROUNDS

    def gui() -> tuple[Result, float, int]:
        fresh_chat()
        pump(0.5)  # as while the user types: the window has drawn the new chat before Send
        done.pop("reply", None)
        result = run_scenario(
            f"chat reply streaming ({model_name} GPTQ, up to {CHAT_TOKENS} tokens, {rounds} replies)",
            lambda: page.send(CHAT_PROMPT),
            lambda: "reply" in done,
            300,
        )
        stats = getattr(done.get("reply"), "stats", None)
        timing = page.timing
        if not isinstance(stats, GenerationStats) or "done" not in timing:
            result.completed = False
            return result, 0.0, 0
        return result, stats.new_tokens / (timing["done"] - timing["sent"]), stats.new_tokens

    alone()  # warm-ups: the backend's first run, and the page's first reply
    gui()
    alone_tps: list[float] = []
    gui_tps: list[float] = []
    stalls: list[Result] = []
    tokens = 0
    for _ in range(rounds):
        alone_tps.append(alone())
        result, tps, tokens = gui()
        stalls.append(result)
        gui_tps.append(tps)
    page.shutdown()
    page.close()
    worst = max(stalls, key=lambda r: r.longest_ms)
    worst.completed = all(r.completed for r in stalls)
    worst.name += f", {tokens} tokens each"
    worst.ticks = sum(r.ticks for r in stalls)
    worst.seconds = sum(r.seconds for r in stalls)
    worst.p99_ms = max(r.p99_ms for r in stalls)
    print(
        "chat rounds, tokens/s: GUI "
        + ", ".join(_rate(x) for x in gui_tps)
        + "; backend alone "
        + ", ".join(_rate(x) for x in alone_tps)
    )
    return worst, gui_tps, alone_tps


def _rate(tokens_per_second: float) -> str:
    """Three significant digits: SmolLM2 makes about one token a second here, the tiny Llama a hundred."""
    return f"{tokens_per_second:.3g}"


OPEN_MESSAGES = 1000
OPEN_TARGET_MS = 100.0
OPEN_RUNS = 7


def open_scenario() -> float:
    """Median milliseconds on the GUI thread to open a 1,000-message conversation and paint it."""
    import statistics

    from PySide6.QtWidgets import QApplication

    from app.chat.conversation import Conversation
    from app.chat.storage import ChatStore
    from app.chat.templates import Role
    from app.ui.app import create_application
    from app.ui.chat import ChatPage
    from app.ui.error_center import ErrorCenter
    from app.ui.settings import UiSettings

    create_application()
    long = Conversation(title="Long")
    for i in range(OPEN_MESSAGES // 2):
        long.add(Role.USER, f"Question {i}: tell me **more** about foxes and where they live " * 2)
        long.add(Role.ASSISTANT, f"Answer {i}: the quick brown fox jumps over the lazy dog. " * 4)
    short = Conversation(title="Short")
    short.add(Role.USER, "Hello")
    with ChatStore() as store:
        store.sync(long)
        store.sync(short)
    page = ChatPage(UiSettings(), ErrorCenter())
    page.resize(1360, 860)
    page.show()
    QApplication.processEvents()
    times: list[float] = []
    for _ in range(OPEN_RUNS):
        page.open_conversation(short.id)
        page.repaint()
        QApplication.processEvents()
        began = time.perf_counter()
        page.open_conversation(long.id)
        QApplication.processEvents()  # the delayed layout, then the paint of what is on screen
        page.transcript.viewport().repaint()
        times.append((time.perf_counter() - began) * 1000)
        assert len(page.transcript.rows()) == OPEN_MESSAGES
    page.shutdown()
    page.close()
    return statistics.median(times)


def main() -> int:
    """Every scenario (``--chat``: the chat cases only, ``--open``: the long conversation only); exit 1
    if a target is missed."""
    if "--chat" in sys.argv[1:] or "--open" in sys.argv[1:]:
        import tempfile

        from benchmarks.gui_env import _isolate

        with tempfile.TemporaryDirectory(prefix="quantdesk-gui-") as tmp:
            _isolate(Path(tmp))
            opened = open_scenario()
            chat = chat_scenario() if "--chat" in sys.argv[1:] else None
            return report([], chat, opened=opened)
    search_only = "--search" in sys.argv[1:]
    chat = None
    firsts: list[tuple[str, float]] = []
    with remote_hub() as (hub, _home):
        import shiboken6

        from app.ui.app import create_application, create_window
        from app.ui.downloads_controller import JobState

        app = create_application()
        window = create_window()
        window.resize(1360, 860)
        window.show()
        window.start_background()
        while window.hardware is None:
            app.processEvents()
        page = window.models_page
        results: list[Result] = []
        if search_only:
            results, firsts = search_scenario(window, hub)
            window.close()
            shiboken6.delete(window)
            return report(results, None, firsts)
        hub.set_faults(Faults(latency_s=HUB_LATENCY_S))
        loaded = {"done": False}
        page.loading_finished.connect(lambda: loaded.__setitem__("done", True))
        for name, repo, rows in (
            ("catalog load (cold, 8 branches)", "TheBloke/TinyLlama-GPTQ", 8),
            ("catalog load (second repo)", "TheBloke/TinyChatML-GPTQ", 2),
        ):
            loaded["done"] = False
            result = run_scenario(name, lambda r=repo: page.open_repo(r), lambda: loaded["done"], 60)
            result.completed &= page.table.proxy.rowCount() == rows
            results.append(result)

        hub.set_faults(Faults(throttle_bps=THROTTLE_BPS, server="cdn"))
        downloads = [
            ("TheBloke/TinyChatML-GPTQ", "main"),
            ("TheBloke/TinyLlama-GPTQ", "gptq-4bit-32g-actorder_True"),
            ("TheBloke/TinyLlama-GPTQ", "gptq-8bit-32g-actorder_True"),
        ]
        window.controller.set_parallel(len(downloads))

        def start_downloads() -> None:
            window.show_page("Downloads")
            for repo, branch in downloads:
                window.download(repo, branch)

        def all_done() -> bool:
            jobs = list(window.controller.jobs.values())
            return len(jobs) == len(downloads) and all(j.state is JobState.DONE for j in jobs)

        name = f"{len(downloads)} downloads at {THROTTLE_BPS // 1000} kB/s each"
        results.append(run_scenario(name, start_downloads, all_done, 120))
        window.show_page("Models")
        search_results, firsts = search_scenario(window, hub)
        results.extend(search_results)
        window.close()
        shiboken6.delete(window)
        opened = open_scenario()
        chat = chat_scenario()
    return report(results, chat, firsts, opened)


def report(
    results: list[Result],
    chat: tuple[Result, list[float], list[float]] | None,
    firsts: list[tuple[str, float]] | None = None,
    opened: float | None = None,
) -> int:
    """Print the figures; 0 when every target is met."""
    ok = True
    if opened is not None:
        ok = opened < OPEN_TARGET_MS
        print(
            f"open a {OPEN_MESSAGES}-message conversation: {opened:.1f} ms on the GUI thread "
            f"(median of {OPEN_RUNS}; target < {OPEN_TARGET_MS:.0f} ms)  {'PASS' if ok else 'FAIL'}"
        )
    for index, (label, seconds) in enumerate(firsts or []):
        timed = index > 0  # the first search of a session also imports huggingface_hub
        met = seconds <= SEARCH_FIRST_RESULTS_TARGET_S
        ok &= met or not timed
        verdict = ("PASS" if met else "FAIL") if timed else "(not a target: includes the import)"
        print(
            f"{label}: first results drawn after {seconds * 1000:.0f} ms "
            f"(target <= {SEARCH_FIRST_RESULTS_TARGET_S * 1000:.0f} ms)  {verdict}"
        )
    if chat is not None:
        results = [*results, chat[0]]
    print(
        f"event-loop probe: {TICK_MS} ms QTimer; hub latency {HUB_LATENCY_S * 1000:.0f} ms per request "
        f"({SEARCH_LATENCY_S * 1000:.0f} ms in the search cases)"
    )
    for r in results:
        print(
            f"{r.name}: longest stall {r.longest_ms:.1f} ms, p99 {r.p99_ms:.1f} ms over {r.ticks} ticks "
            f"in {r.seconds:.2f} s (target < {TARGET_MS:.0f} ms)"
            f"{'' if r.completed else ' [did not complete]'}"
            f"  {'PASS' if r.passed else 'FAIL'}"
        )
        print(f"    worst: {r.worst}")
    if chat is not None:
        ok &= _report_chat_rates(chat[1], chat[2])
    return 0 if ok and all(r.passed for r in results) else 1


def _report_chat_rates(gui_tps: list[float], alone_tps: list[float]) -> bool:
    """Print the chat case's tokens/s figures; whether the median ratio within rounds meets the target."""
    import statistics

    if not gui_tps or len(gui_tps) != len(alone_tps) or min(alone_tps) <= 0:
        print("chat tokens/s: no complete rounds  FAIL")
        return False
    paired = [gui / alone for gui, alone in zip(gui_tps, alone_tps, strict=True)]
    ratio = statistics.median(paired)
    of_medians = statistics.median(gui_tps) / statistics.median(alone_tps)
    met = ratio >= RATIO_TARGET
    rounds = ", ".join(f"{r:.3f}" for r in paired)
    print(f"chat ratio per round (GUI / the backend alone just before it): {rounds}")
    print(
        f"chat tokens/s: GUI {_rate(statistics.median(gui_tps))}, backend alone "
        f"{_rate(statistics.median(alone_tps))} (ratio of the medians {of_medians:.3f}); median ratio within "
        f"a round {ratio:.3f} (target >= {RATIO_TARGET})  {'PASS' if met else 'FAIL'}"
    )
    return met


if __name__ == "__main__":
    sys.exit(main())
