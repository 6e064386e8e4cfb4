"""Finding a model without knowing its repo id: the Models page's search-or-open box and results list."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt, QTimer
from pytestqt.qtbot import QtBot

from app.catalog.fit import FitStatus
from app.catalog.search_fit import GlanceFit
from app.catalog.search_query import SortKey
from app.ui.main_window import MainWindow
from app.ui.models.branch_model import FIT_ROLE
from app.ui.models.fit_glances import FIT_WORKERS
from app.ui.models.search_panel import SearchPanel
from app.ui.models.search_results import COLUMN_INDEX
from app.ui.settings import UiSettings
from tests.fixtures.hub_search_repos import search_repo_metadata
from tests.hub_emulator import Faults, HubEmulator
from tests.hub_emulator.search import _all_repo_ids
from tests.ui.conftest import WAIT_MS, _drain_pool

CHAT_70B = "TheBloke/Llama-2-70B-Chat-GPTQ"
BASE_70B = "meta-llama/Llama-2-70b-hf"


def _search_requests(hub: HubEmulator) -> list[dict[str, list[str]]]:
    return [r.query for r in hub.requests if r.path == "/api/models"]


def _rows(panel: SearchPanel) -> list[str]:
    return [h.repo_id for h in panel.model.hits]


def _type_and_wait(qtbot: QtBot, window: MainWindow, text: str) -> SearchPanel:
    page = window.models_page
    line = page.repo_bar.box.lineEdit()
    assert line is not None
    with qtbot.waitSignal(page.search_panel.results_shown, timeout=WAIT_MS):
        qtbot.keyClicks(line, text)
    return page.search_panel


def _search(qtbot: QtBot, window: MainWindow, text: str) -> SearchPanel:
    panel = window.models_page.search_panel
    with qtbot.waitSignal(panel.results_shown, timeout=WAIT_MS):
        window.models_page.search(text)
    return panel


def test_typing_words_searches_once_and_ranks_by_downloads(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    panel = _type_and_wait(qtbot, window, "llama 70b gptq")
    page = window.models_page
    assert page.stack.currentWidget() is panel
    meta = search_repo_metadata()
    expected = sorted(
        (r for r in meta if all(w in r.lower() for w in ("llama", "70b", "gptq"))),
        key=lambda r: -meta[r]["downloads"],
    )
    assert _rows(panel) == expected
    assert _rows(panel)[:2] == [CHAT_70B, "TheBloke/Llama-2-70B-GPTQ"]
    # Debounced: fourteen key presses, one request, with the words as typed and only the shown fields.
    requests = _search_requests(hub)
    assert len(requests) == 1
    assert requests[0]["search"] == ["llama 70b gptq"] and requests[0]["sort"] == ["downloads"]
    assert "gptq" not in requests[0].get("filter", [])  # the words already say GPTQ
    assert set(requests[0]["expand"]) >= {"downloads", "likes", "lastModified", "tags"}
    row = panel.model.row_of(CHAT_70B)
    assert panel.model.index(row, COLUMN_INDEX["downloads"]).data() == "95.3k"
    assert panel.model.index(row, COLUMN_INDEX["tags"]).data() == "GPTQ"
    assert panel.model.index(row, COLUMN_INDEX["base"]).data() == "meta-llama/Llama-2-70b-chat-hf"
    assert panel.model.index(row, COLUMN_INDEX["updated"]).data() == "2024-01-02"


def test_an_exact_repo_id_opens_instead_of_searching(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    page = window.models_page
    line = page.repo_bar.box.lineEdit()
    assert line is not None
    with qtbot.waitSignal(page.loading_finished, timeout=WAIT_MS):
        qtbot.keyClicks(line, "TheBloke/TinyLlama-GPTQ")
        qtbot.keyClick(line, Qt.Key.Key_Return)
    assert page.stack.currentWidget() is page.table
    assert page.table.proxy.rowCount() == 8
    qtbot.wait(500)  # longer than the debounce: typing an id never started a search
    # The only /api/models request is the look-up of the open repo's base model (by its author).
    assert all(q.get("author") == ["TheBloke"] for q in _search_requests(hub))


def test_gptq_only_switch_and_paging_as_the_user_scrolls(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    panel = _search(qtbot, window, "thebloke")
    gptq = _rows(panel)
    assert gptq and all("gptq" in r.lower() for r in gptq)
    assert _search_requests(hub)[-1]["filter"] == ["gptq"]
    with qtbot.waitSignal(panel.results_shown, timeout=WAIT_MS):
        panel.gptq_switch.setChecked(False)
    everything = sum(1 for r in _all_repo_ids(hub.store) if "thebloke" in r.lower())
    assert everything > 30 and panel.model.rowCount() == 30  # one page
    assert panel.model.canFetchMore()
    with qtbot.waitSignal(panel.page_appended, timeout=WAIT_MS):
        panel.table.scrollToBottom()
    assert panel.model.rowCount() == everything
    assert not panel.model.canFetchMore()
    assert "cursor" in _search_requests(hub)[-1]  # the second page followed the Hub's Link header
    assert len(set(_rows(panel))) == everything


def test_sort_selector_asks_the_hub_for_another_order(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    panel = _search(qtbot, window, "llama 70b gptq")
    with qtbot.waitSignal(panel.results_shown, timeout=WAIT_MS):
        panel.sort_box.setCurrentIndex(panel.sort_box.findData(SortKey.MODIFIED.value))
    assert _search_requests(hub)[-1]["sort"] == ["lastModified"]
    dates = [h.last_modified or 0 for h in panel.model.hits]
    assert dates == sorted(dates, reverse=True) and len(set(dates)) > 1


def test_open_a_result_then_back_to_the_same_results(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    panel = _search(qtbot, window, "llama 70b gptq")
    rows = _rows(panel)
    page = window.models_page
    index = panel.model.index(panel.model.row_of(CHAT_70B), 0)
    with qtbot.waitSignal(page.loading_finished, timeout=WAIT_MS):
        panel.table.activated.emit(index)  # what Enter and a double-click emit
    assert page.stack.currentWidget() is page.table
    assert page.catalog is not None and page.catalog.repo_id == CHAT_70B
    assert page.table.proxy.rowCount() == 8
    assert page.header.back_button.isVisible()
    searches = len(_search_requests(hub))
    page.header.back_button.click()
    assert page.stack.currentWidget() is panel
    assert _rows(panel) == rows
    assert len(_search_requests(hub)) == searches  # Back shows the results kept, no new search
    # Enter on the selected row opens it too.
    panel.table.selectRow(panel.model.row_of("TheBloke/Llama-2-70B-GPTQ"))
    with qtbot.waitSignal(page.loading_finished, timeout=WAIT_MS):
        assert panel.open_selected()
    assert page.catalog is not None and page.catalog.repo_id == "TheBloke/Llama-2-70B-GPTQ"


def test_quantized_versions_of_a_base_model_gptq_first(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    page = window.models_page
    panel = page.search_panel
    panel.gptq_switch.setChecked(False)
    panel = _search(qtbot, window, "llama-2-70b-hf")
    panel.table.selectRow(panel.model.row_of(BASE_70B))
    assert panel.versions_button.isEnabled()
    with qtbot.waitSignal(panel.results_shown, timeout=WAIT_MS):
        panel.versions_button.click()
    assert panel.title.text() == f"Quantized versions of {BASE_70B}"
    meta = search_repo_metadata()
    quantized = {r for r, m in meta.items() if m.get("cardData", {}).get("base_model") == BASE_70B}
    while True:
        # The view fetches pages itself as they scroll into sight: wait for the one in flight, if any
        # (while it is, canFetchMore() says no although more pages are coming).
        qtbot.waitUntil(lambda: not panel.model.loading_more, timeout=WAIT_MS)
        if not panel.model.canFetchMore():
            break
        with qtbot.waitSignal(panel.page_appended, timeout=WAIT_MS):
            panel.model.fetchMore()
    rows = _rows(panel)
    assert set(rows) == quantized
    tagged = [r for r in rows if "gptq" in meta[r]["tags"]]
    assert rows[: len(tagged)] == tagged  # the GPTQ-tagged uploads come first
    assert "TheBloke/Llama-2-70B-GGUF" in rows[len(tagged) :]
    assert any(f"base_model:quantized:{BASE_70B}" in q.get("filter", []) for q in _search_requests(hub))


def test_quantized_versions_from_an_open_repo(qtbot: QtBot, window: MainWindow, hub: HubEmulator) -> None:
    page = window.models_page
    with qtbot.waitSignal(page.loading_finished, timeout=WAIT_MS):
        page.open_repo("TheBloke/Llama-2-70B-GPTQ")
    qtbot.waitUntil(page.header.versions_button.isVisible, timeout=WAIT_MS)  # its base model was looked up
    with qtbot.waitSignal(page.search_panel.results_shown, timeout=WAIT_MS):
        page.header.versions_button.click()
    rows = _rows(page.search_panel)
    assert page.stack.currentWidget() is page.search_panel
    assert rows[0] == "TheBloke/Llama-2-70B-GPTQ" and "ModelCloud/Llama-2-70b-hf-gptq-4bit" in rows


def test_fit_badges_fill_in_for_visible_rows_with_bounded_concurrency(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    page = window.models_page
    page.search_panel.table.setFixedHeight(140)  # a few rows visible
    in_flight: list[int] = []
    sampler = QTimer()
    sampler.timeout.connect(lambda: in_flight.append(page.search_panel.fits_in_flight))
    sampler.start(2)
    panel = _search(qtbot, window, "llama 70b gptq")
    row = panel.model.row_of(CHAT_70B)
    fit_index = panel.model.index(row, COLUMN_INDEX["fit"])
    assert fit_index.data() == "—"  # until known
    qtbot.waitUntil(lambda: isinstance(panel.model.fit_of(CHAT_70B), GlanceFit), timeout=WAIT_MS)
    fit = panel.model.fit_of(CHAT_70B)
    assert isinstance(fit, GlanceFit)
    assert fit_index.data(FIT_ROLE) == FitStatus.CPU_ONLY  # no GPU here: judged against RAM
    assert fit.branch == "gptq-3bit--1g-actorder_True"  # the smallest of the eight branches
    assert panel.model.index(row, COLUMN_INDEX["need"]).data().endswith("MiB")
    visible = panel._visible_rows()
    qtbot.waitUntil(lambda: panel.fits_in_flight == 0, timeout=WAIT_MS)
    sampler.stop()
    assert max(in_flight) <= FIT_WORKERS
    read = {
        r.path.split("/")[3] + "/" + r.path.split("/")[4] for r in hub.requests if r.path.endswith("/refs")
    }
    shown = {panel.model.hits[r].repo_id for r in visible}
    assert read and read <= shown  # only visible rows were read
    hidden = set(_rows(panel)) - shown
    assert hidden and not (read & hidden)
    # A metadata-only result says why it has no verdict.
    metadata_only = next(r for r in shown if r not in (CHAT_70B, "TheBloke/Llama-2-70B-GPTQ"))
    reason = panel.model.fit_of(metadata_only)
    assert isinstance(reason, str) and "has no branches" in reason


def test_planning_change_rejudges_fits_without_the_network(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    panel = _search(qtbot, window, "llama 70b gptq")
    qtbot.waitUntil(lambda: isinstance(panel.model.fit_of(CHAT_70B), GlanceFit), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: panel.fits_in_flight == 0, timeout=WAIT_MS)
    _drain_pool()
    hub.requests.clear()
    page = window.models_page
    page.planning.plan_box.setText("24")
    page.planning.plan_box.editingFinished.emit()
    fit = panel.model.fit_of(CHAT_70B)
    assert isinstance(fit, GlanceFit) and fit.status is FitStatus.FITS
    assert "GPU 0" in fit.message
    assert [r for r in hub.requests if "/refs" in r.path] == []


def test_offline_the_last_results_come_back_marked_stale(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _rows(_search(qtbot, window, "llama 70b gptq"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    panel = _search(qtbot, window, "llama 70b gptq")
    assert _rows(panel) == rows
    assert panel.status_label.property("stale") is True
    assert "Offline" in panel.status_label.text() and "Could not reach the Hub" in panel.status_label.text()
    assert not window.banner.isVisible()


@pytest.mark.parametrize(
    ("faults", "endpoint", "expected"),
    [
        (Faults(path_contains="/api/models", fail_first=1, fail_status=429), None, "limiting how fast"),
        (
            Faults(path_contains="/api/models", fail_first=1, fail_status=400),
            None,
            "did not accept the search",
        ),
        (Faults(), "http://127.0.0.1:9", "Could not reach the Hub"),
    ],
)
def test_search_errors_end_in_one_sentence(
    qtbot: QtBot,
    window: MainWindow,
    hub: HubEmulator,
    monkeypatch: pytest.MonkeyPatch,
    faults: Faults,
    endpoint: str | None,
    expected: str,
) -> None:
    hub.faults = faults
    if endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
    panel = _search(qtbot, window, "llama 70b gptq")
    assert window.banner.isVisible()
    message = window.banner.message.text()
    assert expected in message and "Traceback" not in message
    assert expected not in panel.status_label.text()  # said once, in the banner
    assert panel.model.rowCount() == 0
    window.banner.dismiss()
    hub.faults = Faults()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    assert _rows(_search(qtbot, window, "llama 70b gptq"))  # the page stays usable


def test_an_outdated_search_never_replaces_a_newer_one(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    hub.faults = Faults(path_contains="/api/models", latency_s=0.4)
    panel = window.models_page.search_panel
    shown: list[str] = []
    panel.results_shown.connect(lambda: shown.append(panel.title.text()))
    window.models_page.search("mistral")
    qtbot.wait(100)
    with qtbot.waitSignal(panel.results_shown, timeout=WAIT_MS):
        window.models_page.search("llama 70b gptq")
    _drain_pool()
    qtbot.wait(50)
    assert shown == ["Results for 'llama 70b gptq'"]
    assert _rows(panel)[0] == CHAT_70B


def test_a_failed_repo_id_is_not_kept_in_the_recent_list(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    page = window.models_page
    with qtbot.waitSignal(page.loading_finished, timeout=WAIT_MS):
        page.open_repo("TheBloke/Nope-GPTQ")
    assert "TheBloke/Nope-GPTQ" not in UiSettings().repo_history
    assert "TheBloke/Nope-GPTQ" not in [
        page.repo_bar.box.itemText(i) for i in range(page.repo_bar.box.count())
    ]


def test_a_bad_id_is_reported_once(qtbot: QtBot, window: MainWindow, hub: HubEmulator) -> None:
    page = window.models_page
    assert page.open_repo("https://example.com/org/name") is False
    qtbot.waitUntil(window.banner.isVisible)
    assert "only huggingface.co URLs" in window.banner.message.text()
    assert "huggingface.co URLs" not in page.header.status_label.text()  # not repeated inline


def test_words_to_a_downloaded_branch(qtbot: QtBot, window: MainWindow, hub: HubEmulator) -> None:
    """The issue's journey: type words, see the fit, open the top result, download its smallest branch."""
    from app.ui.downloads_controller import JobState
    from tests.ui.test_downloads import _click_download

    panel = _type_and_wait(qtbot, window, "llama 70b gptq")
    qtbot.waitUntil(lambda: isinstance(panel.model.fit_of(CHAT_70B), GlanceFit), timeout=WAIT_MS)
    fit = panel.model.fit_of(CHAT_70B)
    assert isinstance(fit, GlanceFit) and fit.branch is not None
    page = window.models_page
    panel.table.selectRow(panel.model.row_of(CHAT_70B))
    with qtbot.waitSignal(page.loading_finished, timeout=WAIT_MS):
        qtbot.keyClick(panel.table, Qt.Key.Key_Return)
    assert page.catalog is not None and page.catalog.repo_id == CHAT_70B
    _click_download(qtbot, window, fit.branch)
    job = window.controller.job(f"{CHAT_70B}:{fit.branch}")
    assert job is not None
    qtbot.waitUntil(lambda: job.state is JobState.DONE, timeout=WAIT_MS)


def test_enter_searches_at_once_with_one_request(qtbot: QtBot, window: MainWindow, hub: HubEmulator) -> None:
    page = window.models_page
    line = page.repo_bar.box.lineEdit()
    assert line is not None
    line.setText("llama 70b gptq")  # as if pasted: no typing, no debounce
    with qtbot.waitSignal(page.search_panel.results_shown, timeout=WAIT_MS):
        qtbot.keyClick(line, Qt.Key.Key_Return)
    qtbot.wait(500)  # longer than the debounce
    assert len(_search_requests(hub)) == 1
    assert _rows(page.search_panel)[0] == CHAT_70B
