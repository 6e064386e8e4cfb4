"""`quantdesk search` as a user runs it: a separate process against the local Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.hub_search_repos import search_repo_metadata
from tests.hub_emulator import Faults, HubEmulator

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, endpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_words_give_a_table_of_gptq_repos_ranked_by_downloads(hub: HubEmulator) -> None:
    result = _run("search", "llama", "70b", "gptq")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["Model", "Downloads", "Likes"]
    assert set(lines[1]) <= {"-", " "}
    repos = [line.split()[0] for line in lines[2:]]
    assert repos[:2] == ["TheBloke/Llama-2-70B-Chat-GPTQ", "TheBloke/Llama-2-70B-GPTQ"]
    meta = search_repo_metadata()
    assert [meta[r]["downloads"] for r in repos] == sorted(
        (meta[r]["downloads"] for r in repos), reverse=True
    )
    assert "95.3k" in lines[2] and "meta-llama/Llama-2-70b-chat-hf" in lines[2]


def test_json_with_options(hub: HubEmulator) -> None:
    result = _run("search", "llama", "--author", "TheBloke", "--sort", "likes", "--limit", "3", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 3 and all(r["author"] == "TheBloke" and r["is_gptq"] for r in rows)
    assert [r["likes"] for r in rows] == sorted((r["likes"] for r in rows), reverse=True)
    assert {"repo_id", "downloads", "likes", "last_modified", "tags", "gated", "base_model"} <= set(rows[0])
    query = next(r.query for r in reversed(hub.requests) if r.path == "/api/models")
    assert query["author"] == ["TheBloke"] and query["sort"] == ["likes"] and query["filter"] == ["gptq"]


def test_limit_pages_past_the_first_page(hub: HubEmulator) -> None:
    result = _run("search", "thebloke", "--all-formats", "--limit", "150", "--json")
    rows = json.loads(result.stdout)
    expected = sum(1 for r in search_repo_metadata() if r.startswith("TheBloke/")) + 5  # + the standard repos
    assert len(rows) == expected == len({r["repo_id"] for r in rows})
    assert any(r["repo_id"].endswith("-GGUF") for r in rows)


def test_base_model_lists_quantized_versions_gptq_first(hub: HubEmulator) -> None:
    result = _run("search", "--base-model", "meta-llama/Llama-2-70b-hf", "--all-formats", "--json")
    ids = [r["repo_id"] for r in json.loads(result.stdout)]
    assert ids[:2] == ["TheBloke/Llama-2-70B-GPTQ", "ModelCloud/Llama-2-70b-hf-gptq-4bit"]
    assert "TheBloke/Llama-2-70B-GGUF" in ids[2:]


def test_fit_reads_the_smallest_gptq_branch(hub: HubEmulator) -> None:
    result = _run("search", "Llama-2-70B-Chat", "--fit", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["repo_id"]: r for r in json.loads(result.stdout)}
    fit = rows["TheBloke/Llama-2-70B-Chat-GPTQ"]["fit"]
    assert fit["status"] == "CPU only" and fit["branch"] == "gptq-3bit--1g-actorder_True"
    assert fit["need_bytes"] > 0
    table = _run("search", "Llama-2-70B-Chat", "--fit", "--gpus", "24")
    assert "Fit" in table.stdout.splitlines()[0] and "Fits" in table.stdout


def test_nothing_found_and_errors_are_sentences(hub: HubEmulator) -> None:
    empty = _run("search", "zzz-no-such-model")
    assert empty.returncode == 0 and empty.stdout == ""
    assert "No models found for 'zzz-no-such-model' among GPTQ uploads" in empty.stderr
    hub.faults = Faults(path_contains="/api/models", fail_first=1, fail_status=429)
    limited = _run("search", "llama")
    assert limited.returncode == 1 and limited.stdout == ""
    assert (
        limited.stderr.startswith("error: The Hub is limiting how fast") and "Traceback" not in limited.stderr
    )
    down = _run("search", "nothing-cached-for-this", endpoint="http://127.0.0.1:9")
    assert (
        down.returncode == 1 and "Could not reach the Hub" in down.stderr and "Traceback" not in down.stderr
    )


def test_offline_shows_the_cached_results_with_a_note(hub: HubEmulator) -> None:
    online = _run("search", "llama", "70b", "gptq")
    offline = _run("search", "llama", "70b", "gptq", endpoint="http://127.0.0.1:9")
    assert offline.returncode == 0 and offline.stdout == online.stdout
    assert "note: offline" in offline.stderr and "Could not reach the Hub" in offline.stderr
