"""The Models page against the Hub emulator: the table, live planning without network, sorting, details."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.catalog.vram import CacheType
from app.ui.main_window import MainWindow
from app.ui.models.branch_model import FIT_ROLE, SORT_ROLE, fit_status
from app.ui.settings import SUGGESTED_REPOS, UiSettings
from app.units import format_size
from tests.hub_emulator import HubEmulator
from tests.ui.conftest import TINY, WindowFactory, open_repo


def _cell(window: MainWindow, branch: str, key: str) -> str:
    model = window.models_page.model
    return str(model.index(model.row_of(branch), model.column_index(key)).data())


def test_open_repo_shows_every_branch_with_size_and_memory(qtbot: QtBot, window: MainWindow) -> None:
    open_repo(qtbot, window, TINY)
    page = window.models_page
    assert page.stack.currentWidget() is page.table
    assert page.table.proxy.rowCount() == 8
    names = [r.info.branch for r in page.model.rows]
    assert names[0] == "main" and "gptq-3bit--1g-actorder_True" in names and "fp16" in names
    for row in page.model.rows:
        assert _cell(window, row.info.branch, "size") == format_size(row.info.size_bytes)
        if row.info.is_gptq:
            # No GPU in the tests: GPTQModel plans a CPU run, so its memory is RAM.
            assert _cell(window, row.info.branch, "vram:gptqmodel").endswith(" RAM")
            status = fit_status(
                page.model.index(page.model.row_of(row.info.branch), page.model.column_index("fit")).data(
                    FIT_ROLE
                )
            )
            assert status is not None and status.value == "CPU only"
    # 3-bit cannot run on ExLlamaV2: the Backends cell says who can, the tooltip says why.
    three = page.model.row_of("gptq-3bit--1g-actorder_True")
    backends = page.model.index(three, page.model.column_index("backends"))
    assert backends.data() == "GPTQModel"
    assert "4-bit" in backends.data(Qt.ItemDataRole.ToolTipRole)
    assert "8 branches" in page.header.status_label.text()
    # The details pane follows the selection.
    assert page.select_branch("gptq-4bit-128g-actorder_False")
    assert page.details.title.text().endswith("gptq-4bit-128g-actorder_False")
    assert "group size 64" in page.details.warnings.text()  # the card disagrees with the files
    assert page.details.template_heading.text() == "Prompt template: Vicuna"
    assert page.details.chart.sizeHint().height() > 0


def test_context_and_cache_type_update_memory_without_network(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    open_repo(qtbot, window, TINY)
    page = window.models_page
    hub.requests.clear()
    before = _cell(window, "main", "vram:gptqmodel")
    exllama_before = page.model.rows[0].backend("exllamav2").vram
    page.planning.context_box.setValue(65536)
    after = _cell(window, "main", "vram:gptqmodel")
    assert after != before
    assert page.model.rows[0].context == 65536
    assert page.selected_row() is not None and page.selected_row().context == 65536  # type: ignore[union-attr]
    assert "65536 tokens" in page.details.fit.text()
    page.planning.cache_box.setCurrentIndex(page.planning.cache_box.findData(CacheType.Q4.value))
    exllama_after = page.model.rows[0].backend("exllamav2").vram
    assert exllama_before is not None and exllama_after is not None
    assert page.model.rows[0].backend("exllamav2").cache_type is CacheType.Q4
    assert exllama_after.kv_cache < page.model.rows[0].backend("gptqmodel").vram.kv_cache  # type: ignore[union-attr]
    page.planning.plan_box.setText("24,24")
    page.planning.plan_box.editingFinished.emit()
    assert page.model.hardware is not None and page.model.hardware.planned
    assert _cell(window, "main", "fit") == "Fits"
    qtbot.wait(300)
    assert hub.requests == []


def test_planned_gpus_keep_one_fit_column_and_the_status_bar_says_what_is_planned(
    qtbot: QtBot, window: MainWindow
) -> None:
    """Issue 11 item 15: with 24,24 each row had a red badge per GPU next to a green split and the status
    bar still said "Planning for the CPU"; the columns pushed Download and Description off-screen."""
    open_repo(qtbot, window, TINY)
    page = window.models_page
    columns_before = [c.key for c in page.model.columns]
    page.planning.plan_box.setText("24,24")
    page.planning.plan_box.editingFinished.emit()
    assert [c.key for c in page.model.columns] == columns_before  # no per-GPU columns
    assert "Planning for the CPU" not in window.hardware_label.text()
    assert "Planning for the GPUs you entered" in window.hardware_label.text()
    assert "GPU 1" in window.hardware_label.text()
    row = page.model.row_of("main")
    tooltip = page.model.index(row, page.model.column_index("fit")).data(Qt.ItemDataRole.ToolTipRole)
    assert "GPU 0" in tooltip and "GPU 1" in tooltip  # the per-GPU picture moved into the tooltip
    assert "GPU 1" in page.details.fit.text()
    page.planning.plan_box.setText("")
    page.planning.plan_box.editingFinished.emit()
    assert "Planning for the GPUs you entered" not in window.hardware_label.text()


def test_longest_prompt_changes_the_estimate_and_the_details_say_what_grows(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    open_repo(qtbot, window, TINY)
    page = window.models_page
    hub.requests.clear()
    page.planning.context_box.setValue(8192)
    page.planning.plan_box.setText("24")
    page.planning.plan_box.editingFinished.emit()
    assert page.model.rows[0].prompt == 2048  # default: a quarter of the context
    before = page.model.rows[0].backend("exllamav2").vram
    page.planning.prompt_box.setValue(512)
    after = page.model.rows[0].backend("exllamav2").vram
    assert page.model.rows[0].prompt == 512
    assert before is not None and after is not None
    assert after.kv_cache == before.kv_cache  # the cache depends on the context only
    assert after.prefill < before.prefill  # the prompt's transient shrinks with the prompt
    text = page.details.fit.text()
    assert "prompts up to 512 tokens" in text
    assert "grows with the context" in text and "grows with the longest prompt" in text and "fixed" in text
    qtbot.wait(300)
    assert hub.requests == []


def test_sorting_by_size(qtbot: QtBot, window: MainWindow) -> None:
    open_repo(qtbot, window, TINY)
    page = window.models_page
    column = page.model.column_index("size")
    page.table.sortByColumn(column, Qt.SortOrder.AscendingOrder)
    sizes = [page.table.proxy.index(r, column).data(SORT_ROLE) for r in range(page.table.proxy.rowCount())]
    assert sizes == sorted(sizes)
    page.table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    assert page.table.proxy.index(0, 0).data() == "fp16"  # the unquantized branch is the largest


def test_cached_table_appears_then_stale_marker_when_offline(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_repo(qtbot, window, TINY)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: the network is down
    page = window.models_page
    shown: list[bool] = []
    page.catalog_shown.connect(lambda catalog: shown.append(catalog.stale))
    with qtbot.waitSignal(page.loading_finished, timeout=30_000):
        page.refresh()
    assert shown[0] is True  # the cached table came first
    assert page.table.proxy.rowCount() == 8
    assert page.header.status_label.property("stale") is True
    assert (
        "Offline" in page.header.status_label.text()
        and "Could not reach the Hub" in page.header.status_label.text()
    )


def test_first_start_suggests_repos_and_history_is_kept(
    qtbot: QtBot, make_window: WindowFactory, hub: HubEmulator
) -> None:
    window = make_window()
    page = window.models_page
    assert page.stack.currentWidget() is page.placeholder
    assert [b.text() for b in page.placeholder.suggestion_buttons] == list(SUGGESTED_REPOS)
    assert [page.repo_bar.box.itemText(i) for i in range(page.repo_bar.box.count())] == list(SUGGESTED_REPOS)
    with qtbot.waitSignal(page.loading_finished, timeout=30_000):
        page.placeholder.suggestion_buttons[2].click()
    # The emulator does not host guanaco-13B: the page says so and stays usable.
    assert "was not found" in window.banner.message.text()
    assert UiSettings().repo_history == []  # a repo that did not open is not a "recent" one
    open_repo(qtbot, window, TINY)
    open_repo(qtbot, window, SUGGESTED_REPOS[0])  # the emulator hosts Llama-2-70B (tiny weights)
    assert UiSettings().repo_history[:2] == [SUGGESTED_REPOS[0], TINY]
    open_repo(qtbot, window, TINY)
    window.close()
    # A restart reopens the last repo from the cache at once.
    again = make_window()
    qtbot.waitUntil(lambda: again.models_page.table.proxy.rowCount() == 8, timeout=30_000)
    assert again.models_page.repo_bar.box.currentText() == TINY


def test_gated_repo_without_token_shows_its_table_and_how_to_get_access(
    qtbot: QtBot, window: MainWindow
) -> None:
    open_repo(qtbot, window, "TheBloke/Gated-GPTQ")
    page = window.models_page
    assert page.stack.currentWidget() is page.table and page.table.proxy.rowCount() >= 1
    assert "gated" in page.header.status_label.text() and "token" in page.header.status_label.text()
